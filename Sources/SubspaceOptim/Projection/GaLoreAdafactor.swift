import SubspaceCore
import SubspaceModels

/// GaLore-Adafactor (Zhao et al., ICML 2024): galore-torch 1.0's `GaLoreAdafactor`, i.e.
/// Adafactor (`AdafactorRule`, transformers semantics) run on GaLore's projected gradient.
///
/// For each matrix W (m x n) with gradient G, at step t (counted from 1):
///
///     P <- SVD basis of G when (t - 1) % T == 0      (`Projector`; std projects the smaller side)
///     R = project(G)                                  (r x n or m x r)
///     Adafactor on R:  factored second moment of R's shape (r + n or m + r floats),
///                      U = clip(R / sqrt(v_hat)) * stepSize, and with beta1 the first moment
///                      of that scaled update (shaped like R)
///     W <- W - stepSize·wd·W ;  W <- W - scale·projectBack(U)
///
/// where stepSize is transformers' `_get_lr` (the external lr unless `relativeStep`, times
/// max(eps2, RMS(W)) with `scaleParameter`, RMS(W) taken before the step). As in galore-torch
/// the step count is shared by Adafactor's beta2_t = 1 - t^decayRate and the projector, and
/// the moments are neither reset nor rotated when P changes. Parameters that are not matrices
/// (a custom selector could route them here) get plain Adafactor, as galore-torch's
/// unprojected group does.
///
/// **Defaults** are GaLore's C4 script for `galore_adafactor` (`torchrun_main.py`):
/// `relativeStep: false`, `scaleParameter: false`, `warmupInit: false`, decay rate -0.8, clip
/// threshold 1, eps (1e-30, 1e-3), no first moment (beta1 nil), weight decay 0; the GaLore
/// part uses `GaLore`'s defaults (rank 128, gap 200, scale 0.25, `std`). galore-torch has no
/// default learning rate (its constructor default `lr=None` only works with the relative
/// step); ours is 1e-3, GaLore-AdamW's.
///
/// **State** per m x n matrix: the Adafactor factors of R (m + r or r + n floats), r·max(m, n)
/// more with beta1, plus the stored projector (r·min(m, n) for `std`, nothing for the random
/// types) and a step count. Checkpoint keys are galore-torch's: `step`, `exp_avg_sq_row`,
/// `exp_avg_sq_col`, `exp_avg` (with beta1), `ortho_matrix`.
///
/// A gradient with a NaN or infinity is skipped (weights, moments, projector and step count
/// unchanged), as `GaLore` does; galore-torch would write NaN into the weights.
public final class GaLoreAdafactor: ParameterwiseOptimizer<GaLoreAdafactor.State> {
    public struct State {
        /// Adafactor's state, shaped like the projected gradient (like the parameter when
        /// `projector` is nil). `moments.step` is galore-torch's `state["step"]`.
        public var moments: AdafactorMoments
        /// nil for parameters that are not matrices.
        public var projector: Projector?
        /// Non-finite gradients skipped (not saved in checkpoints).
        public var skipped: Int = 0

        /// Bytes of stored state: Adafactor's factors (and first moment) plus the stored
        /// projector.
        public var bytes: Int { moments.byteCount + (projector?.bytes ?? 0) }
    }

    public var rule: AdafactorRule
    public var weightDecay: Float
    public var rank: Int
    public var updateGap: Int
    public var scale: Float
    public var projection: ProjectionType
    /// How the SVD projectors compute P (`Projector.BasisAlgorithm`; default `gram`).
    public var basisAlgorithm: Projector.BasisAlgorithm = .gram
    public var seed: UInt64
    public override var name: String { "galore-adafactor" }

    /// - Parameter learningRate: the external rate (required unless `rule.relativeStep`, when
    ///   it multiplies the relative step and defaults to 1, as in `Adafactor`).
    /// - Throws: `ConfigurationError` for impossible settings.
    public init(
        learningRate: Float? = 1e-3,
        rule: AdafactorRule = AdafactorRule(relativeStep: false, scaleParameter: false),
        weightDecay: Float = 0, rank: Int = 128, updateGap: Int = 200, scale: Float = 0.25,
        projection: ProjectionType = .std, seed: UInt64 = 0
    ) throws {
        guard rule.relativeStep || learningRate != nil else {
            throw ConfigurationError("galore-adafactor without the relative step needs a learning rate")
        }
        if let lr = learningRate, !(lr > 0 && lr.isFinite) {
            throw ConfigurationError("learning rate must be positive, got \(lr)")
        }
        guard rank > 0 else { throw ConfigurationError("projection rank must be positive, got \(rank)") }
        guard updateGap > 0 else { throw ConfigurationError("projection update gap must be positive, got \(updateGap)") }
        guard scale > 0, scale.isFinite else { throw ConfigurationError("projection scale must be positive, got \(scale)") }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw ConfigurationError("weight decay must be non-negative, got \(weightDecay)")
        }
        self.rule = rule; self.weightDecay = weightDecay; self.rank = rank; self.updateGap = updateGap
        self.scale = scale; self.projection = projection; self.seed = seed
        super.init(learningRate: learningRate ?? 1)
    }

    /// The projector for `p` (nil when `p` is not a matrix), rank clamped to min(m, n).
    public func makeProjector(for p: some ParameterInfo) -> Projector? {
        guard p.shape.count == 2, p.shape[0] > 0, p.shape[1] > 0 else { return nil }
        var proj = try? Projector(
            type: projection, shape: p.shape, rank: min(rank, p.shape[0], p.shape[1]), gap: updateGap,
            scale: scale, seed: seed, label: p.name)
        proj?.basisAlgorithm = basisAlgorithm
        return proj
    }

    public override func makeState(for p: Parameter) -> State {
        let proj = makeProjector(for: p)
        return State(moments: rule.makeMoments(shape: proj?.projectedShape ?? p.shape), projector: proj)
    }

    public override func bytes(of s: State) -> Int { s.bytes }

    /// Adafactor's tensors for the projected shape plus the stored projector.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let proj = makeProjector(for: p)
        return rule.footprint(shape: proj?.projectedShape ?? p.shape) + (proj?.footprint ?? .none)
    }

    public override func encode(_ s: State) -> [String: Tensor] {
        if s.moments.step == 0 { return [:] }
        var out = s.moments.encode()
        if let p = s.projector { out.merge(p.encode()) { a, _ in a } }
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        var proj = makeProjector(for: p)
        let shape = proj?.projectedShape ?? p.shape
        let projectorKeys = (proj == nil || projection.isRandom) ? [] : Projector.stateKeys
        let momentKeys = Array(rule.makeMoments(shape: shape).encode().keys)
        try OptimizerStateError.checkKeys(t, required: momentKeys + projectorKeys, parameter: p)
        let moments = try AdafactorMoments.decode(
            t.filter { !projectorKeys.contains($0.key) }, shape: shape, rule: rule, parameter: p)
        if proj != nil { try proj!.decode(t, for: p) }
        return State(moments: moments, projector: proj)
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        guard isAllFinite(g) else { s.skipped += 1; return }
        let r: Tensor
        if var proj = s.projector {
            proj.refresh(gradient: g, step: s.moments.step)
            r = proj.project(g)
            s.projector = proj
        } else {
            r = g
        }
        step(p, projected: r, state: &s, lr: lr)
    }

    /// Adafactor's step on the projected gradient `r` (`s.projector` holding this step's P),
    /// back into the weights; releases a seeded P.
    func step(_ p: Parameter, projected r: Tensor, state s: inout State, lr: Float) {
        let parameterRMS = rule.scaleParameter ? AdafactorRule.rms(p.value) : 0
        rule.advance(r, moments: &s.moments)
        let stepSize = rule.stepSize(step: s.moments.step, learningRate: lr, parameterRMS: parameterRMS)
        let u = rule.update(r, moments: s.moments, stepSize: stepSize)
        if weightDecay != 0 { FastMath.scale(p.value.data, p.count, 1 - stepSize * weightDecay) }
        if let proj = s.projector {
            proj.addBack(u, to: p.value, alpha: -proj.scale)
        } else {
            withExtendedLifetime(u) { BLAS.axpy(p.count, -1, u.data, p.value.data) }
        }
        s.projector?.release()
    }
}

/// Whether every element of `t` is finite.
func isAllFinite(_ t: Tensor) -> Bool {
    let d = t.data
    for i in 0..<t.count where !d[i].isFinite { return false }
    return true
}

/// `galore-adafactor`: GaLore-Adafactor on the attention and MLP matrices and plain
/// Adafactor with the same rule, rate and weight decay on everything else, as GaLore's
/// script puts both groups in one `GaLoreAdafactor`.
public struct GaLoreAdafactorSettings: MethodSettings {
    public var adafactor: AdafactorRuleSettings
    public var weightDecay: Float
    public var projection: ProjectionSettings

    /// GaLore's script (`relative_step=False, scale_parameter=False, warmup_init=False`):
    /// lr 1e-3, no relative step, no parameter scaling, decay rate -0.8, clip threshold 1,
    /// beta1 off (`beta1` turns the first moment on), eps 1e-30, weight decay 0;
    /// `ProjectionSettings.galore`.
    public static let defaults = try! GaLoreAdafactorSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        adafactor = try AdafactorRuleSettings(
            o, method: "galore-adafactor", relativeStep: false, scaleParameter: false, beta1: o.beta1, defaultLearningRate: 1e-3)
        weightDecay = o.weightDecay ?? 0
        projection = try ProjectionSettings(o, defaults: .galore)
    }

    public func validate() throws {
        try adafactor.validate()
        try projection.validate()
        try checkWeightDecay(weightDecay)
    }

    public func build() throws -> RoutedOptimizer {
        let projected = try GaLoreAdafactor(
            learningRate: adafactor.learningRate, rule: adafactor.rule, weightDecay: weightDecay, rank: projection.rank,
            updateGap: projection.updateGap, scale: projection.scale ?? 1, projection: projection.projectionType,
            seed: projection.projectionSeed)
        projected.basisAlgorithm = projection.svdBasis ?? .gram
        return RoutedOptimizer(
            routes: [.init(.hiddenMatrices, projected)],
            fallback: Adafactor(learningRate: adafactor.learningRate, rule: adafactor.rule, weightDecay: weightDecay))
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "galore-adafactor", adafactor, projection, ["weightDecay": weightDecay]),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adafactor", adafactor, ["weightDecay": weightDecay])]
    }
}

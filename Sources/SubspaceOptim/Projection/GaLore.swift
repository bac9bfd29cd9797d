import SubspaceCore
import SubspaceModels

/// Adam run in a projector's subspace: the hyperparameters, per-parameter state, step and
/// checkpoint encoding that GaLore and Fira share.
///
/// For a matrix parameter the state is a `Projector` plus Adam moments shaped like the
/// projected gradient R; anything else (a 1-D tensor routed here by a custom selector) gets
/// unprojected Adam in the same Hugging Face style. galore-torch and fira expect only
/// matrices in their projected group.
public struct ProjectedAdam {
    /// Per-parameter state.
    public struct State {
        /// Updates made (galore-torch's `state["step"]`; the projector sees it before the
        /// increment).
        public var step: Int = 0
        /// First and second moments, shaped like the projected gradient (like the parameter
        /// when `projector` is nil): float32, bfloat16 under `statePrecision`, or 8-bit
        /// block-wise under `quantization`.
        public var moments: AdamMomentStorage
        /// nil for parameters that are not matrices.
        public var projector: Projector?
        /// Non-finite gradients skipped (not saved in checkpoints).
        public var skipped: Int = 0

        /// Bytes of stored state: both moments plus the stored projector.
        public var bytes: Int { moments.bytes + (projector?.bytes ?? 0) }
    }

    public var rank: Int
    public var updateGap: Int
    public var scale: Float
    public var projection: ProjectionType
    /// Seed of the random projections (and of the randomized-SVD fallback).
    public var seed: UInt64
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    /// nil: float32 moments and galore-torch's `GaLoreAdamW` step (Hugging Face style).
    /// Set: 8-bit block-wise moments and bitsandbytes' Adam step on the projected gradient
    /// (eps inside the bias correction, `AdamMomentStorage.advance`), as galore-torch's
    /// `GaLoreAdamW8bit` runs bitsandbytes on it. `minimumSize` applies to the projected
    /// moment's element count.
    public var quantization: StateQuantization?
    /// The element type of float moments (`--state-precision`; default fp32; see
    /// `StatePrecision`): bf16 stores them rounded, with the same float32 step.
    public var statePrecision: StatePrecision = .fp32
    /// How the SVD projectors compute P (`Projector.BasisAlgorithm`; default `gram`).
    public var basisAlgorithm: Projector.BasisAlgorithm = .gram

    /// - Throws: `ConfigurationError` for a non-positive rank or gap, a non-finite scale or
    ///   impossible Adam hyperparameters.
    public init(
        rank: Int, updateGap: Int, scale: Float, projection: ProjectionType, seed: UInt64,
        beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    ) throws {
        guard rank > 0 else { throw ConfigurationError("projection rank must be positive, got \(rank)") }
        guard updateGap > 0 else { throw ConfigurationError("projection update gap must be positive, got \(updateGap)") }
        guard scale.isFinite, scale > 0 else { throw ConfigurationError("projection scale must be positive, got \(scale)") }
        guard beta1 >= 0, beta1 < 1 else { throw ConfigurationError("beta1 must be in [0, 1), got \(beta1)") }
        guard beta2 >= 0, beta2 < 1 else { throw ConfigurationError("beta2 must be in [0, 1), got \(beta2)") }
        guard eps > 0, eps.isFinite else { throw ConfigurationError("eps must be positive, got \(eps)") }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw ConfigurationError("weight decay must be non-negative, got \(weightDecay)")
        }
        self.rank = rank; self.updateGap = updateGap; self.scale = scale; self.projection = projection
        self.seed = seed; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    /// The projector for `p`, or nil when `p` is not a matrix. The rank is clamped to
    /// min(m, n) per matrix, as galore-torch's slicing of the SVD factors does, so one global
    /// rank can serve matrices of every size.
    public func makeProjector(for p: some ParameterInfo) -> Projector? {
        guard p.shape.count == 2, p.shape[0] > 0, p.shape[1] > 0 else { return nil }
        var proj = try? Projector(
            type: projection, shape: p.shape, rank: min(rank, p.shape[0], p.shape[1]), gap: updateGap,
            scale: scale, seed: seed, label: p.name)
        proj?.basisAlgorithm = basisAlgorithm
        return proj
    }

    public func makeState(for p: Parameter) -> State {
        let proj = makeProjector(for: p)
        let shape = proj?.projectedShape ?? p.shape
        return State(
            moments: AdamMomentStorage(shape: shape, quantization: quantization, precision: statePrecision), projector: proj)
    }

    /// What `makeState` and a step leave, by shape: both moments in the projected shape
    /// (8-bit under `quantization`) and the stored projector (parameter-shaped moments for
    /// non-matrices).
    public func footprint(for p: some ParameterInfo) -> StateFootprint {
        let proj = makeProjector(for: p)
        let shape = proj?.projectedShape ?? p.shape
        let moment = quantization.map { StateFootprint.Entry(shape, .blockwise8Bit($0)) } ?? StateFootprint.moment(shape, statePrecision)
        return StateFootprint(states: [moment, moment]) + (proj?.footprint ?? .none)
    }

    /// `Projector.prepareRefreshes` over the states of `parameters` (kept at `base` inside a
    /// rule's own state type), creating missing states with `make` as the update would.
    public static func prepareRefreshes<S>(
        _ parameters: [Parameter], gradients: [Tensor], states: inout [String: S],
        base: WritableKeyPath<S, State>, make: (Parameter) -> S
    ) {
        var names: [String] = [], projectors: [Projector] = [], grads: [Tensor] = [], steps: [Int] = []
        for (p, g) in zip(parameters, gradients) {
            let s = states[p.name] ?? make(p)
            if states[p.name] == nil { states[p.name] = s }
            guard let proj = s[keyPath: base].projector, !proj.type.isRandom,
                  proj.needsRefresh(step: s[keyPath: base].step) else { continue }
            names.append(p.name); projectors.append(proj); grads.append(g); steps.append(s[keyPath: base].step)
        }
        Projector.prepareRefreshes(&projectors, gradients: grads, steps: steps)
        for (name, proj) in zip(names, projectors) { states[name]![keyPath: base].projector = proj }
    }

    /// The projected Adam step, without touching the weights: refreshes the projector,
    /// projects `g` to R, advances the moments and returns R, the normalized direction
    /// N = M / (sqrt(V) + eps) and the bias-corrected step size lr·sqrt(1-b2^t)/(1-b1^t).
    /// Returns nil for a gradient with a NaN or infinity, leaving the moments, projector and
    /// step count unchanged (galore-torch would write NaN into the weights). For unprojected parameters R is `g`.
    public func advance(_ g: Tensor, state s: inout State, lr: Float) -> (r: Tensor, n: Tensor, stepSize: Float)? {
        for i in 0..<g.count where !g.data[i].isFinite {
            s.skipped += 1
            return nil
        }
        let r: Tensor
        if var proj = s.projector {
            proj.refresh(gradient: g, step: s.step)
            r = proj.project(g)
            s.projector = proj
        } else {
            r = g
        }
        let step = adamStep(r, state: &s, lr: lr)
        return (r, step.n, step.stepSize)
    }

    /// `advance` for a gradient already projected with this step's P (the projected
    /// all-reduce of data parallelism, `GradientProjecting`): no refresh is due (a seeded P
    /// is regenerated for the step's refresh index), so only the finiteness check and the
    /// Adam part remain.
    public func advance(projected r: Tensor, state s: inout State, lr: Float) -> (n: Tensor, stepSize: Float)? {
        guard isAllFinite(r) else {
            s.skipped += 1
            return nil
        }
        s.projector = ProjectorCommunication.prepared(s.projector, step: s.step)
        return adamStep(r, state: &s, lr: lr)
    }

    /// The Adam part of `advance` on an already projected gradient `r`: counts the step,
    /// advances the moments and returns N and the step size (galore-torch's Hugging Face
    /// form, or bitsandbytes' under `quantization`).
    public func adamStep(_ r: Tensor, state s: inout State, lr: Float) -> (n: Tensor, stepSize: Float) {
        s.step += 1
        let n = Tensor(uninitialized: r.shape)
        if quantization == nil, case .float32(let m, let v) = s.moments {
            AdamMoments.direction(
                g: r.data, m: m.data, v: v.data, out: n.data, count: r.count,
                beta1: beta1, beta2: beta2, eps: eps, step: s.step, style: .huggingFace)
            return (n, AdamMoments.stepSize(lr: lr, beta1: beta1, beta2: beta2, step: s.step, style: .huggingFace))
        }
        if case .bfloat16(let m, let v) = s.moments {
            AdamMoments.directionBF16(
                g: r.data, m: m.bits, v: v.bits, out: n.data, count: r.count,
                beta1: beta1, beta2: beta2, eps: eps, step: s.step, style: .huggingFace)
            return (n, AdamMoments.stepSize(lr: lr, beta1: beta1, beta2: beta2, step: s.step, style: .huggingFace))
        }
        s.moments.direction(gradient: r.data, into: n.data, beta1: beta1, beta2: beta2, eps: eps, step: s.step)
        // Rescaled to galore-torch's convention, N = m / (sqrt(v) + eps·sqrt(1 - b2^t)) with
        // step lr·sqrt(1 - b2^t)/(1 - b1^t): the same update as bitsandbytes', and rules that
        // use N itself (Fira's phi = |N| / |R|) see the N they are defined with.
        let bc2Sqrt = AdamMomentStorage.biasCorrection2Sqrt(beta2: beta2, step: s.step)
        FastMath.scale(n.data, n.count, 1 / bc2Sqrt)
        return (n, lr * bc2Sqrt / AdamMomentStorage.biasCorrection1(beta1: beta1, step: s.step))
    }

    /// `w -= stepSize · scale · projectBack(N)` (or `stepSize · N` unprojected), in place.
    public func applyDirection(_ n: Tensor, to w: Tensor, stepSize: Float, projector: Projector?) {
        if let projector {
            projector.addBack(n, to: w, alpha: -stepSize * projector.scale)
        } else {
            BLAS.axpy(w.count, -stepSize, n.data, w.data)
        }
    }

    /// galore-torch's decoupled weight decay: after the update, with the uncorrected lr.
    public func decay(_ w: Tensor, lr: Float) {
        if weightDecay > 0 { FastMath.scale(w.data, w.count, 1 - lr * weightDecay) }
    }

    /// Keys: `step` (1-element), `exp_avg`, `exp_avg_sq` (or, for 8-bit moments,
    /// `AdamMomentStorage`'s `state1`, `absmax1`, `state2`, `absmax2`) and, for the SVD
    /// projection types, `ortho_matrix` (P).
    /// Empty for a state that was never stepped (its first gradient was skipped), which
    /// imports as no state at all.
    public func encode(_ s: State, moments: Bool = true) -> [String: Tensor] {
        if s.step == 0 { return [:] }
        var out = moments ? s.moments.encode() : [:]
        out["step"] = Tensor(shape: [1], values: [Float(s.step)])
        if let p = s.projector { out.merge(p.encode()) { a, _ in a } }
        return out
    }

    /// The keys this rule keeps for `p` beyond `extra`.
    public func requiredKeys(for p: Parameter) -> [String] {
        let proj = makeProjector(for: p)
        let elements = (proj?.projectedShape ?? p.shape).reduce(1, *)
        return ["step"] + AdamMomentStorage.keys(elements: elements, quantization: quantization)
            + ((proj == nil || projection.isRandom) ? [] : Projector.stateKeys)
    }

    /// The inverse of `encode`; `extra` names keys a wrapping rule (Fira) reads itself.
    public func decode(_ t: [String: Tensor], for p: Parameter, extra: [String] = []) throws -> State {
        try OptimizerStateError.checkKeys(t, required: requiredKeys(for: p) + extra, parameter: p)
        let stepTensor = try OptimizerStateError.tensor(t, "step", shape: [1], parameter: p)
        let step = stepTensor[0]
        guard step >= 0, step <= 16_777_216, step == step.rounded() else {
            throw OptimizerStateError.invalidValue(parameter: p.name, key: "step", reason: "\(step) is not a step count")
        }
        var proj = makeProjector(for: p)
        if proj != nil { try proj!.decode(t, for: p) }
        let shape = proj?.projectedShape ?? p.shape
        return State(
            step: Int(step),
            moments: try AdamMomentStorage.decode(
                t, shape: shape, quantization: quantization, precision: statePrecision, parameter: p),
            projector: proj)
    }
}

/// GaLore-AdamW (Zhao et al., ICML 2024) with galore-torch 1.0's semantics.
///
/// For each matrix W (m x n) with gradient G, at step t (counted from 1):
///
///     P <- SVD basis of G when (t - 1) % T == 0     (see `Projector`; std projects the smaller side)
///     R = project(G)                                 (r x n or m x r)
///     M <- b1 M + (1 - b1) R ;  V <- b2 V + (1 - b2) R^2
///     W <- W - lr·sqrt(1 - b2^t)/(1 - b1^t) · scale · projectBack(M / (sqrt(V) + eps))
///     W <- W - lr·wd·W                               (decoupled, after the update, uncorrected lr)
///
/// M and V are *not* reset or rotated when P changes, and t is the parameter's step count,
/// as in galore-torch. eps sits outside sqrt(V) before bias correction, the Hugging Face
/// form (`AdamMoments.Style.huggingFace`), unlike `AdamW`.
///
/// Defaults are galore-torch's `GaLoreAdamW` and its C4 scripts: lr 1e-3, betas
/// (0.9, 0.999), eps 1e-6 (galore-torch's default; the paper says 1e-8), weight decay 0,
/// rank 128, gap 200, scale 0.25, `std` projection.
///
/// State per m x n matrix: 2r·max(m, n) moment elements plus the r·min(m, n) projector for
/// `std` (nothing stored for the random projections), and a step count. Ranks above
/// min(m, n) are clamped per matrix. A gradient with a NaN or infinity is skipped (weights,
/// moments, projector and step count unchanged); an all-zero gradient decays the moments as
/// usual and keeps the previous projector. Checkpoint keys: `step`, `exp_avg`,
/// `exp_avg_sq`, `ortho_matrix`.
public final class GaLore: ParameterwiseOptimizer<ProjectedAdam.State>, StepPreparing {
    public var settings: ProjectedAdam
    public override var name: String { settings.quantization == nil ? "galore" : "galore8bit" }

    /// `quantization` stores the projected moments in 8 bits (GaLore-8bit; see
    /// `ProjectedAdam.quantization` and `OptimizerRegistry.galore8bitOptimizer`).
    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-6,
        weightDecay: Float = 0, rank: Int = 128, updateGap: Int = 200, scale: Float = 0.25,
        projection: ProjectionType = .std, seed: UInt64 = 0, quantization: StateQuantization? = nil
    ) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw ConfigurationError("learning rate must be positive, got \(learningRate)")
        }
        settings = try ProjectedAdam(
            rank: rank, updateGap: updateGap, scale: scale, projection: projection, seed: seed,
            beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
        settings.quantization = quantization
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> ProjectedAdam.State { settings.makeState(for: p) }
    /// Runs this step's refresh SVDs side by side (`Projector.prepareRefreshes`).
    public func prepareStep(_ parameters: [Parameter], gradients: [Tensor]) {
        ProjectedAdam.prepareRefreshes(parameters, gradients: gradients, states: &states, base: \.self, make: makeState)
    }
    public override func bytes(of s: ProjectedAdam.State) -> Int { s.bytes }
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? { settings.footprint(for: p) }
    public override func encode(_ s: ProjectedAdam.State) -> [String: Tensor] { settings.encode(s) }
    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> ProjectedAdam.State {
        try settings.decode(t, for: p)
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout ProjectedAdam.State, lr: Float) {
        guard let step = settings.advance(g, state: &s, lr: lr) else { return }
        finish(p, direction: step.n, stepSize: step.stepSize, state: &s, lr: lr)
    }

    /// The weights' side of a step: the projected-back update, weight decay, and the seeded
    /// P's working copy released.
    func finish(_ p: Parameter, direction n: Tensor, stepSize: Float, state s: inout ProjectedAdam.State, lr: Float) {
        settings.applyDirection(n, to: p.value, stepSize: stepSize, projector: s.projector)
        settings.decay(p.value, lr: lr)
        s.projector?.release()
    }
}

/// `galore`: GaLore-AdamW on the attention and MLP matrices (`.hiddenMatrices`) and AdamW on
/// everything else (embeddings, head, norms), the routing of galore-torch's and Fira's
/// scripts. The unprojected group shares lr, betas and weight decay; its rule and eps are
/// `UnprojectedSettings`'s.
public struct GaLoreSettings: MethodSettings {
    /// The projected Adam: lr, betas, eps, weight decay.
    public var adam: AdamWSettings
    public var projection: ProjectionSettings
    public var unprojected: UnprojectedSettings

    /// galore-torch's `GaLoreAdamW`: lr 1e-3, betas (0.9, 0.999), eps 1e-6 (galore-torch's
    /// default; the paper says 1e-8, and the reference runs 1e-6), weight decay 0 (its
    /// scripts'); `ProjectionSettings.galore`; the unprojected group on `torch` AdamW.
    public static let adamDefaults = AdamWSettings(learningRate: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0)
    public static let defaults = try! GaLoreSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        adam = AdamWSettings(o, defaults: Self.adamDefaults)
        projection = try ProjectionSettings(o, defaults: .galore)
        unprojected = try UnprojectedSettings(o, projected: adam)
    }

    public func validate() throws {
        try adam.validate()
        try projection.validate()
        try unprojected.adamw.validate()
    }

    public func build() throws -> RoutedOptimizer {
        let galore = try GaLore(
            learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, weightDecay: adam.weightDecay,
            rank: projection.rank, updateGap: projection.updateGap, scale: projection.scale ?? 1,
            projection: projection.projectionType, seed: projection.projectionSeed)
        galore.settings.basisAlgorithm = projection.svdBasis ?? .gram
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, galore)], fallback: try unprojected.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "galore", adam, projection), unprojected.group]
    }
}

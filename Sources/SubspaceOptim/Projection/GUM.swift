import SubspaceCore
import SubspaceModels

/// GUM, GaLore Unbiased with Muon (Pan, Luo, Liu, You & Zhang, "Unbiased Gradient Low-Rank
/// Projection", arXiv 2510.17802): GaLore's projection made unbiased by layer-wise sampling,
/// with Muon's Newton–Schulz step on the momentum.
///
/// Training is split into periods of K steps (`updateGap`). At the first step of period k a
/// matrix W (m x n) with gradient G gets a projector P from the SVD of G (`Projector`; the
/// paper's P = U[:, :r] is `ProjectionType.left`, the default) and is drawn full-rank with
/// probability q (`fullRankProbability`, the paper's q = gamma / N_L: gamma full-rank layers
/// out of N_L in expectation); the momentum restarts at zero. (The equations index the
/// momentum by period, R_{t,k}, without saying how R_{t,-1} is set: a restart is forced when
/// the branch, hence the shape, changes, and we also restart between two low-rank periods,
/// where GaLore would carry the moments into the new basis unrotated.) For every step of the
/// period:
///
///     low-rank  (prob. 1 - q):  X = 1/(1-q) · Pᵀ G      (r x n)   B <- beta B + (1 - beta) X
///                               W <- W - lr·ratio·scale·P NS(B)
///     full-rank (prob. q):      X = 1/q · (G - P Pᵀ G)  (m x n)   B <- beta B + (1 - beta) X
///                               W <- W - lr·ratio·NS(B)
///
/// (with a right-side projector Pᵀ G and P NS(B) read G Pᵀ and NS(B) P). The importance weights make
/// the projected-back estimate unbiased: E[P X (low) or X (full)] = P Pᵀ G + (I - P Pᵀ) G = G
/// (`estimate(_:projector:fullRank:)`). Newton–Schulz is nonlinear, so the orthogonalised step
/// is not itself unbiased; and because a matrix stays in one branch for a whole period, its
/// momentum starts at zero and NS normalises by the Frobenius norm, the weights 1/(1-q) and
/// 1/q scale the whole momentum and cancel in NS(B): with `orthogonalize` on they have no
/// effect on the step (we keep them, as written, for `orthogonalize: false`). The paper writes
/// B <- beta B + X; since the momentum restarts every period and NS is scale-invariant, the
/// lerp form (`MuonRule`) gives the same step. NS is `MuonRule`'s (Jordan's quintic, 5 steps, in
/// float32); `ratio` is `MuonRule.ratio` of the full m x n shape for both branches; weight
/// decay is Muon's decoupled p <- p (1 - lr wd). With `orthogonalize: false` the step is
/// the momentum itself (the paper's unbiased paradigm over SGD with momentum), which makes the
/// whole update unbiased (the property tests use it).
///
/// **Sampling.** The draw of a period is a pure function of (seed, sampling unit, period): by
/// default all matrices of one decoder layer (`Parameter.layerIndex`) share it, as the paper's
/// layer-wise sampling does (parameters outside the decoder layers draw by name);
/// `SamplingUnit.parameter` draws per matrix. Each unit is full-rank with probability q
/// independently, so the number of full-rank layers is Binomial(N_L, q) with mean gamma.
///
/// **Defaults:** lr 0.02, momentum 0.95 and 5 NS steps (Muon's), Nesterov off (the paper's
/// rule is plain momentum), rank 128, K = 200 (the paper's period), q = 0.25 (gamma = 2 of the
/// 8 layers of LLaMA-60M, the paper's pre-training setting), `left` projection, scale 1,
/// weight decay 0. The official code was not available; the rule follows the paper's
/// equations as summarised in the project digest.
///
/// **State** per m x n matrix (left projection): low-rank periods r·n (momentum) + m·r (P) =
/// r(m + n); full-rank periods m·n + m·r; expected (1 - q)·r(m + n) + q·(mn + mr). Checkpoint
/// keys: `step`, `momentum_buffer`, `ortho_matrix`. A gradient with a NaN or infinity is
/// skipped. Matrices only (like `Muon`): route vectors elsewhere.
public final class GUM: ParameterwiseOptimizer<GUM.State> {
    public enum SamplingUnit: String, CaseIterable, Sendable {
        /// All matrices of a decoder layer share the draw (default).
        case layer
        /// Each matrix draws on its own.
        case parameter
    }

    public struct State {
        /// Updates made.
        public var step: Int = 0
        public var projector: Projector
        /// The period's momentum: projected shape in low-rank periods, the parameter's in
        /// full-rank ones; nil before the first step.
        public var momentum: Tensor?
        /// Whether the current period is full-rank (derived from the draw, not saved).
        public var fullRank: Bool = false
        /// Non-finite gradients skipped (not saved).
        public var skipped: Int = 0

        public var bytes: Int { (momentum?.byteCount ?? 0) + projector.bytes }
    }

    public var rule: MuonRule
    public var rank: Int
    /// Steps per period (K).
    public var updateGap: Int
    /// q: probability that a sampling unit is full-rank in a period.
    public var fullRankProbability: Float
    public var projection: ProjectionType
    public var scale: Float
    public var seed: UInt64
    public var samplingUnit: SamplingUnit
    public var weightDecay: Float
    /// Newton–Schulz on the momentum (GUM); false steps along the momentum itself.
    public var orthogonalize: Bool
    public override var name: String { "gum" }

    /// - Throws: `ConfigurationError` for impossible settings.
    public init(
        learningRate: Float = 0.02, rule: MuonRule = MuonRule(nesterov: false), rank: Int = 128, updateGap: Int = 200,
        fullRankProbability: Float = 0.25, projection: ProjectionType = .left, scale: Float = 1, seed: UInt64 = 0,
        samplingUnit: SamplingUnit = .layer, weightDecay: Float = 0, orthogonalize: Bool = true
    ) throws {
        guard learningRate > 0, learningRate.isFinite else { throw ConfigurationError("learning rate must be positive, got \(learningRate)") }
        guard rule.momentum >= 0, rule.momentum < 1 else { throw ConfigurationError("momentum must be in [0, 1), got \(rule.momentum)") }
        guard rank > 0 else { throw ConfigurationError("projection rank must be positive, got \(rank)") }
        guard updateGap > 0 else { throw ConfigurationError("gum period (update gap) must be positive, got \(updateGap)") }
        guard fullRankProbability > 0, fullRankProbability < 1 else {
            throw ConfigurationError("gum full-rank probability q must be in (0, 1), got \(fullRankProbability)")
        }
        guard !projection.isRandom else {
            throw ConfigurationError("gum needs an SVD projection (std, reverse_std, left or right), got \(projection.rawValue)")
        }
        guard scale > 0, scale.isFinite else { throw ConfigurationError("projection scale must be positive, got \(scale)") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw ConfigurationError("weight decay must be non-negative, got \(weightDecay)") }
        self.rule = rule; self.rank = rank; self.updateGap = updateGap; self.fullRankProbability = fullRankProbability
        self.projection = projection; self.scale = scale; self.seed = seed; self.samplingUnit = samplingUnit
        self.weightDecay = weightDecay; self.orthogonalize = orthogonalize
        super.init(learningRate: learningRate)
    }

    /// Whether `p` is full-rank in period `period` (a pure function of the seed, the sampling
    /// unit and the period).
    public func isFullRank(_ p: some ParameterInfo, period: Int) -> Bool {
        let unit: String
        if samplingUnit == .layer, let l = p.layerIndex { unit = "layer \(l)" } else { unit = p.name }
        var rng = RandomStream(seed: seed).split("gum/" + unit, index: UInt64(max(0, period)))
        return rng.uniform() < fullRankProbability
    }

    public func makeProjector(for p: some ParameterInfo) -> Projector {
        precondition(p.shape.count == 2 && p.count > 0, "GUM takes 2-D parameters; '\(p.name)' has shape \(p.shape)")
        return try! Projector(
            type: projection, shape: p.shape, rank: min(rank, p.shape[0], p.shape[1]), gap: updateGap,
            scale: scale, seed: seed, label: p.name)
    }

    public override func makeState(for p: Parameter) -> State { State(projector: makeProjector(for: p)) }

    public override func bytes(of s: State) -> Int { s.bytes }

    /// The first period's state (period 0's draw): the full-shape momentum if the parameter
    /// is drawn full-rank, else the projected one, plus P. Later periods redraw, so a run's
    /// state moves between r(m + n) and mn + mr per matrix (expected (1 - q)·r(m + n) +
    /// q·(mn + mr)).
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        guard p.shape.count == 2, p.count > 0 else { return nil }
        let proj = makeProjector(for: p)
        let momentum = isFullRank(p, period: 0) ? p.shape : proj.projectedShape
        return StateFootprint(states: [momentum]) + proj.footprint
    }

    /// The importance-weighted estimate in the full space: 1/(1-q) · P Pᵀ G (low-rank) or
    /// 1/q · (G - P Pᵀ G) (full-rank). Its expectation over the draw is G.
    public func estimate(_ g: Tensor, projector: Projector, fullRank: Bool) -> Tensor {
        let r = projector.project(g)
        if fullRank {
            let x = g.copy()
            projector.addBack(r, to: x, alpha: -1)
            FastMath.scale(x.data, x.count, 1 / fullRankProbability)
            return x
        }
        let out = Tensor(zeros: g.shape)
        projector.addBack(r, to: out, alpha: 1 / (1 - fullRankProbability))
        return out
    }

    public override func encode(_ s: State) -> [String: Tensor] {
        guard s.step > 0, let m = s.momentum else { return [:] }
        var out = ["step": Tensor(shape: [1], values: [Float(s.step)]), "momentum_buffer": m]
        out.merge(s.projector.encode()) { a, _ in a }
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        var s = makeState(for: p)
        try OptimizerStateError.checkKeys(t, required: ["step", "momentum_buffer"] + Projector.stateKeys, parameter: p)
        let step = try decodeStepCount(t, parameter: p)
        guard step > 0 else { throw OptimizerStateError.invalidValue(parameter: p.name, key: "step", reason: "a saved state has made at least one step") }
        try s.projector.decode(t, for: p)
        s.step = step
        s.fullRank = isFullRank(p, period: (step - 1) / updateGap)
        s.momentum = try OptimizerStateError.tensor(
            t, "momentum_buffer", shape: s.fullRank ? p.shape : s.projector.projectedShape, parameter: p)
        return s
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        guard isAllFinite(g) else { s.skipped += 1; return }
        if s.step % updateGap == 0 || s.momentum == nil {
            s.projector.refresh(gradient: g, step: s.step)
            s.fullRank = isFullRank(p, period: s.step / updateGap)
            s.momentum = Tensor(zeros: s.fullRank ? p.shape : s.projector.projectedShape)
        }
        let proj = s.projector, q = fullRankProbability
        let x: Tensor
        if s.fullRank {
            x = g.copy()
            proj.addBack(proj.project(g), to: x, alpha: -1)
            FastMath.scale(x.data, x.count, 1 / q)
        } else {
            x = proj.project(g)
            FastMath.scale(x.data, x.count, 1 / (1 - q))
        }
        let o = orthogonalize
            ? rule.direction(gradient: x, buffer: s.momentum!)
            : rule.momentumStep(gradient: x, buffer: s.momentum!)
        let step = lr * rule.ratio(rows: p.shape[0], cols: p.shape[1])
        if weightDecay != 0 { FastMath.scale(p.value.data, p.count, 1 - lr * weightDecay) }
        if s.fullRank {
            withExtendedLifetime(o) { BLAS.axpy(p.count, -step, o.data, p.value.data) }
        } else {
            proj.addBack(o, to: p.value, alpha: -step * proj.scale)
        }
        s.step += 1
    }
}

/// `gum`: GUM on the attention and MLP matrices and AdamW on everything else, with the Adam
/// side configured as `muon`'s.
public struct GUMSettings: MethodSettings {
    public var learningRate: Float
    public var momentum: Float
    public var nesterov: Bool
    public var adjustment: MuonLRAdjustment
    /// rank, `updateGap` = the period K, an SVD projection type, scale, seed of the draws.
    public var projection: ProjectionSettings
    /// Probability q that a layer is full-rank in a period.
    public var fullRankProbability: Float
    public var weightDecay: Float
    /// `AdamWSettings.muonAuxiliary` with `--adam-lr`, `--betas`, `--eps` and the weight decay.
    public var adamw: AdamWSettings

    /// The GUM paper's setting on Muon's defaults: lr 0.02, momentum 0.95 without Nesterov,
    /// the original shape factor, rank 128, period 200, `left` projection, scale 1, q 0.25,
    /// weight decay 0; the AdamW side as `muon`.
    public static let defaults = try! GUMSettings(resolving: OptimizerOptions())

    public static let projectionDefaults = ProjectionSettings(rank: 128, updateGap: 200, scale: 1, projectionType: .left, svdBasis: nil)

    public init(resolving o: OptimizerOptions) throws {
        adjustment = try OptimizerRegistry.muonAdjustment(o)
        learningRate = o.learningRate ?? 0.02
        momentum = o.momentum ?? 0.95
        nesterov = o.nesterov ?? false
        projection = try ProjectionSettings(o, defaults: Self.projectionDefaults)
        fullRankProbability = o.fullRankProbability ?? 0.25
        weightDecay = o.weightDecay ?? 0
        adamw = AdamWSettings(muonSide: o)
    }

    /// The AdamW side's checks; GUM's own are `GUM`'s.
    public func validate() throws { try adamw.validate() }

    public func build() throws -> RoutedOptimizer {
        let gum = try GUM(
            learningRate: learningRate, rule: MuonRule(momentum: momentum, nesterov: nesterov, adjustment: adjustment),
            rank: projection.rank, updateGap: projection.updateGap, fullRankProbability: fullRankProbability,
            projection: projection.projectionType, scale: projection.scale ?? 1, seed: projection.projectionSeed,
            weightDecay: weightDecay)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, gum)], fallback: try adamw.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "gum",
               MuonSettingsView(learningRate: learningRate, momentum: momentum, nesterov: nesterov, adjustment: adjustment, weightDecay: weightDecay),
               projection, ["fullRankProbability": fullRankProbability]),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adamw)]
    }
}

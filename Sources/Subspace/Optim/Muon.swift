/// How Muon scales its orthogonalised update by the matrix shape (A rows, B columns), as
/// `torch.optim.Muon`'s `adjust_lr_fn`.
public enum MuonLRAdjustment: String, Codable, CaseIterable, Sendable {
    /// Jordan's `sqrt(max(1, A / B))` (KellerJordan/Muon and torch's default).
    case original
    /// Moonlight's `0.2 * sqrt(max(A, B))`, which gives the update about AdamW's RMS so that
    /// AdamW's learning rate and weight decay can be reused.
    case matchRMSAdamW = "match_rms_adamw"
    /// Bernstein's `sqrt(A / B)`, not clamped at 1.
    case spectralUnclamped = "spectral_unclamped"

    /// The multiplier of the learning rate for an A x B matrix.
    public func ratio(rows a: Int, cols b: Int) -> Float {
        switch self {
        case .original: return max(1, Float(a) / Float(b)).squareRoot()
        case .matchRMSAdamW: return 0.2 * Float(max(a, b)).squareRoot()
        case .spectralUnclamped: return (Float(a) / Float(b)).squareRoot()
        }
    }
}

/// Muon's update rule (Jordan et al., 2024, KellerJordan/Muon `muon_update`) on one matrix,
/// separate from any parameter so that projected methods (GUM runs it on P^T G) can reuse
/// it:
///
///     B <- beta B + (1 - beta) G                 (B.lerp_(G, 1 - beta); beta 0.95)
///     U = nesterov ? G + beta (B - G) : B        (G.lerp(B, beta))
///     O = NS5(U)                                 (`NewtonSchulz.orthogonalize`)
///
/// and the parameter step `p <- p (1 - lr wd) - lr * ratio(A, B) * O` with `adjustment`'s
/// ratio (Jordan's shape factor sqrt(max(1, A/B)) by default). `torch.optim.Muon` computes
/// the same (its code uses the same lerp form; its docstring writes B <- mu B + g, which
/// differs only by a scale that NS cancels).
///
/// Newton–Schulz runs in float32 here; the references run it in bfloat16, which moves the
/// orthogonalised update by about 1.5% (measured on the test fixtures).
public struct MuonRule: Equatable, Sendable {
    public var momentum: Float
    public var nesterov: Bool
    public var steps: Int
    /// Added to ||U||_F before the iteration.
    public var eps: Float
    public var adjustment: MuonLRAdjustment

    public init(
        momentum: Float = 0.95, nesterov: Bool = true, steps: Int = 5, eps: Float = 1e-7,
        adjustment: MuonLRAdjustment = .original
    ) {
        self.momentum = momentum; self.nesterov = nesterov; self.steps = steps; self.eps = eps
        self.adjustment = adjustment
    }

    /// Advances the momentum `buffer` with `g` and returns the matrix to orthogonalise (a new
    /// tensor with Nesterov, else `buffer` itself).
    public func momentumStep(gradient g: Tensor, buffer b: Tensor) -> Tensor {
        precondition(g.shape == b.shape, "Muon: gradient \(g.shape) for momentum \(b.shape)")
        let gd = g.data, bd = b.data, beta = momentum
        guard nesterov else {
            Parallel.ranges(g.count, grain: 1 << 15) { r in
                for i in r { bd[i] += (1 - beta) * (gd[i] - bd[i]) }
            }
            return b
        }
        let u = Tensor(uninitialized: g.shape)
        let ud = u.data
        Parallel.ranges(g.count, grain: 1 << 15) { r in
            for i in r {
                let bi = bd[i] + (1 - beta) * (gd[i] - bd[i])
                bd[i] = bi
                ud[i] = gd[i] + beta * (bi - gd[i])
            }
        }
        return u
    }

    /// The orthogonalised direction O = NS5(U) for gradient `g` (a new tensor), advancing
    /// `buffer`. Not scaled by the shape ratio.
    public func direction(gradient g: Tensor, buffer b: Tensor) -> Tensor {
        precondition(g.shape.count == 2, "Muon takes matrices, got \(g.shape)")
        return NewtonSchulz.orthogonalize(momentumStep(gradient: g, buffer: b), steps: steps, eps: eps)
    }

    /// `adjustment`'s multiplier of the learning rate for a rows x cols matrix.
    public func ratio(rows: Int, cols: Int) -> Float { adjustment.ratio(rows: rows, cols: cols) }
}

/// Muon as a per-parameter optimizer (see `MuonRule`), for 2-D hidden matrices only: it traps
/// on other shapes, so route embeddings, the head and norm gains elsewhere (the registry's
/// `muon` sends them to AdamW, as `MuonWithAuxAdam` does). Defaults are KellerJordan/Muon's:
/// lr 0.02, momentum 0.95, Nesterov, 5 Newton–Schulz steps, weight decay 0.
///
/// State: one float per element (the momentum), PyTorch key `momentum_buffer`.
public final class Muon: ParameterwiseOptimizer<Muon.State> {
    public struct State { public var buffer: Tensor }
    public var rule: MuonRule
    /// Decoupled weight decay with the unadjusted rate: p <- p (1 - lr wd).
    public var weightDecay: Float
    public override var name: String { "muon" }

    public init(learningRate: Float = 0.02, rule: MuonRule = MuonRule(), weightDecay: Float = 0) {
        self.rule = rule
        self.weightDecay = weightDecay
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State {
        precondition(p.shape.count == 2, "Muon takes 2-D parameters; '\(p.name)' has shape \(p.shape)")
        return State(buffer: Tensor(zeros: p.shape))
    }

    public override func bytes(of s: State) -> Int { s.buffer.byteCount }

    /// The momentum buffer, shaped like the (2-D) parameter.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        p.shape.count == 2 ? StateFootprint(states: [p.shape]) : nil
    }

    public override func encode(_ s: State) -> [String: Tensor] { ["momentum_buffer": s.buffer] }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        try OptimizerStateError.checkKeys(t, required: ["momentum_buffer"], parameter: p)
        return State(buffer: try OptimizerStateError.tensor(t, "momentum_buffer", shape: p.shape, parameter: p))
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        let o = rule.direction(gradient: g, buffer: s.buffer)
        let step = lr * rule.ratio(rows: p.shape[0], cols: p.shape[1])
        let decay = 1 - lr * weightDecay
        let pd = p.value.data, od = o.data
        // `o` must outlive the loop that reads its storage through `od`.
        withExtendedLifetime(o) {
            Parallel.ranges(p.count, grain: 1 << 15) { r in
                for i in r { pd[i] = pd[i] * decay - step * od[i] }
            }
        }
    }
}

extension OptimizerRegistry {
    /// `muon`: Muon for the 2-D attention and MLP matrices (`ParameterSelector.hiddenMatrices`)
    /// and AdamW for everything else (embeddings, head, norm gains), as KellerJordan's
    /// `MuonWithAuxAdam`.
    ///
    /// - Muon side: `learningRate` (0.02), `momentum` (0.95), `nesterov` (on),
    ///   `muonAdjustment` ("original"), `weightDecay` (0).
    /// - AdamW side: MuonWithAuxAdam's defaults, lr `adamLearningRate` (3e-4), betas from
    ///   `beta1`/`beta2` (0.9, 0.95), `eps` (1e-10) and the same `weightDecay`. The general
    ///   learning rate is Muon's alone, because the two rates differ by ~60x in the
    ///   reference setup; with "match_rms_adamw" the point is to reuse AdamW's rate, so pass
    ///   the same value to both.
    public static func muonOptimizer(_ o: OptimizerOptions) throws -> RoutedOptimizer {
        let adjustment = try muonAdjustment(o)
        let lr = o.learningRate ?? 0.02, mu = o.momentum ?? 0.95, wd = o.weightDecay ?? 0
        guard lr > 0, lr.isFinite else { throw ConfigurationError("learning rate must be positive, got \(lr)") }
        guard mu >= 0, mu < 1 else { throw ConfigurationError("momentum must be in [0, 1), got \(mu)") }
        guard wd >= 0, wd.isFinite else { throw ConfigurationError("weight decay must be non-negative, got \(wd)") }
        let muon = Muon(
            learningRate: lr, rule: MuonRule(momentum: mu, nesterov: o.nesterov ?? true, adjustment: adjustment),
            weightDecay: wd)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, muon)], fallback: try muonAuxAdam(o))
    }

    /// `--muon-adjust-lr`, defaulting to Keller Jordan's "original" shape scaling.
    static func muonAdjustment(_ o: OptimizerOptions) throws -> MuonLRAdjustment {
        try choice(o.muonAdjustment, default: .original, option: "muon lr adjustment")
    }

    /// The AdamW that Muon-style methods (muon, gum) give the non-matrix parameters:
    /// MuonWithAuxAdam's defaults (lr `adamLearningRate` 3e-4, betas 0.9/0.95, eps 1e-10) and
    /// the method's weight decay.
    static func muonAuxAdam(_ o: OptimizerOptions) throws -> AdamW {
        let adam = AdamW(
            learningRate: o.adamLearningRate ?? 3e-4, beta1: o.beta1 ?? 0.9, beta2: o.beta2 ?? 0.95,
            eps: o.eps ?? 1e-10, weightDecay: o.weightDecay ?? 0)
        try check(adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, wd: adam.weightDecay)
        return adam
    }
}

import SubspaceCore
import SubspaceModels

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

/// `muon`: Muon for the 2-D attention and MLP matrices (`ParameterSelector.hiddenMatrices`)
/// and AdamW for everything else (embeddings, head, norm gains), as KellerJordan's
/// `MuonWithAuxAdam`. The general learning rate is Muon's alone, because the two rates differ
/// by ~60x in the reference setup; with "match_rms_adamw" the point is to reuse AdamW's rate,
/// so pass the same value to both (`--lr` and `--adam-lr`).
public struct MuonSettings: MethodSettings {
    public var learningRate: Float
    public var momentum: Float
    public var nesterov: Bool
    public var adjustment: MuonLRAdjustment
    public var weightDecay: Float
    /// The AdamW side: `AdamWSettings.muonAuxiliary` with `--adam-lr`, `--betas`, `--eps` and
    /// the same weight decay.
    public var adamw: AdamWSettings

    /// Keller Jordan's Muon: lr 0.02, momentum 0.95 with Nesterov, the "original" shape
    /// factor sqrt(max(1, A/B)), weight decay 0; the AdamW side as `MuonWithAuxAdam`.
    public static let defaults = MuonSettings(
        learningRate: 0.02, momentum: 0.95, nesterov: true, adjustment: .original, weightDecay: 0, adamw: .muonAuxiliary)

    public init(learningRate: Float, momentum: Float, nesterov: Bool, adjustment: MuonLRAdjustment, weightDecay: Float, adamw: AdamWSettings) {
        self.learningRate = learningRate; self.momentum = momentum; self.nesterov = nesterov; self.adjustment = adjustment
        self.weightDecay = weightDecay; self.adamw = adamw
    }

    public init(resolving o: OptimizerOptions) throws {
        let d = Self.defaults
        self.init(
            learningRate: o.learningRate ?? d.learningRate, momentum: o.momentum ?? d.momentum, nesterov: o.nesterov ?? d.nesterov,
            adjustment: try OptimizerRegistry.muonAdjustment(o), weightDecay: o.weightDecay ?? d.weightDecay,
            adamw: AdamWSettings(muonSide: o))
    }

    public func validate() throws {
        try checkLearningRate(learningRate)
        guard momentum >= 0, momentum < 1 else { throw ConfigurationError("momentum must be in [0, 1), got \(momentum)") }
        try checkWeightDecay(weightDecay)
        try adamw.validate()
    }

    public func build() throws -> RoutedOptimizer {
        let muon = Muon(
            learningRate: learningRate, rule: MuonRule(momentum: momentum, nesterov: nesterov, adjustment: adjustment),
            weightDecay: weightDecay)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, muon)], fallback: try adamw.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "muon",
               MuonSettingsView(learningRate: learningRate, momentum: momentum, nesterov: nesterov, adjustment: adjustment, weightDecay: weightDecay)),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adamw)]
    }
}

/// The Muon side's values, for descriptions.
struct MuonSettingsView: Encodable {
    var learningRate: Float, momentum: Float, nesterov: Bool, adjustment: MuonLRAdjustment, weightDecay: Float
}

extension AdamWSettings {
    /// The AdamW side of Muon-style methods (muon, gum): `muonAuxiliary`'s values, lr from
    /// `adamLearningRate`, betas and eps from the options, the method's weight decay.
    init(muonSide o: OptimizerOptions) {
        var side = o
        side.learningRate = o.adamLearningRate
        self.init(side, defaults: .muonAuxiliary)
    }
}

extension OptimizerRegistry {
    /// `--muon-adjust-lr`, defaulting to Keller Jordan's "original" shape scaling.
    static func muonAdjustment(_ o: OptimizerOptions) throws -> MuonLRAdjustment {
        try choice(o.muonAdjustment, default: .original, option: "muon lr adjustment")
    }
}

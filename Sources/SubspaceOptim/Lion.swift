import SubspaceCore
import SubspaceModels

/// Lion's update rule (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms")
/// on one gradient-shaped buffer, separate from any parameter so that projected methods can
/// run it on a projected gradient. With `lucidrains/lion-pytorch`'s semantics:
///
///     c = beta1 m + (1 - beta1) g
///     U = sign(c)                        (sign(0) = 0, as torch.sign)
///     m <- beta2 m + (1 - beta2) g
///
/// and the parameter step `p <- p (1 - lr wd) - lr U` (decoupled weight decay, applied
/// first).
public struct LionRule: Equatable, Sendable {
    public var beta1: Float
    public var beta2: Float

    public init(beta1: Float = 0.9, beta2: Float = 0.99) { self.beta1 = beta1; self.beta2 = beta2 }

    /// Writes U = sign(beta1 m + (1 - beta1) g) into `out` (which may be `g` itself) and
    /// advances the momentum `m`. All three have the same element count.
    public func direction(gradient g: Tensor, momentum m: Tensor, into out: Tensor) {
        precondition(g.count == m.count && out.count == g.count, "Lion: gradient \(g.shape), momentum \(m.shape), output \(out.shape)")
        let gd = g.data, md = m.data, od = out.data, b1 = beta1, b2 = beta2
        Parallel.ranges(g.count, grain: 1 << 15) { r in
            for i in r {
                let gi = gd[i], mi = md[i]
                od[i] = LionRule.sign(b1 * mi + (1 - b1) * gi)
                md[i] = b2 * mi + (1 - b2) * gi
            }
        }
    }

    /// The fused full-parameter step: `p <- p (1 - lr wd) - lr U` and the momentum update.
    public func step(parameter p: Tensor, gradient g: Tensor, momentum m: Tensor, lr: Float, weightDecay: Float) {
        precondition(g.count == p.count && m.count == p.count, "Lion: gradient \(g.shape), momentum \(m.shape), parameter \(p.shape)")
        let pd = p.data, gd = g.data, md = m.data, b1 = beta1, b2 = beta2
        let decay = 1 - lr * weightDecay
        Parallel.ranges(p.count, grain: 1 << 15) { r in
            for i in r {
                let gi = gd[i], mi = md[i]
                pd[i] = pd[i] * decay - lr * LionRule.sign(b1 * mi + (1 - b1) * gi)
                md[i] = b2 * mi + (1 - b2) * gi
            }
        }
    }

    @inline(__always) static func sign(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }
}

/// Lion as a per-parameter optimizer (see `LionRule`). Defaults are lion-pytorch's: lr 1e-4,
/// betas (0.9, 0.99), weight decay 0. Lion's update has unit magnitude in every coordinate,
/// so its learning rate is typically 3-10x smaller than AdamW's and its weight decay
/// correspondingly larger (the paper's advice).
///
/// State: one float per element (the momentum), PyTorch key `exp_avg`.
public final class Lion: ParameterwiseOptimizer<Lion.State> {
    public struct State { public var m: Tensor }
    public var rule: LionRule
    /// Decoupled weight decay: p <- p (1 - lr wd).
    public var weightDecay: Float
    public override var name: String { "lion" }

    public init(learningRate: Float = 1e-4, beta1: Float = 0.9, beta2: Float = 0.99, weightDecay: Float = 0) {
        self.rule = LionRule(beta1: beta1, beta2: beta2)
        self.weightDecay = weightDecay
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State { State(m: Tensor(zeros: p.shape)) }

    public override func bytes(of s: State) -> Int { s.m.byteCount }

    /// The momentum, shaped like the parameter.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? { StateFootprint(states: [p.shape]) }

    public override func encode(_ s: State) -> [String: Tensor] { ["exp_avg": s.m] }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        try OptimizerStateError.checkKeys(t, required: ["exp_avg"], parameter: p)
        return State(m: try OptimizerStateError.tensor(t, "exp_avg", shape: p.shape, parameter: p))
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        rule.step(parameter: p.value, gradient: g, momentum: s.m, lr: lr, weightDecay: weightDecay)
    }
}

/// `lion`: Lion (Chen et al., 2023) on every parameter.
public struct LionSettings: MethodSettings {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var weightDecay: Float

    /// The paper's and lucidrains' `lion-pytorch` defaults: lr 1e-4 (Lion wants a 3-10x
    /// smaller rate than AdamW, since its sign update has unit magnitude per element),
    /// betas (0.9, 0.99); weight decay 0.
    public static let defaults = LionSettings(learningRate: 1e-4, beta1: 0.9, beta2: 0.99, weightDecay: 0)

    public init(learningRate: Float, beta1: Float, beta2: Float, weightDecay: Float) {
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.weightDecay = weightDecay
    }

    public init(resolving o: OptimizerOptions) throws {
        let d = Self.defaults
        self.init(learningRate: o.learningRate ?? d.learningRate, beta1: o.beta1 ?? d.beta1, beta2: o.beta2 ?? d.beta2,
                  weightDecay: o.weightDecay ?? d.weightDecay)
    }

    public func validate() throws {
        try OptimizerRegistry.check(learningRate, beta1: beta1, beta2: beta2, eps: 1, wd: weightDecay)
    }

    public func build() throws -> RoutedOptimizer {
        RoutedOptimizer(fallback: Lion(learningRate: learningRate, beta1: beta1, beta2: beta2, weightDecay: weightDecay))
    }

    public var groups: [ResolvedOptimizer.Group] { [.init(parameters: ResolvedOptimizer.Group.all, rule: "lion", self)] }
}

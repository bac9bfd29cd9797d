/// A per-parameter update rule: the interface every optimizer in Subspace implements.
///
/// Updates are per parameter so that the per-layer mode can step each tensor as soon as its
/// gradient is complete (GaLore's layer-wise trick), and so that a `RoutedOptimizer` can send
/// different parameters to different rules. Each conforming rule owns its hyperparameters,
/// so one instance is one parameter group.
public protocol ParameterOptimizer: AnyObject {
    /// Short name used in logs and benchmark output (`adamw`, `sgd`, `galore`, ...).
    var name: String { get }
    /// Base learning rate; the schedule multiplies it.
    var learningRate: Float { get set }
    /// Applies one update to `parameter` using `gradient`. `lrScale` is the schedule's
    /// multiplier for this step.
    func update(_ parameter: Parameter, gradient: Tensor, lrScale: Float)
    /// Bytes of state currently held for `parameter` (0 if none yet).
    func stateBytes(for parameter: Parameter) -> Int
}

/// Base class for rules whose state is a value of type `State` per parameter, keyed by the
/// parameter's name (mirrors mlx-swift's `OptimizerBase`). Subclasses override
/// `makeState`, `apply` and `bytes(of:)`.
open class ParameterwiseOptimizer<State>: ParameterOptimizer {
    open var name: String { "optimizer" }
    public var learningRate: Float
    /// State per parameter name.
    public var states: [String: State] = [:]

    public init(learningRate: Float) { self.learningRate = learningRate }

    /// Fresh state for a parameter seen for the first time.
    open func makeState(for parameter: Parameter) -> State { fatalError("subclass must override makeState") }
    /// The rule itself: update `parameter.value` in place and advance `state`.
    open func apply(_ parameter: Parameter, gradient: Tensor, state: inout State, lr: Float) {
        fatalError("subclass must override apply")
    }
    /// Bytes held by one state value.
    open func bytes(of state: State) -> Int { 0 }

    public func update(_ parameter: Parameter, gradient: Tensor, lrScale: Float) {
        var state = states.removeValue(forKey: parameter.name) ?? makeState(for: parameter)
        apply(parameter, gradient: gradient, state: &state, lr: learningRate * lrScale)
        states[parameter.name] = state
    }

    public func stateBytes(for parameter: Parameter) -> Int {
        states[parameter.name].map(bytes(of:)) ?? 0
    }
}

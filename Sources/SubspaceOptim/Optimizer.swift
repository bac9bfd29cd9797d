import SubspaceCore
import SubspaceModels

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
    /// The state this rule will hold for a parameter of this name, role and shape once it
    /// has been stepped, from the description alone (nothing is allocated), or nil when the
    /// rule does not say. Its `bytes` equals `stateBytes(for:)` after one step. The
    /// memory planner prices it; the default (StateFootprint.swift) is nil.
    func stateFootprint(for parameter: ParameterSpec) -> StateFootprint?
    /// The rule's state for `parameter` as named tensors, for checkpoints: empty when the
    /// parameter has not been stepped yet. Scalars (step counts) are 1-element tensors. The
    /// tensors may share storage with the live state, so write or copy them before the next
    /// update.
    func exportState(for parameter: Parameter) -> [String: Tensor]
    /// Replaces the state for `parameter` with one produced by `exportState` (an empty map
    /// clears it, as if the parameter had never been stepped), so that training continues
    /// exactly where the exporter stopped. The rule takes ownership of the tensors. Throws an
    /// `OptimizerStateError`, leaving the old state in place, when a tensor is missing, has
    /// the wrong shape or is not one this rule keeps.
    func importState(_ state: [String: Tensor], for parameter: Parameter) throws
}

/// A rule that does better seeing all of a step's gradients before it updates any of them
/// (GaLore's and Fira's refresh SVDs run side by side). `RoutedOptimizer.step` calls
/// `prepareStep` with the rule's parameters before their `update`s; the per-layer mode, which
/// updates each parameter as its gradient completes, does not.
public protocol StepPreparing: AnyObject {
    func prepareStep(_ parameters: [Parameter], gradients: [Tensor])
}

/// Why a saved optimizer state cannot be imported for a parameter. `description` is one line
/// naming the parameter and the state tensor.
public enum OptimizerStateError: Error, CustomStringConvertible, Equatable, Sendable {
    case missingTensor(parameter: String, key: String)
    case unexpectedTensor(parameter: String, key: String)
    case shapeMismatch(parameter: String, key: String, expected: [Int], found: [Int])
    case invalidValue(parameter: String, key: String, reason: String)

    public var description: String {
        switch self {
        case .missingTensor(let p, let k): return "optimizer state of '\(p)' has no '\(k)'"
        case .unexpectedTensor(let p, let k): return "optimizer state of '\(p)' has '\(k)', which this optimizer does not keep"
        case .shapeMismatch(let p, let k, let e, let f):
            return "optimizer state '\(k)' of '\(p)' has shape \(f), expected \(e)"
        case .invalidValue(let p, let k, let r): return "optimizer state '\(k)' of '\(p)' is invalid: \(r)"
        }
    }

    /// Checks the keys of `state` against what a rule keeps: every `required` key present,
    /// nothing outside `required + optional`.
    public static func checkKeys(
        _ state: [String: Tensor], required: [String], optional: [String] = [], parameter: Parameter
    ) throws {
        for k in required where state[k] == nil { throw missingTensor(parameter: parameter.name, key: k) }
        for k in state.keys.sorted() where !required.contains(k) && !optional.contains(k) {
            throw unexpectedTensor(parameter: parameter.name, key: k)
        }
    }

    /// `state[key]`, checked to have `shape`.
    public static func tensor(_ state: [String: Tensor], _ key: String, shape: [Int], parameter: Parameter) throws -> Tensor {
        guard let t = state[key] else { throw missingTensor(parameter: parameter.name, key: key) }
        guard t.shape == shape else {
            throw shapeMismatch(parameter: parameter.name, key: key, expected: shape, found: t.shape)
        }
        return t
    }
}

/// Base class for rules whose state is a value of type `State` per parameter, keyed by the
/// parameter's name (mirrors mlx-swift's `OptimizerBase`). Subclasses override
/// `makeState`, `apply` and `bytes(of:)`, and `encode`/`decode` to be checkpointed.
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
    /// The state `makeState` + one `apply` leave for a parameter like `parameter`, by shape
    /// (see `ParameterOptimizer.stateFootprint(for:)`); nil unless the subclass overrides it.
    open func stateFootprint(for parameter: ParameterSpec) -> StateFootprint? { nil }
    /// One state value as named tensors (see `exportState`). Names should be PyTorch's state
    /// keys where the rule has a PyTorch twin (`exp_avg`, `momentum_buffer`, ...), so a
    /// checkpoint reads the same to someone who knows `torch.optim`.
    open func encode(_ state: State) -> [String: Tensor] {
        fatalError("\(type(of: self)) must override encode(_:) to be checkpointed")
    }
    /// The inverse of `encode`: validates the tensors against `parameter` and rebuilds the
    /// state, throwing an `OptimizerStateError` rather than trapping on bad input.
    open func decode(_ tensors: [String: Tensor], for parameter: Parameter) throws -> State {
        fatalError("\(type(of: self)) must override decode(_:for:) to be restored from a checkpoint")
    }

    public func update(_ parameter: Parameter, gradient: Tensor, lrScale: Float) {
        var state = states.removeValue(forKey: parameter.name) ?? makeState(for: parameter)
        apply(parameter, gradient: gradient, state: &state, lr: learningRate * lrScale)
        states[parameter.name] = state
    }

    public func stateBytes(for parameter: Parameter) -> Int {
        states[parameter.name].map(bytes(of:)) ?? 0
    }

    public func exportState(for parameter: Parameter) -> [String: Tensor] {
        states[parameter.name].map(encode) ?? [:]
    }

    public func importState(_ state: [String: Tensor], for parameter: Parameter) throws {
        if state.isEmpty {
            states[parameter.name] = nil
        } else {
            states[parameter.name] = try decode(state, for: parameter)
        }
    }
}

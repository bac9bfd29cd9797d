import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// The training step as a rule: how one optimizer step turns micro-batches into new weights.
///
/// Backpropagation (`BackpropStep`) is one rule; zeroth-order methods are others. A rule
/// owns the step counter and reports a `StepReport` per step; `TrainingRun` and `Benchmark`
/// build the rule the run configuration names (`RunConfig.stepRule`) and only call
/// `trainStep`, so a new rule needs no change to the run loop, checkpoints or metrics.
///
/// What a rule costs in memory besides weights and optimizer state is one of two regimes
/// (`StepRuleMemory`), and that is all the memory planner needs to know about it.
///
/// **How a forward-only rule fits** (MeZO, Malladi et al., 2023, "Fine-Tuning Language
/// Models with Just Forward Passes"; EGGROLL's low-rank perturbations are the same shape):
/// its `trainStep` perturbs the trainable `model.parameters` in place by `eps * z`, with z
/// drawn from a seeded `RandomStream` split per parameter name (so z is regenerated, never
/// stored), calls `model.loss(batch)` (forward only: the inference arena, one layer's
/// buffers, no backward scratch), perturbs by `-2 eps * z`, measures again, restores, and
/// applies the projected gradient `(L+ - L-) / (2 eps) * z` in place. It never calls
/// `forward`/`backward`, so no training arena and no gradient is ever allocated; its
/// `memory` is `.forwardOnly` and the planner prices it so.
public protocol StepRule: AnyObject {
    /// The model the rule steps.
    var model: LlamaModel { get }
    /// The memory regime of the rule (how the planner prices activations and gradients).
    var memory: StepRuleMemory { get }
    /// Optimizer steps completed.
    var step: Int { get }
    /// Resumes the step counter (checkpoint restore).
    func setStep(_ s: Int)
    /// One optimizer step over the step's micro-batches (`RunConfig.gradAccum` of them).
    func trainStep(_ microBatches: [TokenBatch]) throws -> StepReport
}

/// What a step rule keeps besides weights and optimizer state.
public enum StepRuleMemory: String, Codable, Sendable, CaseIterable {
    /// The training arena (every layer's activations and backward scratch) and gradients:
    /// all of them, or, with the per-layer update, the largest one at a time.
    case backprop
    /// The inference arena (one layer's buffers, reused by every layer; no backward scratch)
    /// and no gradients.
    case forwardOnly = "forward-only"

    /// The activation arena the rule's passes run in.
    public var activationMode: ForwardMode { self == .backprop ? .training : .inference }
}

/// The step rules a run configuration can name.
public enum StepRuleName: String, Codable, Sendable, CaseIterable {
    /// `BackpropStep`: forward, backward, clip, update (per-layer mode and gradient
    /// accumulation included). The default.
    case backprop
    /// `MeZOStep`: two-point zeroth-order SGD with a dense Gaussian direction.
    case mezo
    /// `LOZOStep`: low-rank directions U V^T with V kept for `interval` steps.
    case lozo
    /// `LOZOStep` with momentum in the low-rank space (LOZO-M).
    case lozoM = "lozo-m"
    /// `SubZeroStep`: orthonormal per-layer bases, an r x r Gaussian core each step.
    case subzero
    /// `EggrollStep`: evolution strategies with low-rank antithetic perturbations.
    case eggroll

    /// The memory regime of the rule.
    public var memory: StepRuleMemory {
        switch self {
        case .backprop: return .backprop
        case .mezo, .lozo, .lozoM, .subzero, .eggroll: return .forwardOnly
        }
    }

    /// Whether the rule is zeroth-order (reads `ZerothOrderSettings`).
    public var isZerothOrder: Bool { self != .backprop }

    /// Builds the rule for `model`, stepping with `optimizer`.
    public func make(model: LlamaModel, optimizer: RoutedOptimizer, options: StepOptions) throws -> any StepRule {
        switch self {
        case .backprop: return try BackpropStep(model: model, optimizer: optimizer, options: options)
        case .mezo: return try MeZOStep(model: model, optimizer: optimizer, options: options)
        case .lozo, .lozoM: return try LOZOStep(model: model, optimizer: optimizer, options: options, rule: self)
        case .subzero: return try SubZeroStep(model: model, optimizer: optimizer, options: options)
        case .eggroll: return try EggrollStep(model: model, optimizer: optimizer, options: options)
        }
    }

    /// The rule named `name`, or a one-line error listing the choices.
    public init(parsing name: String) throws {
        guard let r = StepRuleName(rawValue: name) else {
            throw ConfigurationError("unknown step rule '\(name)'; choose from \(StepRuleName.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = r
    }
}

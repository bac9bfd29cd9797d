import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// The two-point (SPSA) step shared by MeZO, LOZO and SubZero; subclasses say what the
/// direction z of each parameter is.
///
/// Every step (Malladi et al. 2023, Algorithm 1), with z regenerated from the step's seed
/// each time it is needed (`ZerothOrderNoise`), never stored:
///
///     theta += eps z ; L+ = L(theta)        (forward only: `model.loss`, inference arena)
///     theta -= 2 eps z ; L- = L(theta)
///     theta += eps z                        (restore)
///     c = (L+ - L-) / (2 eps)               (projected gradient; E[c z] = grad L for z ~ N(0, I))
///     update with the estimate g = c z      (`ZerothOrderUpdate`)
///
/// Only trainable parameters (`requiresGrad`) are perturbed, so the same rules train adapter
/// factors. Restoring adds the same float values back, so the weights come back to within
/// rounding (a few ulps), as in the reference; the run is nevertheless bit-for-bit
/// reproducible and resumable, since every value is a function of the seed and the step.
///
/// Gradient accumulation: MeZO's reference refuses it; here L+ and L- are the means over the
/// step's micro-batches (one z per step), which is MeZO with a `gradAccum` times larger
/// batch. Gradient clipping (`--clip`) does not apply: there is no gradient to clip.
///
/// The reported loss is (L+ + L-) / 2, L(theta) to O(eps^2).
public class ZerothOrderStep: StepRule {
    public let model: LlamaModel
    public let optimizer: RoutedOptimizer
    public let options: StepOptions
    /// Resolved settings (`ZerothOrderSettings.resolved(for:)`).
    public let settings: ZerothOrderSettings
    public var memory: StepRuleMemory { .forwardOnly }
    public internal(set) var step = 0
    /// The parameters perturbed and updated, in model order.
    public let trainable: [Parameter]
    public let eps: Float
    /// The `.sgd` update's weight decay (`--weight-decay`).
    public let weightDecay: Float
    /// The `.sgd` update's base learning rate (`--lr`, else `ZerothOrderSettings.defaultLearningRate`).
    public let learningRate: Float

    init(model: LlamaModel, optimizer: RoutedOptimizer, options: StepOptions, method rule: StepRuleName) throws {
        try options.zerothOrder.validate(for: rule)
        guard options.gradAccum >= 1 else { throw ConfigurationError("grad accumulation must be at least 1, got \(options.gradAccum)") }
        self.model = model
        self.optimizer = optimizer
        self.options = options
        settings = options.zerothOrder.resolved(for: rule)
        trainable = model.parameters.filter(\.requiresGrad)
        eps = settings.eps!
        weightDecay = options.zerothOrderWeightDecay
        learningRate = options.zerothOrderLearningRate ?? ZerothOrderSettings.defaultLearningRate
    }

    public func setStep(_ s: Int) { step = s }

    // MARK: Subclass hooks

    /// Called at the start of a step, before any perturbation (factor refreshes); runs
    /// once per step however often it is asked (`prepareStep`).
    func prepare(step: Int) throws {}

    private var preparedStep: Int? = nil

    /// Runs `prepare` for the current step unless it already ran.
    func prepareStep() throws {
        guard preparedStep != step else { return }
        try prepare(step: step)
        preparedStep = step
    }

    /// `theta_p += scale * z_p`.
    func perturb(_ p: Parameter, scale: Float, stream: RandomStream) {
        ZerothOrderNoise.addGaussian(p.value, scale: scale, stream: stream, name: p.name)
    }

    /// The `.sgd` update `theta_p <- theta_p - lr (c z_p + wd theta_p)`.
    func sgdUpdate(_ p: Parameter, c: Float, lr: Float, stream: RandomStream) {
        ZerothOrderNoise.decay(p, lr: lr, weightDecay: weightDecay)
        perturb(p, scale: -lr * c, stream: stream)
    }

    /// The estimate `c z_p` as a tensor (the `.optimizer` update).
    func estimate(_ p: Parameter, c: Float, stream: RandomStream) -> Tensor {
        let g = Parameter(name: p.name, role: p.role, value: Tensor(zeros: p.shape))
        perturb(g, scale: c, stream: stream)
        return g.value
    }

    // MARK: The step

    /// The learning rate of the `.sgd` update for `p` at schedule multiplier `lrScale`.
    func rate(_ lrScale: Float) -> Float { learningRate * lrScale }

    public func trainStep(_ microBatches: [TokenBatch]) throws -> StepReport {
        precondition(microBatches.count == options.gradAccum, "expected \(options.gradAccum) micro-batches")
        let lrScale = options.schedule.multiplier(step: step)
        let stream = ZerothOrderNoise.stepStream(seed: options.seed, step: step)
        var t0 = Clock.now()
        try prepareStep()
        var opt = Clock.since(t0)
        t0 = Clock.now()
        let (plus, minus) = try twoPoint(microBatches, scale: eps, stream: stream)
        let fwd = Clock.since(t0)
        let loss = Float((plus + minus) / 2)
        let c = Float((plus - minus) / Double(2 * eps))
        t0 = Clock.now()
        try update(c: c, lrScale: lrScale, stream: stream)
        opt += Clock.since(t0)
        step += 1
        return StepReport(step: step, loss: loss, lrScale: lrScale, forwardSeconds: fwd, backwardSeconds: 0, optimizerSeconds: opt,
                          learningRate: settings.update == .sgd ? rate(lrScale) : nil)
    }

    /// Applies the estimate c z to every trainable parameter.
    func update(c: Float, lrScale: Float, stream: RandomStream) throws {
        switch settings.update! {
        case .sgd:
            for p in trainable { sgdUpdate(p, c: c, lr: rate(lrScale), stream: stream) }
        case .optimizer:
            for p in trainable {
                let g = estimate(p, c: c, stream: stream)
                optimizer.optimizer(for: p).update(p, gradient: g, lrScale: lrScale)
            }
        }
    }

    /// L(theta + scale z) and L(theta - scale z) for the direction z of `stream`, the
    /// weights put back afterwards; a non-finite loss throws (after the restore).
    func twoPoint(_ batches: [TokenBatch], scale: Float, stream: RandomStream) throws -> (plus: Double, minus: Double) {
        func move(_ a: Float) { for p in trainable { perturb(p, scale: a, stream: stream) } }
        move(scale)
        let plus = try meanLoss(batches)
        move(-2 * scale)
        let minus = try meanLoss(batches)
        move(scale)
        guard plus.isFinite, minus.isFinite else {
            throw TrainingError.nonFiniteLoss(step: step + 1, loss: Float(plus.isFinite ? minus : plus))
        }
        return (plus, minus)
    }

    /// The mean loss over the micro-batches (each a forward-only pass).
    func meanLoss(_ batches: [TokenBatch]) throws -> Double {
        var s = 0.0
        for b in batches { s += try model.loss(b).loss }
        return s / Double(batches.count)
    }
}

/// A step rule whose state outlives a step (LOZO's V and momentum, SubZero's bases): saved
/// in the checkpoint's `step_rule.safetensors` and restored on resume.
public protocol StatefulStepRule: StepRule {
    /// The state as named tensors (`<parameter name>/<key>`).
    func exportState() -> [String: Tensor]
    /// Replaces the state with one from `exportState`; throws on a missing or misshapen tensor.
    func importState(_ state: [String: Tensor]) throws
}

/// Checks on a step rule's saved state, each failure one line naming the tensor.
public enum StepRuleState {
    /// `state[key]`, which must exist with `shape`.
    public static func tensor(_ state: [String: Tensor], _ key: String, shape: [Int]) throws -> Tensor {
        guard let t = state[key] else { throw ConfigurationError("the step rule's saved state has no '\(key)'") }
        guard t.shape == shape else { throw ConfigurationError("the step rule's saved '\(key)' has shape \(t.shape), expected \(shape)") }
        return t
    }

    /// Refuses tensors outside `known`.
    public static func noExtra(_ state: [String: Tensor], known: Set<String>) throws {
        if let extra = state.keys.sorted().first(where: { !known.contains($0) }) {
            throw ConfigurationError("the step rule's saved state has '\(extra)', which this rule does not keep")
        }
    }
}

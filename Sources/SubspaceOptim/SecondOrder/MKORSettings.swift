import SubspaceCore
import SubspaceModels

/// `mkor`: MKOR (`MKOR`) on the 2-D attention and MLP matrices, AdamW on everything else
/// (embeddings, head, norm gains), as the reference leaves layers it does not precondition to
/// the plain rule (`sgd_layers`) and as every memory-efficient method here routes them.
///
/// Defaults and where they come from:
/// - inner rule `adam` (`--mkor-inner`): the reference offers `sgd` (its constructor's
///   default, used in its ResNet example) and `adam`; every transformer baseline in this
///   project is Adam-family and SGD with momentum trails it badly on language models, so the
///   Adam inner rule is the comparable one. `sgd` stays available.
/// - lr 1e-3 with Adam (`torch.optim.Adam`'s default, which the reference builds from the
///   caller's arguments), 1e-2 with SGD (as `sgd`); betas (0.9, 0.999), eps 1e-8, momentum
///   0.9, weight decay 0 (the project-wide convention).
/// - factor interval 10 (`--factor-interval`, the reference's `inv_freq`).
/// - statistics decay gamma 0.95 (`--stat-decay`, the reference's `stat_decay`), reset
///   threshold 2 and stabilisation zeta 0.1 (the reference's `stabilization_factor` and
///   reset test), statistics clamp 100 (its `clipping_value`).
/// - `--variant paper` (`InverseFactor.Rule`): the paper's exact running-average update and
///   blend-on-reset; `reference` runs the code's damped update and identity reset.
/// - the AdamW side: `adamw`'s betas and eps, MKOR's learning rate with the Adam inner rule
///   (as galore does), 1e-3 with SGD (`AdamWSettings.standard`); `--adam-lr` sets it.
public struct MKORSettings: MethodSettings {
    public var learningRate: Float
    public var inner: MKOR.Inner
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var momentum: Float
    public var weightDecay: Float
    public var factorInterval: Int
    public var statisticsDecay: Float
    public var stabilization: Float
    public var resetThreshold: Float
    public var statisticsClip: Float
    public var variant: InverseFactor.Rule
    /// The parameters MKOR does not precondition.
    public var adamw: AdamWSettings

    public static var defaults: MKORSettings { (try? MKORSettings(resolving: OptimizerOptions()))! }

    public init(resolving o: OptimizerOptions) throws {
        inner = try OptimizerRegistry.choice(o.mkorInner, default: MKOR.Inner.adam, option: "--mkor-inner")
        learningRate = o.learningRate ?? (inner == .adam ? 1e-3 : SGDSettings.defaults.learningRate)
        let a = AdamWSettings.standard
        beta1 = o.beta1 ?? a.beta1; beta2 = o.beta2 ?? a.beta2; eps = o.eps ?? a.eps
        momentum = o.momentum ?? SGDSettings.defaults.momentum
        weightDecay = o.weightDecay ?? 0
        factorInterval = o.factorInterval ?? 10
        statisticsDecay = o.statisticsDecay ?? 0.95
        stabilization = 0.1
        resetThreshold = 2
        statisticsClip = 100
        variant = try OptimizerRegistry.choice(o.variant, default: InverseFactor.Rule.paper, option: "--variant")
        var side = o
        side.learningRate = o.adamLearningRate ?? (inner == .adam ? learningRate : a.learningRate)
        adamw = AdamWSettings(side, defaults: a)
    }

    public func validate() throws {
        try checkLearningRate(learningRate)
        try OptimizerRegistry.check(learningRate, beta1: beta1, beta2: beta2, eps: eps, wd: weightDecay)
        guard momentum >= 0, momentum < 1 else { throw ConfigurationError("momentum must be in [0, 1), got \(momentum)") }
        guard factorInterval > 0 else { throw ConfigurationError("--factor-interval must be positive, got \(factorInterval)") }
        guard statisticsDecay > 0, statisticsDecay < 1 else {
            throw ConfigurationError("--stat-decay must be in (0, 1), got \(statisticsDecay)")
        }
        try adamw.validate()
    }

    /// The MKOR rule these settings describe, with MKOR-H's switch when given.
    public func makeRule(hybrid: MKORHybridSwitch? = nil) throws -> MKOR {
        try validate()
        let adam = AdamW(learningRate: learningRate, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
        let sgd = SGD(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay)
        let factor = InverseFactor(rule: variant, decay: statisticsDecay, stabilization: stabilization, resetThreshold: resetThreshold)
        return MKOR(
            learningRate: learningRate, inner: inner, adam: adam, sgd: sgd, factor: factor, factorInterval: factorInterval,
            statisticsClip: statisticsClip, hybrid: hybrid)
    }

    public func build() throws -> RoutedOptimizer {
        RoutedOptimizer(routes: [.init(.hiddenMatrices, try makeRule())], fallback: try adamw.make())
    }

    public var groups: [ResolvedOptimizer.Group] { groups(rule: "mkor") }

    func groups(rule: String, _ extra: (any Encodable)? = nil) -> [ResolvedOptimizer.Group] {
        let view = MKORSettingsView(self)
        let matrices = extra.map { ResolvedOptimizer.Group(parameters: ResolvedOptimizer.Group.matrices, rule: rule, view, $0) }
            ?? ResolvedOptimizer.Group(parameters: ResolvedOptimizer.Group.matrices, rule: rule, view)
        return [matrices, .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adamw)]
    }
}

/// What the matrices' group shows: the inner rule's own hyperparameters only.
struct MKORSettingsView: Encodable {
    var learningRate: Float, inner: MKOR.Inner, weightDecay: Float, factorInterval: Int
    var statisticsDecay: Float, stabilization: Float, resetThreshold: Float, statisticsClip: Float
    var variant: InverseFactor.Rule
    var beta1: Float?, beta2: Float?, eps: Float?, momentum: Float?

    init(_ s: MKORSettings) {
        learningRate = s.learningRate; inner = s.inner; weightDecay = s.weightDecay; factorInterval = s.factorInterval
        statisticsDecay = s.statisticsDecay; stabilization = s.stabilization; resetThreshold = s.resetThreshold
        statisticsClip = s.statisticsClip; variant = s.variant
        if s.inner == .adam { beta1 = s.beta1; beta2 = s.beta2; eps = s.eps } else { momentum = s.momentum }
    }
}

/// `mkor-h`: MKOR until the loss stops falling fast, then its inner rule alone
/// (`MKORHybridSwitch`, whose notes give the rule and the defaults: a window of 50 steps,
/// a 2% decrease per window; `--switch-window`, `--switch-threshold`). Everything else is
/// `mkor`'s.
public struct MKORHSettings: MethodSettings {
    public var mkor: MKORSettings
    public var switchWindow: Int
    public var switchThreshold: Float

    public static var defaults: MKORHSettings { (try? MKORHSettings(resolving: OptimizerOptions()))! }

    public init(resolving o: OptimizerOptions) throws {
        mkor = try MKORSettings(resolving: o)
        switchWindow = o.switchWindow ?? MKORHybridSwitch.defaultWindow
        switchThreshold = o.switchThreshold ?? MKORHybridSwitch.defaultThreshold
    }

    public func validate() throws {
        try mkor.validate()
        guard switchWindow > 0 else { throw ConfigurationError("--switch-window must be positive, got \(switchWindow)") }
        guard switchThreshold.isFinite else { throw ConfigurationError("--switch-threshold must be finite, got \(switchThreshold)") }
    }

    public func build() throws -> RoutedOptimizer {
        try validate()
        let rule = try mkor.makeRule(hybrid: MKORHybridSwitch(window: switchWindow, threshold: switchThreshold))
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, rule)], fallback: try mkor.adamw.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        mkor.groups(rule: "mkor-h", SwitchView(switchWindow: switchWindow, switchThreshold: switchThreshold))
    }

    struct SwitchView: Encodable { var switchWindow: Int, switchThreshold: Float }
}


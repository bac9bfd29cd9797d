import SubspaceCore
import SubspaceModels

/// Hyperparameters shared by the command line, configs and the benchmark. Each optimizer reads
/// the fields it understands; `nil` means "the optimizer's documented default".
public struct OptimizerOptions: Codable, Equatable, Sendable {
    public var learningRate: Float?
    public var beta1: Float?
    public var beta2: Float?
    public var eps: Float?
    public var weightDecay: Float?
    public var momentum: Float?
    public var nesterov: Bool?
    /// Projection rank (GaLore family).
    public var rank: Int?
    /// Steps between projector refreshes (GaLore family).
    public var updateGap: Int?
    /// Scale of the projected update (GaLore's alpha).
    public var scale: Float?
    /// Adafactor: time-dependent relative step (default: on exactly when no learning rate is
    /// given).
    public var relativeStep: Bool?
    /// Adafactor: scale the step by the parameter's RMS (default: as `relativeStep`).
    public var scaleParameter: Bool?
    /// Adafactor: warm the relative step up as 1e-6 t (default off).
    public var warmupInit: Bool?
    /// Adafactor: largest RMS of the normalised update (default 1).
    public var clipThreshold: Float?
    /// Adafactor: second-moment decay exponent, beta2_t = 1 - t^decayRate (default -0.8).
    public var decayRate: Float?
    /// Muon: learning rate of the AdamW side (default 3e-4).
    public var adamLearningRate: Float?
    /// Muon: learning-rate adjustment by shape, a `MuonLRAdjustment` raw value
    /// (default "original").
    public var muonAdjustment: String?
    /// GaLore family: projection type, a `ProjectionType` raw value (default "std").
    public var projectionType: String?
    /// GaLore family: how SVD projectors compute P, a `Projector.BasisAlgorithm` raw value,
    /// "gram" or "svd" (default "gram").
    public var svdBasis: String?
    /// GaLore family: seed of the random projections (default 0).
    public var projectionSeed: UInt64?
    /// Fira: residual form, a `Fira.Residual` raw value, "paper" or "reference" (default "paper").
    public var firaResidual: String?
    /// GUM: probability q that a layer is full-rank in a period (default 0.25).
    public var fullRankProbability: Float?
    /// ProjFactor: projection granularity c (default 1).
    public var granularity: Int?
    /// Flora and ProjFactor: "paper" or "reference" where the paper and the reference code
    /// differ (defaults: Flora "paper", ProjFactor "reference"; see `Flora.Variant`,
    /// `ProjFactor.Correction`).
    public var variant: String?
    /// SO: fraction kappa of each matrix's entries in the random support (default 0.1).
    public var density: Float?
    /// MLorc: randomized-SVD oversampling p (default 0).
    public var oversampling: Int?
    /// MLorc: randomized-SVD power iterations (default 1).
    public var powerIterations: Int?
    /// MoFaSGD: weight of the complement term (I - UUᵀ) G (I - VVᵀ) (default 0).
    public var eta2: Float?
    /// MoFaSGD: update, "paper" (U Vᵀ) or "reference" (U diag(1/S) Vᵀ) (default "paper").
    public var mofasgdUpdate: String?
    /// 8-bit states (adamw8bit, galore8bit, qgalore): elements per block (default 256).
    public var blockSize: Int?
    /// 8-bit states: tensors with fewer elements keep float32 states (default 4096).
    public var min8bitSize: Int?
    /// Q-GaLore: bits per projector entry, 1, 2, 4 or 8 (default 4).
    public var projectionBits: Int?
    /// Q-GaLore: projector quantization group size (default 256).
    public var projectionGroupSize: Int?
    /// Q-GaLore: cosine similarity at which a layer's refresh gap grows (default 0.4).
    public var lazyThreshold: Float?
    /// Q-GaLore: similarities looked at (default 5).
    public var lazyQueueSize: Int?
    /// Q-GaLore: factor the gap grows by (default 2).
    public var lazyGrowth: Int?
    /// galore and fira: the rule of the unprojected parameters, an `UnprojectedAdamW` raw
    /// value, "torch" or "transformers" (default "torch").
    public var unprojectedAdamW: String?
    /// MKOR: the inner first-order rule, an `MKOR.Inner` raw value, "adam" or "sgd" (default "adam").
    public var mkorInner: String?
    /// MKOR: steps between factor updates (default 10).
    public var factorInterval: Int?
    /// MKOR: decay of the factors' running average (default 0.95).
    public var statisticsDecay: Float?
    /// MKOR-H: steps per loss window of the switch rule (default 50).
    public var switchWindow: Int?
    /// MKOR-H: relative loss decrease per window under which it switches (default 0.02).
    public var switchThreshold: Float?
    /// Element type of every rule's moments, a `StatePrecision` raw value, "fp32" or "bf16"
    /// (default "fp32"); bf16 is for the Adam-family rules only (`StatePrecisionAdjustable`).
    public var statePrecision: String?
    public init() {}

    /// `statePrecision`, parsed (fp32 when not given).
    public func resolvedStatePrecision() throws -> StatePrecision {
        try statePrecision.map(StatePrecision.init(parsing:)) ?? .fp32
    }
}

/// Maps a method's name to its settings type (`MethodSettings`), which resolves the options,
/// owns the defaults and builds the `RoutedOptimizer`. Adding a method is one entry in
/// `settingsTypes`.
public enum OptimizerRegistry {
    public static let settingsTypes: [String: any MethodSettings.Type] = [
        "adamw": AdamWSettings.self,
        "sgd": SGDSettings.self,
        "adafactor": AdafactorSettings.self,
        "lion": LionSettings.self,
        "muon": MuonSettings.self,
        "galore": GaLoreSettings.self,
        "fira": FiraSettings.self,
        "galore-adafactor": GaLoreAdafactorSettings.self,
        "flora": FloraSettings.self,
        "gum": GUMSettings.self,
        "projfactor": ProjFactorSettings.self,
        "adamw8bit": AdamW8bitSettings.self,
        "galore8bit": GaLore8bitSettings.self,
        "qgalore": QGaLoreSettings.self,
        "mlorc-adamw": MLorcAdamWSettings.self,
        "mlorc-lion": MLorcLionSettings.self,
        "mofasgd": MoFaSGDSettings.self,
        "so": SOSettings.self,
        "mkor": MKORSettings.self,
        "mkor-h": MKORHSettings.self,
    ]

    public static var names: [String] { settingsTypes.keys.sorted() }

    /// The method a run uses when none is named.
    public static let defaultName = "adamw"

    /// Methods that take `--unprojected-adamw`: those running float AdamW on what they do
    /// not project, whose reference runs transformers' AdamW there.
    public static let unprojectedRuleMethods: Set<String> = ["galore", "fira"]

    /// The resolved, validated settings of `name` under `options` (a value of the method's
    /// settings type). Throws a one-line `ConfigurationError` for an unknown name or an
    /// impossible value; what it returns builds.
    public static func settings(_ name: String, options: OptimizerOptions) throws -> any MethodSettings {
        guard let type = settingsTypes[name] else {
            throw ConfigurationError("unknown optimizer '\(name)'; known: \(names.joined(separator: ", "))")
        }
        // Integer settings size tensors and loops: beyond Int32 they are mistakes that would
        // overflow, whatever the method.
        let counts: [(String, Int?)] = [
            ("--rank", options.rank), ("--update-gap", options.updateGap), ("--granularity", options.granularity),
            ("--block-size", options.blockSize), ("--min-8bit-size", options.min8bitSize), ("--oversampling", options.oversampling),
            ("--power-iters", options.powerIterations), ("--proj-group-size", options.projectionGroupSize),
            ("--qgalore-queue", options.lazyQueueSize), ("--qgalore-gamma", options.lazyGrowth), ("--proj-bits", options.projectionBits),
            ("--factor-interval", options.factorInterval), ("--switch-window", options.switchWindow),
        ]
        for (flag, v) in counts { if let v, v < 0 || v > Int(Int32.max) { throw ConfigurationError("\(flag) \(v) is out of range") } }
        // Adafactor's family has a first moment only (its second decays by schedule); every
        // other rule with betas takes both, so a lone beta1 is a mistake, not a request to
        // keep the default beta2.
        if let b1 = options.beta1, options.beta2 == nil, !singleBetaMethods.contains(name) {
            throw ConfigurationError("--betas for \(name) takes two values, beta1,beta2 (got \(b1) alone)")
        }
        if let rule = options.unprojectedAdamW, !unprojectedRuleMethods.contains(name) {
            throw ConfigurationError(
                "--unprojected-adamw \(rule) applies to \(unprojectedRuleMethods.sorted().joined(separator: " and ")), not \(name)")
        }
        let s = try type.init(resolving: options)
        try s.validate()
        try s.build().useStatePrecision(try options.resolvedStatePrecision())
        return s
    }

    /// The optimizer `name` with `options` (defaults filled in by its settings type), its
    /// rules keeping moments in `options.statePrecision`.
    public static func make(_ name: String, options: OptimizerOptions) throws -> RoutedOptimizer {
        let optimizer = try settings(name, options: options).build()
        try optimizer.useStatePrecision(try options.resolvedStatePrecision())
        return optimizer
    }

    /// What `make` would run, per parameter group: the `resolvedOptimizer` record of
    /// `run_config.json` (with `statePrecision=bf16` in every group when the moments are
    /// bf16; fp32 states are not written, so older records still compare equal).
    public static func resolvedSettings(_ name: String, options: OptimizerOptions) throws -> ResolvedOptimizer {
        var groups = try settings(name, options: options).groups
        if try options.resolvedStatePrecision() == .bf16 {
            for i in groups.indices { groups[i].settings["statePrecision"] = .string(StatePrecision.bf16.rawValue) }
        }
        return ResolvedOptimizer(optimizer: name, groups: groups)
    }

    /// The options given in `options` that method `name` does not use, by flag
    /// (`--rank` for `adamw`, `--momentum` for `galore`, ...), in flag order; empty when
    /// `options` does not resolve (`settings` then says why).
    ///
    /// An option counts as used when changing it changes the resolved settings or makes them
    /// invalid: each given option in turn is replaced by a different value (a number by NaN or
    /// by itself plus one, a choice by a name no method knows, a switch by its opposite), so
    /// the rule follows the settings types and needs no list per method.
    public static func ignoredOptions(_ name: String, options: OptimizerOptions) -> [String] {
        guard let base = try? resolvedSettings(name, options: options) else { return [] }
        var given: [String] = [], used: Set<String> = []
        for probe in OptionProbe.all {
            guard let changed = probe.change(options) else { continue }
            if !given.contains(probe.flag) { given.append(probe.flag) }
            if (try? resolvedSettings(name, options: changed)) != base { used.insert(probe.flag) }
        }
        return given.filter { !used.contains($0) }
    }

    /// One option of `OptimizerOptions`, its flag and a change of its value (nil when unset).
    struct OptionProbe {
        let flag: String
        let change: (OptimizerOptions) -> OptimizerOptions?

        static func float(_ k: WritableKeyPath<OptimizerOptions, Float?>, _ flag: String) -> OptionProbe {
            OptionProbe(flag: flag) { o in o[keyPath: k] == nil ? nil : { var c = o; c[keyPath: k] = .nan; return c }() }
        }
        static func int(_ k: WritableKeyPath<OptimizerOptions, Int?>, _ flag: String) -> OptionProbe {
            OptionProbe(flag: flag) { o in o[keyPath: k].map { v in var c = o; c[keyPath: k] = v &+ 1; return c } }
        }
        static func seed(_ k: WritableKeyPath<OptimizerOptions, UInt64?>, _ flag: String) -> OptionProbe {
            OptionProbe(flag: flag) { o in o[keyPath: k].map { v in var c = o; c[keyPath: k] = v &+ 1; return c } }
        }
        static func bool(_ k: WritableKeyPath<OptimizerOptions, Bool?>, _ flag: String) -> OptionProbe {
            OptionProbe(flag: flag) { o in o[keyPath: k].map { v in var c = o; c[keyPath: k] = !v; return c } }
        }
        static func choice(_ k: WritableKeyPath<OptimizerOptions, String?>, _ flag: String) -> OptionProbe {
            OptionProbe(flag: flag) { o in o[keyPath: k] == nil ? nil : { var c = o; c[keyPath: k] = "\u{1}none"; return c }() }
        }

        static let all: [OptionProbe] = [
            float(\.learningRate, "--lr"), float(\.beta1, "--betas"), float(\.beta2, "--betas"), float(\.eps, "--eps"),
            float(\.weightDecay, "--weight-decay"), float(\.momentum, "--momentum"), bool(\.nesterov, "--nesterov"),
            int(\.rank, "--rank"), int(\.updateGap, "--update-gap"), float(\.scale, "--scale"),
            choice(\.projectionType, "--proj-type"), choice(\.svdBasis, "--svd-basis"), seed(\.projectionSeed, "--proj-seed"),
            choice(\.firaResidual, "--fira-residual"), choice(\.unprojectedAdamW, "--unprojected-adamw"),
            float(\.fullRankProbability, "--full-rank-prob"), int(\.granularity, "--granularity"), choice(\.variant, "--variant"),
            float(\.density, "--density"), int(\.oversampling, "--oversampling"), int(\.powerIterations, "--power-iters"),
            float(\.eta2, "--eta2"), choice(\.mofasgdUpdate, "--mofasgd-update"), bool(\.relativeStep, "--relative-step"),
            bool(\.scaleParameter, "--scale-parameter"), bool(\.warmupInit, "--warmup-init"), float(\.clipThreshold, "--clip-threshold"),
            float(\.decayRate, "--decay-rate"), float(\.adamLearningRate, "--adam-lr"), choice(\.muonAdjustment, "--muon-adjust-lr"),
            int(\.blockSize, "--block-size"), int(\.min8bitSize, "--min-8bit-size"), int(\.projectionBits, "--proj-bits"),
            int(\.projectionGroupSize, "--proj-group-size"), float(\.lazyThreshold, "--qgalore-threshold"),
            int(\.lazyQueueSize, "--qgalore-queue"), int(\.lazyGrowth, "--qgalore-gamma"),
            choice(\.mkorInner, "--mkor-inner"), int(\.factorInterval, "--factor-interval"),
            float(\.statisticsDecay, "--stat-decay"), int(\.switchWindow, "--switch-window"),
            float(\.switchThreshold, "--switch-threshold"),
        ]
    }

    /// Methods whose `--betas` is beta1 alone.
    static let singleBetaMethods: Set<String> = ["adafactor", "galore-adafactor"]

    /// A named choice from an option string: `nil` gives `fallback`; an unknown name is an
    /// error listing the valid ones. Shared by every method with a `--variant`-style flag.
    static func choice<E: RawRepresentable & CaseIterable>(
        _ value: String?, default fallback: E, option: String
    ) throws -> E where E.RawValue == String {
        guard let value else { return fallback }
        if let e = E(rawValue: value.lowercased()) ?? E(rawValue: value) { return e }
        let names = E.allCases.map(\.rawValue).joined(separator: ", ")
        throw ConfigurationError("\(option) must be one of \(names), got '\(value)'")
    }

    static func check(_ lr: Float, beta1: Float, beta2: Float, eps: Float, wd: Float) throws {
        guard lr > 0, lr.isFinite else { throw ConfigurationError("learning rate must be positive, got \(lr)") }
        guard beta1 >= 0, beta1 < 1 else { throw ConfigurationError("beta1 must be in [0, 1), got \(beta1)") }
        guard beta2 >= 0, beta2 < 1 else { throw ConfigurationError("beta2 must be in [0, 1), got \(beta2)") }
        guard eps > 0, eps.isFinite else { throw ConfigurationError("eps must be positive, got \(eps)") }
        guard wd >= 0, wd.isFinite else { throw ConfigurationError("weight decay must be non-negative, got \(wd)") }
    }
}

// MARK: - adamw and sgd

extension AdamWSettings: MethodSettings {
    /// `AdamWSettings.standard`.
    public static var defaults: AdamWSettings { .standard }
    public init(resolving o: OptimizerOptions) throws { self.init(o, defaults: .standard) }
    public func build() throws -> RoutedOptimizer { RoutedOptimizer(fallback: try make()) }
    public var groups: [ResolvedOptimizer.Group] { [.init(parameters: ResolvedOptimizer.Group.all, rule: "adamw (torch)", self)] }
}

/// `sgd`: SGD with momentum (`torch.optim.SGD`, no dampening) on every parameter.
public struct SGDSettings: MethodSettings {
    public var learningRate: Float
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool

    /// lr 1e-2 (torch.optim.SGD has no default; 1e-2 is the usual starting point for
    /// momentum SGD on transformers, ten times AdamW's), momentum 0.9 (the standard heavy-ball
    /// coefficient), weight decay 0, no Nesterov (torch's default).
    public static let defaults = SGDSettings(learningRate: 1e-2, momentum: 0.9, weightDecay: 0, nesterov: false)

    public init(learningRate: Float, momentum: Float, weightDecay: Float, nesterov: Bool) {
        self.learningRate = learningRate; self.momentum = momentum; self.weightDecay = weightDecay; self.nesterov = nesterov
    }

    public init(resolving o: OptimizerOptions) throws {
        let d = Self.defaults
        self.init(learningRate: o.learningRate ?? d.learningRate, momentum: o.momentum ?? d.momentum,
                  weightDecay: o.weightDecay ?? d.weightDecay, nesterov: o.nesterov ?? d.nesterov)
    }

    public func validate() throws {
        try checkLearningRate(learningRate)
        guard momentum >= 0, momentum < 1 else { throw ConfigurationError("momentum must be in [0, 1), got \(momentum)") }
    }

    public func build() throws -> RoutedOptimizer {
        RoutedOptimizer(fallback: SGD(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov))
    }

    public var groups: [ResolvedOptimizer.Group] { [.init(parameters: ResolvedOptimizer.Group.all, rule: "sgd", self)] }
}

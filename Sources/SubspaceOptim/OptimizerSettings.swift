import Foundation
import SubspaceCore
import SubspaceModels

/// A method's resolved settings: every hyperparameter with its default filled in, the one
/// place that default and its justification live, and the checks that reject impossible
/// values.
///
/// `OptimizerOptions` records what the user asked for (`nil` = not given); a settings type
/// turns it into what runs. The registry maps a method's name to its settings type
/// (`OptimizerRegistry.settingsTypes`), so `make`, `resolvedSettings`, the command line's
/// help text, `run_config.json` and the suite cells all read the same values.
public protocol MethodSettings: Codable, Equatable, Sendable {
    /// The method's documented defaults (what `init(resolving: OptimizerOptions())` gives).
    static var defaults: Self { get }
    /// Fills in the defaults for the options not given. Throws only for a choice that names
    /// no known value; range checks are `validate()`'s.
    init(resolving o: OptimizerOptions) throws
    /// Rejects impossible values with a one-line `ConfigurationError`.
    func validate() throws
    /// The optimizer these settings describe (validated first).
    func build() throws -> RoutedOptimizer
    /// The resolved values by parameter group, routes first and the fallback last.
    var groups: [ResolvedOptimizer.Group] { get }
}

/// A JSON scalar of a resolved setting.
public enum SettingValue: Codable, Equatable, Sendable, CustomStringConvertible {
    case bool(Bool), int(Int), number(Double), string(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = SettingValue(d) }
        else { self = .string(try c.decode(String.self)) }
    }

    /// A number as recorded: whole numbers as `int`, others through their shortest float
    /// text (the settings are Float), so 1e-3 reads 0.001.
    public init(_ d: Double) {
        if d == d.rounded(), abs(d) < 1e15 { self = .int(Int(d)) } else { self = .number(Double("\(Float(d))") ?? d) }
    }

    public init(_ f: Float) { self.init(Double(f)) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .number(let d): return SettingText.number(d)
        case .string(let s): return s
        }
    }
}

/// What an optimizer runs with, per parameter group: the `resolvedOptimizer` record of
/// `run_config.json` and what `subspace settings` prints.
public struct ResolvedOptimizer: Codable, Equatable, Sendable {
    public struct Group: Codable, Equatable, Sendable {
        /// Which parameters: "attention and MLP matrices", "all other parameters" or "all
        /// parameters".
        public var parameters: String
        /// The rule that steps them ("galore", "adamw (torch)", ...).
        public var rule: String
        /// Every setting of the rule, by name.
        public var settings: [String: SettingValue]

        public init(parameters: String, rule: String, settings: [String: SettingValue]) {
            self.parameters = parameters; self.rule = rule; self.settings = settings
        }

        /// A group whose settings are the stored properties of `parts`, merged (the first
        /// part wins a shared name); `nil` values are left out.
        public init(parameters: String, rule: String, _ parts: any Encodable...) {
            var s: [String: SettingValue] = [:]
            for p in parts { s.merge(SettingText.flatten(p)) { a, _ in a } }
            self.init(parameters: parameters, rule: rule, settings: s)
        }

        static let matrices = "attention and MLP matrices"
        static let others = "all other parameters"
        static let all = "all parameters"
    }

    public var optimizer: String
    public var groups: [Group]

    public init(optimizer: String, groups: [Group]) { self.optimizer = optimizer; self.groups = groups }

    /// One line per group: "attention and MLP matrices: galore lr=0.001 rank=128 ...".
    public var lines: [String] {
        groups.map { g in
            "\(g.parameters): \(g.rule)" + g.settings.keys.sorted().map { " \($0)=\(g.settings[$0]!)" }.joined()
        }
    }
}

/// Formatting shared by the settings' descriptions and the command line's help.
public enum SettingText {
    /// A float as people write it: 0.001, 1e-8, 0.25, 200.
    public static func number(_ x: Float) -> String { number(Double("\(x)") ?? Double(x)) }

    public static func number(_ x: Double) -> String {
        if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
        var s = "\(x)"
        // Swift writes 1e-08; people write 1e-8.
        for (a, b) in [("e-0", "e-"), ("e+0", "e"), ("e+", "e")] { s = s.replacingOccurrences(of: a, with: b) }
        return s
    }

    /// The stored properties of a Codable value as setting values (nested structs merged
    /// into the top level, `nil` left out). Floats are read back through their shortest
    /// float text, so 1e-3 reads 0.001, not 0.0010000000474974513.
    static func flatten(_ value: any Encodable) -> [String: SettingValue] {
        guard let d = try? JSONEncoder().encode(value), case .object(let o)? = try? JSONDecoder().decode(Node.self, from: d)
        else { return [:] }
        var out: [String: SettingValue] = [:]
        func visit(_ o: [String: Node]) {
            for (k, v) in o {
                switch v {
                case .object(let sub): visit(sub)
                case .value(let s): out[k] = s
                case .null: break
                }
            }
        }
        visit(o)
        return out
    }

    private enum Node: Decodable {
        case value(SettingValue), object([String: Node]), null

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null }
            else if let b = try? c.decode(Bool.self) { self = .value(.bool(b)) }
            else if let d = try? c.decode(Double.self) { self = .value(SettingValue(d)) }
            else if let s = try? c.decode(String.self) { self = .value(.string(s)) }
            else { self = .object(try c.decode([String: Node].self)) }
        }
    }
}

// MARK: - Shared pieces

/// `torch.optim.AdamW`'s hyperparameters, for full AdamW and for the AdamW that the
/// memory-efficient methods give the parameters they leave alone (embeddings, head, norms).
public struct AdamWSettings: Codable, Equatable, Sendable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float

    public init(learningRate: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float) {
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    /// `adamw`'s defaults, PyTorch's except weight decay: lr 1e-3, betas (0.9, 0.999) and
    /// eps 1e-8 as `torch.optim.AdamW`; weight decay 0 rather than torch's 0.01, so that
    /// every method starts undecayed and `--weight-decay` is one comparable switch (GaLore's
    /// and Fira's scripts also run at 0).
    public static let standard = AdamWSettings(learningRate: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0)

    /// The AdamW side of Muon-style methods (muon, gum): Keller Jordan's `MuonWithAuxAdam`
    /// defaults, lr 3e-4, betas (0.9, 0.95), eps 1e-10; weight decay 0. Its learning rate is
    /// `--adam-lr`, since the two rates differ by ~60x in the reference setup.
    public static let muonAuxiliary = AdamWSettings(learningRate: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-10, weightDecay: 0)

    /// `defaults` with the given lr, betas, eps and weight decay.
    public init(_ o: OptimizerOptions, defaults d: AdamWSettings) {
        self.init(
            learningRate: o.learningRate ?? d.learningRate, beta1: o.beta1 ?? d.beta1, beta2: o.beta2 ?? d.beta2,
            eps: o.eps ?? d.eps, weightDecay: o.weightDecay ?? d.weightDecay)
    }

    public func validate() throws {
        try OptimizerRegistry.check(learningRate, beta1: beta1, beta2: beta2, eps: eps, wd: weightDecay)
    }

    /// torch-style `AdamW` (or the transformers-style rule, `style: .huggingFace`).
    public func make(style: AdamMoments.Style = .torch) throws -> AdamW {
        try validate()
        return AdamW(learningRate: learningRate, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, style: style)
    }
}

/// Which AdamW rule steps the parameters a GaLore-family method does not project (`galore`,
/// `fira`; `--unprojected-adamw`).
///
/// - `torch` (default): `torch.optim.AdamW`, the rule of `adamw` itself, with `AdamW`'s eps
///   default of 1e-8 (`--eps` sets both groups). The default keeps the unprojected
///   parameters on exactly the rule that full-rank AdamW runs, so a GaLore-vs-AdamW
///   comparison differs only in the projected matrices, and it is what this project has
///   always run (changing it would move every existing GaLore and Fira curve).
/// - `transformers`: the reference's rule. galore-torch's `torchrun_main.py` (and Fira's
///   script) put the unprojected parameters in a second group of the same `GaLoreAdamW`,
///   whose step is transformers' AdamW: m <- b1 m + (1 - b1) g, eps added to sqrt(v) before
///   the bias correction, which is folded into the step size lr·sqrt(1 - b2^t)/(1 - b1^t),
///   and decoupled weight decay after the update; with the group's eps, GaLore's 1e-6. On a
///   held-out model the two rules move a 50-step loss curve by 8.7e-4 relative.
public enum UnprojectedAdamW: String, Codable, CaseIterable, Sendable {
    case torch, transformers

    /// The `AdamMoments` style of the rule.
    public var style: AdamMoments.Style { self == .torch ? .torch : .huggingFace }

    /// The default: `torch` (see the type's notes).
    public static let `default` = UnprojectedAdamW.torch
}

/// The unprojected group of `galore` and `fira`: the rule and its AdamW hyperparameters.
public struct UnprojectedSettings: Codable, Equatable, Sendable {
    public var rule: UnprojectedAdamW
    public var adamw: AdamWSettings

    /// lr, betas and weight decay are the projected group's; eps is `--eps` if given, else
    /// the rule's own default: 1e-8 (`torch.optim.AdamW`) for `torch`, the projected group's
    /// eps for `transformers` (the reference's one optimizer, one eps).
    public init(_ o: OptimizerOptions, projected adam: AdamWSettings) throws {
        rule = try OptimizerRegistry.choice(o.unprojectedAdamW, default: UnprojectedAdamW.default, option: "--unprojected-adamw")
        adamw = adam
        adamw.eps = o.eps ?? (rule == .torch ? AdamWSettings.standard.eps : adam.eps)
    }

    public func make() throws -> AdamW { try adamw.make(style: rule.style) }

    var group: ResolvedOptimizer.Group {
        .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (\(rule.rawValue))", adamw)
    }
}

/// The subspace of the projection methods (GaLore, GaLore-Adafactor, GaLore-8bit, Q-GaLore,
/// Fira, Flora, GUM, ProjFactor): rank, refresh gap, scale, projection type and seed. Each
/// method's defaults are a static member; a method without a scale or an SVD basis choice
/// leaves that field nil.
public struct ProjectionSettings: Codable, Equatable, Sendable {
    /// r, clamped per matrix to min(m, n).
    public var rank: Int
    /// Steps between refreshes of P (GaLore's T; Flora's kappa; GUM's period K).
    public var updateGap: Int
    /// Multiplier of the projected-back update (GaLore's alpha); nil where the method has none.
    public var scale: Float?
    public var projectionType: ProjectionType
    /// Seed of the random projections (and of the randomized-SVD fallback).
    public var projectionSeed: UInt64
    /// How SVD projectors compute P; nil where the method does not offer the choice.
    public var svdBasis: Projector.BasisAlgorithm?

    public init(rank: Int, updateGap: Int, scale: Float?, projectionType: ProjectionType, projectionSeed: UInt64 = 0,
                svdBasis: Projector.BasisAlgorithm?) {
        self.rank = rank; self.updateGap = updateGap; self.scale = scale; self.projectionType = projectionType
        self.projectionSeed = projectionSeed; self.svdBasis = svdBasis
    }

    /// GaLore's (galore-torch 1.0's C4 scripts, Zhao et al. 2024, Sec. 5): rank 128, gap 200,
    /// scale 0.25, `std` (project the smaller side), seed 0. P from the leading eigenvectors
    /// of the smaller Gram matrix (`gram`), which equals the thin SVD's basis to float
    /// precision at a fraction of the cost; `--svd-basis svd` runs galore-torch's full SVD.
    /// (galore-torch's own CLI defaults, gap 50 and scale 1.0, are overridden by every
    /// script it ships.)
    public static let galore = ProjectionSettings(rank: 128, updateGap: 200, scale: 0.25, projectionType: .std, svdBasis: .gram)

    /// `defaults` with the given rank, gap, scale, type, seed and basis (each only where
    /// `defaults` has the field).
    public init(_ o: OptimizerOptions, defaults d: ProjectionSettings) throws {
        self.init(
            rank: o.rank ?? d.rank, updateGap: o.updateGap ?? d.updateGap, scale: d.scale.map { o.scale ?? $0 },
            projectionType: try o.projectionType.map(ProjectionType.init(parsing:)) ?? d.projectionType,
            projectionSeed: o.projectionSeed ?? d.projectionSeed,
            svdBasis: try d.svdBasis.map { try o.svdBasis.map(Projector.BasisAlgorithm.init(parsing:)) ?? $0 })
    }

    /// The checks of `ProjectedAdam`: a positive rank and gap and a positive finite scale.
    public func validate() throws {
        guard rank > 0 else { throw ConfigurationError("projection rank must be positive, got \(rank)") }
        guard updateGap > 0 else { throw ConfigurationError("projection update gap must be positive, got \(updateGap)") }
        if let scale { guard scale.isFinite, scale > 0 else { throw ConfigurationError("projection scale must be positive, got \(scale)") } }
    }
}

/// bitsandbytes' block-wise 8-bit layout (`StateQuantization`): block size 256 and minimum
/// size 4096, bitsandbytes' optimizer defaults (see `StateQuantization` for why).
public struct QuantizationSettings: Codable, Equatable, Sendable {
    public var blockSize: Int
    public var min8bitSize: Int

    public static let standard = QuantizationSettings(blockSize: 256, min8bitSize: 4096)

    public init(blockSize: Int, min8bitSize: Int) { self.blockSize = blockSize; self.min8bitSize = min8bitSize }

    public init(_ o: OptimizerOptions) {
        self.init(blockSize: o.blockSize ?? Self.standard.blockSize, min8bitSize: o.min8bitSize ?? Self.standard.min8bitSize)
    }

    public func make() throws -> StateQuantization { try StateQuantization(blockSize: blockSize, minimumSize: min8bitSize) }
    public func validate() throws { _ = try make() }
}

/// Adafactor's rule and learning rate (transformers' `Adafactor`), shared by `adafactor`,
/// `galore-adafactor` and `flora`, which differ in their defaults for the relative step,
/// parameter scaling and learning rate.
public struct AdafactorRuleSettings: Codable, Equatable, Sendable {
    /// nil with the relative step (the rate is then min(1e-2, 1/sqrt(t))).
    public var learningRate: Float?
    /// transformers' `relative_step`.
    public var relativeStep: Bool
    /// transformers' `scale_parameter`.
    public var scaleParameter: Bool
    /// transformers' `warmup_init`: off.
    public var warmupInit: Bool
    /// First-moment coefficient; nil (transformers' default) keeps no first moment.
    public var beta1: Float?
    /// `eps[0]`, the g^2 regulariser: transformers' 1e-30.
    public var eps: Float
    /// Largest RMS of the normalised update: transformers' 1.0.
    public var clipThreshold: Float
    /// beta2_t = 1 - t^decayRate: transformers' -0.8 (Shazeer & Stern 2018, Sec. 7.2).
    public var decayRate: Float

    /// Resolves `o` with the method's defaults for the relative step, parameter scaling and
    /// learning rate (used when the relative step is off); the shared defaults (eps 1e-30,
    /// clip threshold 1, decay rate -0.8, no warmup) are transformers'. Throws for the
    /// combinations transformers refuses (a rate with the relative step, warmup without it)
    /// and for a beta2, which Adafactor does not have.
    public init(
        _ o: OptimizerOptions, method: String, relativeStep: Bool, scaleParameter: Bool, beta1: Float?,
        defaultLearningRate: Float
    ) throws {
        let relative = o.relativeStep ?? relativeStep
        if relative, let lr = o.learningRate {
            throw ConfigurationError("\(method): a learning rate (\(lr)) cannot be combined with the relative step; set relative step off or give no learning rate")
        }
        if o.warmupInit == true && !relative { throw ConfigurationError("\(method): warmup init requires the relative step") }
        if let b2 = o.beta2 {
            throw ConfigurationError("\(method) has no beta2 (got \(b2)): its second moment decays as 1 - t^decay_rate; give beta1 alone")
        }
        self.relativeStep = relative
        self.scaleParameter = o.scaleParameter ?? scaleParameter
        self.warmupInit = o.warmupInit ?? false
        self.beta1 = beta1
        self.eps = o.eps ?? 1e-30
        self.clipThreshold = o.clipThreshold ?? 1
        self.decayRate = o.decayRate ?? -0.8
        self.learningRate = relative ? nil : (o.learningRate ?? defaultLearningRate)
    }

    public var rule: AdafactorRule {
        AdafactorRule(
            eps1: eps, clipThreshold: clipThreshold, decayRate: decayRate, beta1: beta1, relativeStep: relativeStep,
            scaleParameter: scaleParameter, warmupInit: warmupInit)
    }

    public func validate() throws {
        if let lr = learningRate, !(lr > 0 && lr.isFinite) { throw ConfigurationError("learning rate must be positive, got \(lr)") }
        if let b1 = beta1, !(b1 >= 0 && b1 < 1) { throw ConfigurationError("beta1 must be in [0, 1), got \(b1)") }
        guard eps > 0, eps.isFinite else { throw ConfigurationError("eps must be positive, got \(eps)") }
        guard clipThreshold > 0, clipThreshold.isFinite else {
            throw ConfigurationError("clip threshold must be positive, got \(clipThreshold)")
        }
        guard decayRate < 0, decayRate.isFinite else {
            throw ConfigurationError("decay rate must be negative (beta2_t = 1 - t^decay_rate), got \(decayRate)")
        }
    }
}

/// Non-negative, finite weight decay.
func checkWeightDecay(_ wd: Float) throws {
    guard wd >= 0, wd.isFinite else { throw ConfigurationError("weight decay must be non-negative, got \(wd)") }
}

/// A positive, finite learning rate.
func checkLearningRate(_ lr: Float) throws {
    guard lr > 0, lr.isFinite else { throw ConfigurationError("learning rate must be positive, got \(lr)") }
}

// Choices are recorded by their names.
extension Projector.BasisAlgorithm: Codable {}
extension Fira.Residual: Codable {}
extension Flora.Variant: Codable {}
extension ProjFactor.Correction: Codable {}
extension QGaLore.LazyRule: Codable {}
extension MLorc.Variant: Codable {}
extension MoFaSGD.Update: Codable {}
extension MoFaSGD.Variant: Codable {}

extension SettingValue: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral {
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

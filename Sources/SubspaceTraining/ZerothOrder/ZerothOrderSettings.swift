import SubspaceCore
import SubspaceOptim

/// Where a zeroth-order rule sends its gradient estimate `g = c z`.
public enum ZerothOrderUpdate: String, Codable, Sendable, CaseIterable {
    /// MeZO's own in-place SGD (the paper's Algorithm 1 and the reference's `zo_update`):
    /// `theta <- theta - lr (c z + wd theta)`, z regenerated from the step's seed, weight
    /// decay skipped for 1-D tensors (norm gains, as the reference skips biases and layer
    /// norms). Nothing is allocated. The default: the published rule.
    case sgd
    /// Hand the estimate to the run's optimizer (`--optimizer`, e.g. AdamW: MeZO-Adam, the
    /// paper's appendix variant): `c z` is formed for one parameter at a time, given to its
    /// routed rule's `update` and freed, so the transient is one parameter's size; the
    /// optimizer's state is what that rule keeps.
    case optimizer
}

/// How EGGROLL turns a generation's fitnesses into weights.
public enum FitnessShaping: String, Codable, Sendable, CaseIterable {
    /// Centred ranks (Salimans et al. 2017's `compute_centered_ranks`): rank / (N - 1) - 1/2,
    /// invariant to any monotone change of the loss. The choice; the default.
    case ranks
    /// The reference library's (`HyperscaleES`): (f - mean f) / sqrt(var f + 1e-5).
    case zscore
}

/// How EGGROLL evaluates the members of a generation.
public enum PopulationForward: String, Codable, Sendable, CaseIterable {
    /// The paper's: members stacked into one forward pass per chunk of
    /// `populationChunk` members (`LlamaModel.populationLoss`), each slot forming
    /// `X W^T` once for all rows plus each member's low-rank term on its rows. Needs an
    /// inference arena `chunk` times one member's. The default: on `tiny` it runs the
    /// population at close to inference speed (results/zo/throughput.tsv).
    case batched
    /// One member after another, the weights perturbed in place (+sigma E, -2 sigma E,
    /// +sigma E per pair, as MeZO): no activation memory beyond one member's forward, each
    /// forward spread over the cores by the kernels; also the only choice for operators
    /// other than dense (adapters), whose tensors the stacked forward does not perturb.
    case sequential
}

/// The hyperparameters of the zeroth-order step rules (MeZO, LOZO, LOZO-M, SubZero), each
/// optional so that a `run_config.json` records only what was given; `resolved(for:)` fills
/// the defaults of the rule in use, and `validate(for:)` refuses impossible values in one
/// line. The learning rate and weight decay are the run's `--lr` and `--weight-decay`.
///
/// Defaults and where they come from:
/// - `eps` 1e-3: MeZO's `zo_eps` (Malladi et al. 2023, `large_models/run.py`), kept by LOZO
///   (`lozo.sh`) and by SubZero's code, which is MeZO's trainer extended.
/// - `rank`: LOZO 1 (`large_models/lozo.sh`, the decoder-LM setting; RoBERTa uses 4);
///   SubZero 8 (`gauss_rank` in `run.py`). Clamped per matrix to min(m, n).
/// - `interval`: LOZO's nu 100 (`lozo.sh` for OPT; RoBERTa 50); SubZero's
///   `update_interval` 2000 (`run.py`; the README example uses 1000).
/// - `momentum`: LOZO-M's beta 0.9 (`medium_models/lozo.sh`, `beta1`); 0 (plain LOZO) for
///   `lozo`.
/// - `update`: `.sgd`, the papers' rule (see `ZerothOrderUpdate`).
/// - EGGROLL (`EggrollStep`): `rank` 1 (the smallest the paper and nano-egg use, and the
///   cheapest: O(r (m + n)) noise per matrix); `population` 64 (the reference's end-to-end
///   test; its LLM runs use 1,024 per GPU, too many forward passes for a 2-core CPU);
///   `sigma` 1e-3 (the reference's LLM scripts; its toy test's 0.2 is for a tiny MLP);
///   `shaping` centred ranks (see `FitnessShaping`); `forward` batched (see
///   `PopulationForward`), falling back to sequential when the model has trainable tensors
///   the stacked forward cannot perturb; `populationChunk` nil: as many members per stacked
///   forward as fit in `populationArenaBudget` bytes of activations (`populationChunk(...)`).
/// - the `.sgd` update's learning rate when `--lr` is not given, 1e-3
///   (`defaultLearningRate`): the papers' rates (1e-7 for OPT-13B, 1e-6 for RoBERTa-large)
///   shrink with model size, since the estimate's variance grows with the parameter count;
///   fine-tuning `tiny` (5.3 M) from Shakespeare to Milton for 60 MeZO steps
///   (`scripts/zo_finetune.sh`, results/zo/finetune.tsv), 1e-3 lowered the validation loss
///   most of {1e-2, 3e-3, 1e-3, 1e-4}: 3e-3 raised it and 1e-2 diverged.
public struct ZerothOrderSettings: Codable, Equatable, Sendable {
    public var eps: Float?
    public var rank: Int?
    public var interval: Int?
    public var momentum: Float?
    public var update: ZerothOrderUpdate?
    /// EGGROLL: members per generation (antithetic pairs, so even).
    public var population: Int?
    /// EGGROLL: noise scale sigma.
    public var sigma: Float?
    /// EGGROLL: fitness shaping.
    public var shaping: FitnessShaping?
    /// EGGROLL: stacked or one-at-a-time evaluation of the members.
    public var forward: PopulationForward?
    /// EGGROLL: members per stacked forward (nil: as many as `populationArenaBudget` holds).
    public var populationChunk: Int?

    public init(
        eps: Float? = nil, rank: Int? = nil, interval: Int? = nil, momentum: Float? = nil, update: ZerothOrderUpdate? = nil,
        population: Int? = nil, sigma: Float? = nil, shaping: FitnessShaping? = nil,
        forward: PopulationForward? = nil, populationChunk: Int? = nil
    ) {
        self.eps = eps; self.rank = rank; self.interval = interval; self.momentum = momentum; self.update = update
        self.population = population; self.sigma = sigma; self.shaping = shaping
        self.forward = forward; self.populationChunk = populationChunk
    }

    /// Activation bytes the stacked forward may use when `populationChunk` is not given:
    /// 1 GiB, a quarter of the smallest machine the project supports (4 GiB; `tiny`'s
    /// weights and AdamW state are under 100 MiB), enough for 256 members of `tiny` on one
    /// sequence of 64 tokens in one pass (0.33 GiB, `subspace memory --model tiny --trainer
    /// eggroll --population 256 --batch 1 --seq 64`) and, at the default population of 64
    /// and batch of 8 x 256 tokens, for chunks of 14 members (0.96 GiB; 72 MiB sequential).
    public static let populationArenaBudget = 1 << 30

    /// Members per stacked forward: `populationChunk` when given, else the most members
    /// (at least 1) whose arena, `arenaBytes(members)`, fits in `populationArenaBudget`;
    /// never more than the population.
    public func populationChunk(population: Int, arenaBytes: (Int) -> Int) -> Int {
        if let populationChunk { return min(population, populationChunk) }
        var c = 1
        while c < population, arenaBytes(c + 1) <= Self.populationArenaBudget { c += 1 }
        return c
    }

    /// The `.sgd` update's learning rate when `--lr` is not given (see the type's notes).
    public static let defaultLearningRate: Float = 1e-3

    /// Every field filled with `rule`'s default where not given.
    public func resolved(for rule: StepRuleName) -> ZerothOrderSettings {
        var r = self
        r.eps = eps ?? 1e-3
        r.update = update ?? .sgd
        switch rule {
        case .lozo, .lozoM:
            r.rank = rank ?? 1
            r.interval = interval ?? 100
            r.momentum = momentum ?? (rule == .lozoM ? 0.9 : 0)
        case .subzero:
            r.rank = rank ?? 8
            r.interval = interval ?? 2000
        case .eggroll:
            r.rank = rank ?? 1
            r.population = population ?? 64
            r.sigma = sigma ?? 1e-3
            r.shaping = shaping ?? .ranks
            // `forward` stays nil when not given: the rule picks batched where the model allows.
        case .mezo, .backprop:
            break
        }
        return r
    }

    /// The names of the settings `rule` does not read, as flags (`--zo-rank`), for a warning.
    public func unused(by rule: StepRuleName) -> [String] {
        var out: [String] = []
        let zo = rule != .backprop
        if !zo, eps != nil { out.append("--zo-eps") }
        if !zo, update != nil { out.append("--zo-update") }
        if ![.lozo, .lozoM, .subzero, .eggroll].contains(rule), rank != nil { out.append("--zo-rank") }
        if ![.lozo, .lozoM, .subzero].contains(rule), interval != nil { out.append("--zo-interval") }
        if ![.lozo, .lozoM].contains(rule), momentum != nil { out.append("--zo-momentum") }
        if rule == .eggroll, eps != nil { out.append("--zo-eps") }
        if rule != .eggroll {
            if population != nil { out.append("--population") }
            if sigma != nil { out.append("--sigma") }
            if shaping != nil { out.append("--fitness-shaping") }
            if forward != nil { out.append("--population-forward") }
            if populationChunk != nil { out.append("--population-chunk") }
        }
        return out
    }

    /// Refuses values no rule can use, in one line naming the flag.
    public func validate(for rule: StepRuleName) throws {
        let r = resolved(for: rule)
        if let e = r.eps, !(e > 0 && e.isFinite) { throw ConfigurationError("--zo-eps must be positive and finite, got \(e)") }
        if let k = r.rank, k < 1 { throw ConfigurationError("--zo-rank must be at least 1, got \(k)") }
        if let n = r.interval, n < 1 { throw ConfigurationError("--zo-interval must be at least 1, got \(n)") }
        if let b = r.momentum, !(b >= 0 && b < 1) { throw ConfigurationError("--zo-momentum must be in [0, 1), got \(b)") }
        if let n = r.population, n < 2 || n % 2 != 0 {
            throw ConfigurationError("--population must be a positive even number (members come in antithetic pairs), got \(n)")
        }
        if let s = r.sigma, !(s > 0 && s.isFinite) { throw ConfigurationError("--sigma must be positive and finite, got \(s)") }
        if let c = r.populationChunk, c < 1 { throw ConfigurationError("--population-chunk must be at least 1 member, got \(c)") }
        if rule == .lozoM, r.momentum == 0 { throw ConfigurationError("lozo-m needs --zo-momentum above 0 (0 is plain lozo)") }
        if (r.momentum ?? 0) > 0, r.update == .optimizer {
            throw ConfigurationError("LOZO-M's momentum is its own update; with --zo-update optimizer use --trainer lozo and the optimizer's momentum")
        }
    }

    /// One line for the run plan, e.g. `eps=0.001 rank=1 interval=100 update=sgd`.
    public var line: String {
        var parts: [String] = []
        if let eps { parts.append("eps=\(SettingText.number(eps))") }
        if let rank { parts.append("rank=\(rank)") }
        if let interval { parts.append("interval=\(interval)") }
        if let momentum, momentum > 0 { parts.append("momentum=\(SettingText.number(momentum))") }
        if let population { parts.append("population=\(population)") }
        if let sigma { parts.append("sigma=\(SettingText.number(sigma))") }
        if let shaping { parts.append("shaping=\(shaping.rawValue)") }
        if let forward { parts.append("forward=\(forward.rawValue)") }
        if let populationChunk { parts.append("chunk=\(populationChunk)") }
        if let update { parts.append("update=\(update.rawValue)") }
        return parts.joined(separator: " ")
    }
}

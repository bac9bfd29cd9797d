import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// Everything that defines a training run, resolved (defaults filled in) and saved as
/// `run_config.json` in the run directory, so a run can be resumed and compared.
public struct RunConfig: Codable, Equatable, Sendable {
    /// Preset name, or nil when `model` came from a file or `--init-from`.
    public var preset: String?
    public var model: LlamaConfig
    /// A Hugging Face LLaMA directory (or Subspace checkpoint) to start from.
    public var initFrom: String?
    /// Text file, directory of `.txt` works, or a `.bin`/`.u32` token file.
    public var data: String
    /// A tokenizer.json to use; nil trains one on the training split (vocab = model vocab),
    /// except for a run that starts from `initFrom`, which reads with that model's own
    /// tokenizer (`adoptInitTokenizer`) unless `newTokenizer` asks for a new one.
    public var tokenizer: String?
    /// Train a new tokenizer for a model from `initFrom` (`--new-tokenizer`): its embeddings
    /// then read ids they were not trained on. nil (omitted from the JSON) when not asked.
    public var newTokenizer: Bool?
    public var optimizer: String = OptimizerRegistry.defaultName
    public var optimizerOptions = OptimizerOptions()
    public var steps: Int = 600
    public var batch: Int = 8
    public var seq: Int = 256
    public var gradAccum: Int = 1
    /// "constant" or "cosine" (GaLore's warmup + cosine to `minLRRatio`).
    public var schedule: String = "cosine"
    public var warmup: Int = 60
    public var minLRRatio: Float = 0.1
    public var clip: Float = 1.0
    public var perLayerUpdate: Bool = false
    /// How each step is taken (`StepRuleName`); nil is backprop. Optional so that run
    /// configs written before rules existed decode, and omitted from the JSON when unset.
    public var stepRule: StepRuleName?
    /// Adapters or a low-rank parametrization in the linear slots (`--adapter`,
    /// `--parametrization`); nil is the dense model. Optional fields decode from older
    /// `run_config.json` files and are omitted when unset.
    public var adapter: AdapterSettings?
    /// Periodic restarts (ReLoRA's merge-and-restart, Glentis et al.'s momentum reset); nil: none.
    public var restarts: RestartSettings?
    /// The zeroth-order rules' settings (`--zo-eps`, `--zo-rank`, ...) as given; nil
    /// (omitted) when none was, so older run configs decode.
    public var zerothOrder: ZerothOrderSettings?
    /// The element type of the linear products (`--precision`); nil (omitted from the JSON,
    /// so older run configs decode) is fp32. Checked on resume like the optimizer.
    public var precision: MatmulPrecision?
    /// Evaluate every this many steps (and at the end); 0 evaluates only at the end.
    public var evalEvery: Int = 100
    /// Validation batches per periodic evaluation (0 = the whole validation split). The final
    /// evaluation always reads the whole split.
    public var evalBatches: Int = 16
    public var seed: UInt64 = 0
    public var shuffle: Bool = true
    /// Save a checkpoint every this many steps (and at the end); 0 only at the end.
    public var checkpointEvery: Int = 0
    /// What data-parallel ranks all-reduce (`--dp-communication`); nil (omitted) is
    /// `automatic`. Not checked on resume: both modes take the same steps.
    public var dpCommunication: DataParallelCommunication?

    public init(model: LlamaConfig, data: String) { self.model = model; self.data = data }

    /// `train`'s learning rate for `adamw` when none is given: 3e-3, tuned for `tiny` on
    /// Shakespeare (AdamW's library default, 1e-3, under-trains the short runs); every other
    /// method keeps its own documented default.
    public static let defaultAdamWLearningRate: Float = 3e-3

    /// Fills in what `train` decides for a new run that the method's own settings do not:
    /// `defaultAdamWLearningRate` for `adamw` without `--lr`.
    public mutating func applyTrainDefaults() {
        // A zeroth-order rule's `.sgd` update has its own default rate (ZerothOrderSettings).
        if resolvedStepRule.isZerothOrder { return }
        if optimizerOptions.learningRate == nil, optimizer == "adamw" { optimizerOptions.learningRate = Self.defaultAdamWLearningRate }
    }

    /// The options `train --optimizer NAME` runs with when no hyperparameter flag is given.
    public static func trainDefaultOptions(optimizer: String) -> OptimizerOptions {
        var c = RunConfig(model: LlamaConfig(dim: 8, layers: 1, heads: 1, ffnDim: 8, vocab: 8, maxSeq: 8), data: "")
        c.optimizer = optimizer
        c.applyTrainDefaults()
        return c.optimizerOptions
    }

    /// Clamps `warmup` to what the run can hold (`LearningRateSchedule.fittedWarmup`: at most
    /// `steps - 1`), returning a one-line note when it changed, nil otherwise.
    public mutating func fitWarmupToSteps() -> String? {
        let fitted = LearningRateSchedule.fittedWarmup(warmup, steps: steps)
        guard fitted != warmup else { return nil }
        let note = "warm-up of \(warmup) steps does not fit a run of \(steps) step\(steps == 1 ? "" : "s"); "
            + "warming up over \(fitted) instead, so the last step runs at the peak learning rate"
        warmup = fitted
        return note
    }

    /// The tokenizer.json that comes with the model `initFrom` names (a Subspace checkpoint
    /// or a Hugging Face folder keeps it beside `config.json`), whether or not it exists.
    public static func initTokenizerURL(_ initFrom: String) -> URL {
        Checkpoint.resolve(URL(fileURLWithPath: initFrom)).appendingPathComponent("tokenizer.json")
    }

    /// For a run that starts from `initFrom` on text without `tokenizer`: reads with the
    /// model's own tokenizer (`initTokenizerURL`), so the embeddings see the ids they were
    /// trained on. Refuses, in one line naming the way out (`--tokenizer` or
    /// `--new-tokenizer`), a model without a tokenizer, one this tool cannot read and one
    /// larger than the model's vocabulary. Nothing changes when `newTokenizer` is set, a
    /// tokenizer is given, there is no `initFrom` or the data are token ids.
    public mutating func adoptInitTokenizer() throws {
        if newTokenizer == true, let tokenizer {
            throw ConfigurationError("--new-tokenizer and --tokenizer \(tokenizer) contradict each other; give one")
        }
        guard let initFrom, tokenizer == nil, newTokenizer != true, !TokenFile.isTokenFile(data) else { return }
        let url = Self.initTokenizerURL(initFrom)
        let way = "pass --tokenizer FILE (the model's own) or --new-tokenizer"
        guard FileKind.of(url) == .regular else {
            throw ConfigurationError(
                "--init-from \(initFrom) has no tokenizer.json (its embeddings only make sense with the ids they were trained on); \(way)")
        }
        let tok: BPETokenizer
        do { tok = try TokenizerJSON.load(path: url.path) } catch {
            // The reason without the path, which the message names once.
            let why: String
            if case TokenizerError.invalidJSON(_, let w) = error { why = w } else { why = FileErrorText.describe(error) }
            throw ConfigurationError("cannot read the --init-from model's tokenizer (\(why)); \(way) (file '\(url.path)')")
        }
        if tok.vocabSize > model.vocab {
            throw ConfigurationError(
                "the --init-from model's tokenizer has \(tok.vocabSize) tokens but its vocabulary is \(model.vocab); \(way) (file '\(url.path)')")
        }
        tokenizer = url.path
    }

    /// The prompt of the sample `train` prints at the end: a speaker tag of the default corpus
    /// (Shakespeare's plays), so the sample shows at a glance whether the model learned the
    /// play format.
    public static let defaultSamplePrompt = "ROMEO:"

    /// Rejects impossible settings with a one-line reason.
    public func validate() throws {
        try model.validate()
        try model.validate(batch: batch, seq: seq)
        if steps <= 0 { throw ConfigurationError("steps must be positive, got \(steps)") }
        if gradAccum <= 0 { throw ConfigurationError("grad accumulation must be at least 1, got \(gradAccum)") }
        if !["constant", "cosine"].contains(schedule) { throw ConfigurationError("schedule must be 'constant' or 'cosine', got '\(schedule)'") }
        if warmup < 0 { throw ConfigurationError("warmup must be non-negative, got \(warmup)") }
        if !(minLRRatio > 0 && minLRRatio <= 1) { throw ConfigurationError("min lr ratio must be in (0, 1], got \(minLRRatio)") }
        if !(clip >= 0) || !clip.isFinite { throw ConfigurationError("clip must be non-negative, got \(clip)") }
        if evalEvery < 0 || evalBatches < 0 || checkpointEvery < 0 { throw ConfigurationError("eval and checkpoint intervals must be non-negative") }
        let built = try OptimizerRegistry.make(optimizer, options: optimizerOptions)
        _ = try dpCommunication?.resolved(optimizer: built, name: optimizer, clip: clip, adjustsGradients: adapter?.method == .comera)
        try adapter?.validate(for: model)
        if let restarts {
            if restarts.every >= steps { throw ConfigurationError("restarts every \(restarts.every) steps never happen in a run of \(steps) steps") }
            try restarts.validate(adapter: adapter)
        } else if adapter?.method == .relora {
            throw ConfigurationError("--adapter relora needs --relora-every N (steps between merges)")
        }
        if resolvedStepRule.isZerothOrder { try (zerothOrder ?? ZerothOrderSettings()).validate(for: resolvedStepRule) }
        try resolvedPrecision.checkSupported()
        if adapter?.method == .comera {
            if resolvedStepRule != .backprop { throw ConfigurationError("--parametrization comera trains with --trainer backprop (its rank penalty acts on gradients)") }
            if restarts?.action == .refactor { throw ConfigurationError("refactorization applies to low-rank and sltrain, not to comera's tensor trains") }
        }
    }

    /// The operators of the model's linear slots (`adapter`, or dense).
    public func operators() throws -> LinearOperators { try adapter?.operators() ?? .dense }

    public var learningRateSchedule: LearningRateSchedule {
        schedule == "cosine" ? .cosine(warmup: warmup, total: steps, minRatio: minLRRatio) : .constant(warmup: warmup)
    }

    /// The precision of the linear products, resolved (`precision`, or fp32).
    public var resolvedPrecision: MatmulPrecision { precision ?? .fp32 }

    /// The step rule, resolved (`stepRule`, or backprop).
    public var resolvedStepRule: StepRuleName { stepRule ?? .backprop }

    /// The zeroth-order settings with the rule's defaults filled in; nil for backprop.
    public var resolvedZerothOrder: ZerothOrderSettings? {
        resolvedStepRule.isZerothOrder ? (zerothOrder ?? ZerothOrderSettings()).resolved(for: resolvedStepRule) : nil
    }

    public var stepOptions: StepOptions {
        var s = StepOptions()
        s.gradAccum = gradAccum; s.clipNorm = clip; s.perLayerUpdate = perLayerUpdate
        s.schedule = restarts?.schedule(over: learningRateSchedule) ?? learningRateSchedule
        s.seed = seed
        s.zerothOrder = zerothOrder ?? ZerothOrderSettings()
        s.zerothOrderLearningRate = optimizerOptions.learningRate
        s.zerothOrderWeightDecay = optimizerOptions.weightDecay ?? 0
        return s
    }

    /// Fields that must agree between a run and its resumption (everything but the step
    /// budget and the intervals); returns the names of those that differ.
    public func resumeMismatches(with other: RunConfig) -> [String] {
        var diff: [String] = []
        if model != other.model { diff.append("model") }
        if data != other.data { diff.append("data") }
        if optimizer != other.optimizer { diff.append("optimizer") }
        if !sameOptimizerSettings(as: other) { diff.append("optimizer hyperparameters") }
        if (try? optimizerOptions.resolvedStatePrecision()) != (try? other.optimizerOptions.resolvedStatePrecision()) {
            diff.append("state precision")
        }
        if batch != other.batch { diff.append("batch") }
        if seq != other.seq { diff.append("seq") }
        if gradAccum != other.gradAccum { diff.append("grad-accum") }
        if schedule != other.schedule || warmup != other.warmup || minLRRatio != other.minLRRatio { diff.append("schedule") }
        if clip != other.clip { diff.append("clip") }
        if perLayerUpdate != other.perLayerUpdate { diff.append("per-layer-update") }
        if adapter != other.adapter { diff.append("adapter") }
        if restarts != other.restarts { diff.append("restarts") }
        if resolvedStepRule != other.resolvedStepRule { diff.append("step rule") }
        if resolvedZerothOrder != other.resolvedZerothOrder { diff.append("zeroth-order settings") }
        if resolvedPrecision != other.resolvedPrecision { diff.append("precision") }
        if seed != other.seed { diff.append("seed") }
        if shuffle != other.shuffle { diff.append("shuffle") }
        return diff
    }

    /// Whether two configs run the same optimizer settings: the resolved values
    /// (`OptimizerRegistry.resolvedSettings`) when both resolve, so an option given
    /// explicitly at its default matches one left out (and a `run_config.json` from before
    /// a setting existed matches its default); the recorded options otherwise.
    public func sameOptimizerSettings(as other: RunConfig) -> Bool {
        // The state precision is compared on its own (`resumeMismatches` names it).
        var mine = self, theirs = other
        mine.optimizerOptions.statePrecision = nil; theirs.optimizerOptions.statePrecision = nil
        if let a = mine.resolvedOptimizer, let b = theirs.resolvedOptimizer { return a == b }
        return mine.optimizerOptions == theirs.optimizerOptions
    }

    /// The optimizer's resolved settings per parameter group, or nil when the options do
    /// not resolve (`validate` says why).
    public var resolvedOptimizer: ResolvedOptimizer? {
        try? OptimizerRegistry.resolvedSettings(optimizer, options: optimizerOptions)
    }

    /// The config as saved: its fields plus `resolvedOptimizer`, every optimizer setting
    /// with its default filled in, per parameter group. That record is written for the
    /// reader; loading ignores it (and tolerates its absence in older files), since it
    /// follows from `optimizer` and `optimizerOptions`.
    /// With `plan`, the record also holds `resolvedRun`: what the run resolved to at start
    /// beyond the config's own keys (parameters, tokens per step, steps per epoch, ...; see
    /// `RunPlan`).
    public func jsonString(plan: RunPlan? = nil) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? enc.encode(Saved(config: self, resolved: resolvedOptimizer, plan: plan))).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    /// `RunConfig`'s own keys with `resolvedOptimizer` (and `resolvedRun`) beside them.
    private struct Saved: Encodable {
        let config: RunConfig
        let resolved: ResolvedOptimizer?
        let plan: RunPlan?
        enum Keys: String, CodingKey { case resolvedOptimizer, resolvedRun }
        func encode(to encoder: Encoder) throws {
            try config.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encodeIfPresent(resolved, forKey: .resolvedOptimizer)
            try c.encodeIfPresent(plan, forKey: .resolvedRun)
        }
    }

    public static func load(url: URL) throws -> RunConfig {
        guard FileKind.of(url) == .regular, let d = FileManager.default.contents(atPath: url.path) else {
            throw DataError("cannot read '\(url.path)': not a readable file (is this a run directory?)")
        }
        do { return try JSONDecoder().decode(RunConfig.self, from: d) } catch {
            throw DataError("'\(url.path)' is not a valid run config: \(JSONErrorText.describe(error))")
        }
    }
}

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
    /// A tokenizer.json to use; nil trains one on the training split (vocab = model vocab).
    public var tokenizer: String?
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
    /// Evaluate every this many steps (and at the end); 0 evaluates only at the end.
    public var evalEvery: Int = 100
    /// Validation batches per periodic evaluation (0 = the whole validation split). The final
    /// evaluation always reads the whole split.
    public var evalBatches: Int = 16
    public var seed: UInt64 = 0
    public var shuffle: Bool = true
    /// Save a checkpoint every this many steps (and at the end); 0 only at the end.
    public var checkpointEvery: Int = 0

    public init(model: LlamaConfig, data: String) { self.model = model; self.data = data }

    /// `train`'s learning rate for `adamw` when none is given: 3e-3, tuned for `tiny` on
    /// Shakespeare (AdamW's library default, 1e-3, under-trains the short runs); every other
    /// method keeps its own documented default.
    public static let defaultAdamWLearningRate: Float = 3e-3

    /// Fills in what `train` decides for a new run that the method's own settings do not:
    /// `defaultAdamWLearningRate` for `adamw` without `--lr`.
    public mutating func applyTrainDefaults() {
        if optimizerOptions.learningRate == nil, optimizer == "adamw" { optimizerOptions.learningRate = Self.defaultAdamWLearningRate }
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
        _ = try OptimizerRegistry.make(optimizer, options: optimizerOptions)
    }

    public var learningRateSchedule: LearningRateSchedule {
        schedule == "cosine" ? .cosine(warmup: warmup, total: steps, minRatio: minLRRatio) : .constant(warmup: warmup)
    }

    /// The step rule, resolved (`stepRule`, or backprop).
    public var resolvedStepRule: StepRuleName { stepRule ?? .backprop }

    public var stepOptions: StepOptions {
        var s = StepOptions()
        s.gradAccum = gradAccum; s.clipNorm = clip; s.perLayerUpdate = perLayerUpdate; s.schedule = learningRateSchedule
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
        if batch != other.batch { diff.append("batch") }
        if seq != other.seq { diff.append("seq") }
        if gradAccum != other.gradAccum { diff.append("grad-accum") }
        if schedule != other.schedule || warmup != other.warmup || minLRRatio != other.minLRRatio { diff.append("schedule") }
        if clip != other.clip { diff.append("clip") }
        if perLayerUpdate != other.perLayerUpdate { diff.append("per-layer-update") }
        if (stepRule ?? .backprop) != (other.stepRule ?? .backprop) { diff.append("step rule") }
        if seed != other.seed { diff.append("seed") }
        if shuffle != other.shuffle { diff.append("shuffle") }
        return diff
    }

    /// Whether two configs run the same optimizer settings: the resolved values
    /// (`OptimizerRegistry.resolvedSettings`) when both resolve, so an option given
    /// explicitly at its default matches one left out (and a `run_config.json` from before
    /// a setting existed matches its default); the recorded options otherwise.
    public func sameOptimizerSettings(as other: RunConfig) -> Bool {
        if let a = resolvedOptimizer, let b = other.resolvedOptimizer { return a == b }
        return optimizerOptions == other.optimizerOptions
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
    public func jsonString() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? enc.encode(Saved(config: self, resolved: resolvedOptimizer))).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    /// `RunConfig`'s own keys with `resolvedOptimizer` beside them.
    private struct Saved: Encodable {
        let config: RunConfig
        let resolved: ResolvedOptimizer?
        enum Keys: String, CodingKey { case resolvedOptimizer }
        func encode(to encoder: Encoder) throws {
            try config.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encodeIfPresent(resolved, forKey: .resolvedOptimizer)
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

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// What a run resolved to when it started, every default filled in: the model's size, the
/// optimizer of each parameter group with its hyperparameters, the schedule, tokens per step
/// and steps per epoch. `train` prints it (`lines`) before the first step, and
/// `run_config.json` records it as `resolvedRun` (beside `resolvedOptimizer`), so what was
/// printed and what was saved are the same values. The record holds what the config's own
/// keys do not (parameters, tokens per step, steps per epoch, ...), under names no config key
/// has, so a reader (or a script editing `"steps"`) finds each value once.
public struct RunPlan: Encodable, Equatable, Sendable {
    /// Trainable parameters (`LlamaConfig.parameterCount`).
    public var parameters: Int
    /// `LlamaConfig.summary`, with the preset's name when there is one.
    public var model: String
    /// Where the initial weights come from: "random (seed N)" or the `--init-from` path.
    public var initialWeights: String
    /// The tokenizer: its path, or "none (token ids)" for pre-tokenized data.
    public var tokenizer: String
    public var optimizer: ResolvedOptimizer?
    /// A zeroth-order rule and its resolved settings (with the `.sgd` update's rate), or nil
    /// for backprop; printed, and recorded as `resolvedTrainer`.
    public var trainer: String?
    public var steps: Int
    /// `batch * seq * gradAccum`.
    public var tokensPerStep: Int
    public var batch: Int
    public var seq: Int
    public var gradAccum: Int
    /// Whole training sequences / sequences per step (fractional when a step reads more
    /// than the split, or the split is not a whole number of steps).
    public var stepsPerEpoch: Double
    /// `steps / stepsPerEpoch`.
    public var epochs: Double
    public var trainTokens: Int
    public var validationTokens: Int
    /// "cosine" or "constant".
    public var schedule: String
    /// The warm-up that runs (after `RunConfig.fitWarmupToSteps`).
    public var warmup: Int
    /// Final rate / peak for cosine; nil for constant.
    public var minLRRatio: Float?
    /// Gradient clipping norm, 0 = off.
    public var clip: Float
    /// "every N steps (M batches) and on the whole validation split at the end", or "at the end".
    public var evaluation: String
    /// "2 ranks, projected all-reduce" under mpirun (`DataParallelCommunication` resolved); nil for one process.
    public var dataParallel: String? = nil

    /// What `run_config.json`'s `resolvedRun` holds; the rest is the config's own keys (and
    /// `resolvedOptimizer`).
    enum CodingKeys: String, CodingKey {
        case parameters, modelSummary = "modelSummary", initialWeights, tokenizerSource = "tokenizerSource", tokensPerStep,
             stepsPerEpoch, epochs, trainTokens, validationTokens, evaluationPlan = "evaluationPlan", resolvedTrainer,
             resolvedDataParallel
    }

    public func encode(to encoder: Encoder) throws {
        var k = encoder.container(keyedBy: CodingKeys.self)
        try k.encode(parameters, forKey: .parameters)
        try k.encode(model, forKey: .modelSummary)
        try k.encode(initialWeights, forKey: .initialWeights)
        try k.encode(tokenizer, forKey: .tokenizerSource)
        try k.encode(tokensPerStep, forKey: .tokensPerStep)
        try k.encode((stepsPerEpoch * 100).rounded() / 100, forKey: .stepsPerEpoch)
        try k.encode((epochs * 1000).rounded() / 1000, forKey: .epochs)
        try k.encode(trainTokens, forKey: .trainTokens)
        try k.encode(validationTokens, forKey: .validationTokens)
        try k.encode(evaluation, forKey: .evaluationPlan)
        try k.encodeIfPresent(trainer, forKey: .resolvedTrainer)
        try k.encodeIfPresent(dataParallel, forKey: .resolvedDataParallel)
    }

    public init(config c: RunConfig, trainTokens: Int, validationTokens: Int, tokenizer: String?) {
        parameters = c.model.parameterCount
        model = (c.preset.map { "\($0): " } ?? "") + c.model.summary
        initialWeights = c.initFrom ?? "random (seed \(c.seed))"
        self.tokenizer = tokenizer ?? "none (token ids)"
        optimizer = c.resolvedOptimizer
        let rule = c.resolvedStepRule
        if let zo = c.resolvedZerothOrder {
            var line = "\(rule.rawValue) (forward passes only) \(zo.line)"
            if zo.update == .sgd {
                // The optimizer is not used: the rule updates in place at its own rate.
                optimizer = nil
                let lr = c.optimizerOptions.learningRate ?? ZerothOrderSettings.defaultLearningRate
                line += " lr=\(SettingText.number(lr)) weightDecay=\(SettingText.number(c.optimizerOptions.weightDecay ?? 0)) (matrices only)"
            }
            trainer = line
        }
        steps = c.steps
        batch = c.batch; seq = c.seq; gradAccum = c.gradAccum
        tokensPerStep = c.batch * c.seq * c.gradAccum
        let sequences = max(0, trainTokens - 1) / max(1, c.seq)
        stepsPerEpoch = Double(sequences) / Double(max(1, c.batch * c.gradAccum))
        epochs = stepsPerEpoch > 0 ? Double(c.steps) / stepsPerEpoch : 0
        self.trainTokens = trainTokens
        self.validationTokens = validationTokens
        schedule = c.schedule
        warmup = c.warmup
        minLRRatio = c.schedule == "cosine" ? c.minLRRatio : nil
        clip = c.resolvedStepRule.isZerothOrder ? 0 : c.clip  // zeroth-order rules have no gradient to clip
        evaluation = c.evalEvery > 0
            ? "every \(c.evalEvery) steps (\(c.evalBatches > 0 ? "\(c.evalBatches) batches" : "the whole validation split")) and on the whole validation split at the end"
            : "on the whole validation split at the end"
    }

    /// The plan as `train` prints it, one fact a line.
    public var lines: [String] {
        var out = [
            "model: \(Self.count(parameters)) parameters (\(model))",
            "initial weights: \(initialWeights)",
            "tokenizer: \(tokenizer)",
        ]
        if let trainer { out.append("trainer: \(trainer)") }
        if let optimizer {
            out.append("optimizer: \(optimizer.optimizer)")
            out += optimizer.lines.map { "  \($0)" }
        }
        let sched = schedule == "cosine"
            ? "cosine, warm-up \(warmup) step\(warmup == 1 ? "" : "s"), decaying to \(SettingText.number(minLRRatio ?? 0)) of the peak at step \(steps)"
            : "constant after a warm-up of \(warmup) step\(warmup == 1 ? "" : "s")"
        out.append("schedule: \(sched); gradient clipping \(clip > 0 ? SettingText.number(clip) : "off")")
        out.append("steps: \(steps) of \(batch) x \(seq) tokens\(gradAccum > 1 ? " x \(gradAccum) micro-batches" : ""), "
                   + "\(Self.grouped(tokensPerStep)) tokens per step, \(Self.grouped(steps * tokensPerStep)) in all")
        out.append("data: \(Self.grouped(trainTokens)) training tokens, \(Self.grouped(validationTokens)) validation tokens; "
                   + String(format: "%.1f steps per epoch, %.2f epochs", stepsPerEpoch, epochs))
        out.append("evaluation: \(evaluation)")
        if let dataParallel { out.append("data parallel: \(dataParallel)") }
        return out
    }

    /// 5.3 M, 1.2 B, 40,656.
    static func count(_ n: Int) -> String {
        if n >= 1_000_000_000 { return String(format: "%.2f B", Double(n) / 1e9) }
        if n >= 1_000_000 { return String(format: "%.1f M", Double(n) / 1e6) }
        return grouped(n)
    }

    /// 1,228,800.
    static func grouped(_ n: Int) -> String {
        let s = String(abs(n))
        var out = ""
        for (i, ch) in s.enumerated() {
            if i > 0, (s.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (n < 0 ? "-" : "") + out
    }
}

/// How far a long piece of work inside a run has come (`RunEvent.progress`).
public struct RunProgress: Sendable, Equatable {
    public enum Task: Sendable, Equatable {
        /// Learning BPE merges (`done` merges of at most `total`).
        case tokenizerTraining
        /// An evaluation after `step` (`final`: the whole validation split at the end), by batch.
        case evaluation(step: Int, final: Bool)
    }
    public var task: Task
    public var done: Int
    public var total: Int

    public init(task: Task, done: Int, total: Int) { self.task = task; self.done = done; self.total = total }
}

import Foundation

/// What a training run reports while it works. Only the command line prints these.
public enum RunEvent {
    case status(String)
    case step(StepMetrics, totalSteps: Int)
    case evaluation(step: Int, loss: Double, perplexity: Double)
    case checkpoint(step: Int, path: String)
}

/// The outcome of a run.
public struct RunSummary: Codable, Sendable {
    public var steps: Int
    public var tokens: Int
    public var trainLoss: Double
    public var valLoss: Double?
    public var valPerplexity: Double?
    public var bestValLoss: Double?
    public var unigramPerplexity: Double?
    public var tokensPerSecond: Double
    /// Mean wall time of the optimizer steps of this invocation (evaluation excluded).
    public var stepMsMean: Double
    public var seconds: Double
    public var peakRSSBytes: Int
    public var optimizerStateBytes: Int
    public var checkpoint: String
}

/// A whole training run: data, tokenizer, model, optimizer, the step loop, evaluation,
/// metrics, checkpoints and the loss plot, in the run directory `outDir`:
///
/// - `run_config.json`: the resolved `RunConfig`;
/// - `metrics.jsonl`: one `StepMetrics` line per optimizer step;
/// - `checkpoint/`: weights, Hugging Face `config.json`, `tokenizer.json`, optimizer state
///   and trainer state (see `Checkpoint`), replaced atomically;
/// - `loss.svg`: training and validation loss against tokens;
/// - `summary.json`: the `RunSummary`, written when the run reaches its last step.
///
/// Resuming (`resume: true`) restores weights, optimizer state, step, data position and
/// random streams from `checkpoint/`, so a run of 40 steps equals a run of 20 steps resumed
/// to 40, bit for bit.
public final class TrainingRun {
    public let config: RunConfig
    public let outDir: URL
    public let resume: Bool
    /// Pause after this step: checkpoint and return, as if interrupted (the schedule still
    /// spans `config.steps`); `resume` continues from there.
    public let stopAfter: Int?

    public init(config: RunConfig, outDir: URL, resume: Bool = false, stopAfter: Int? = nil) {
        self.config = config; self.outDir = outDir; self.resume = resume; self.stopAfter = stopAfter
    }

    public var checkpointDir: URL { outDir.appendingPathComponent("checkpoint") }

    /// Mean loss over evaluation batches, weighted by tokens.
    public static func evaluate(model: LlamaModel, batches: [TokenBatch]) throws -> (loss: Double, tokens: Int) {
        var sum = 0.0, n = 0
        for b in batches {
            let r = try model.loss(b)
            sum += r.loss * Double(r.tokens); n += r.tokens
        }
        return (n > 0 ? sum / Double(n) : .nan, n)
    }

    public func run(events: (RunEvent) -> Void = { _ in }) throws -> RunSummary {
        let c = config
        try c.validate()
        let fm = FileManager.default
        try fm.createDirectory(at: outDir, withIntermediateDirectories: true)
        let started = Date()

        // Data and tokenizer.
        let data = try PreparedData.prepare(data: c.data, tokenizer: c.tokenizer, vocab: c.model.vocab, status: { events(.status($0)) })
        var batches = try SequenceBatches(tokens: data.train, batch: c.batch, seq: c.seq, shuffle: c.shuffle, seed: c.seed)
        // Periodic evaluations read the first `evalBatches` validation batches; the final one
        // reads the whole validation split.
        let allEvalBatches: [TokenBatch] = data.validation.count > c.seq
            ? try SequenceBatches(tokens: data.validation, batch: c.batch, seq: c.seq, shuffle: false, seed: 0).evaluationBatches()
            : []
        let evalBatches = c.evalBatches > 0 ? Array(allEvalBatches.prefix(c.evalBatches)) : allEvalBatches
        if evalBatches.isEmpty { events(.status("the validation split is shorter than one sequence: no evaluation")) }
        let unigram = data.validation.isEmpty ? nil
            : PreparedData.unigramPerplexity(train: data.train, validation: data.validation, vocab: c.model.vocab)
        events(.status("\(data.train.count) training tokens, \(data.validation.count) validation tokens"))

        // Model, optimizer, trainer.
        let model: LlamaModel
        let optimizer = try OptimizerRegistry.make(c.optimizer, options: c.optimizerOptions)
        var state = TrainerState(step: 0)
        if resume {
            model = try Checkpoint.loadModel(from: checkpointDir)
            guard model.config == c.model else {
                throw ConfigurationError("the checkpoint's model does not match the run config")
            }
            guard let s = try Checkpoint.restore(from: checkpointDir, into: model, optimizer: optimizer) else {
                throw ConfigurationError("'\(checkpointDir.path)' has no trainer state to resume from")
            }
            state = s
            batches.position = s.dataPosition
        } else if let from = c.initFrom {
            model = try Checkpoint.loadModel(from: URL(fileURLWithPath: from))
            guard model.config == c.model else {
                throw ConfigurationError("--init-from model does not match the run's model config")
            }
        } else {
            model = try LlamaModel(config: c.model, seed: c.seed)
        }
        let trainer = try Trainer(model: model, optimizer: optimizer, options: c.stepOptions)
        trainer.setStep(state.step)
        try AtomicFile.write(c.jsonString() + "\n", to: outDir.appendingPathComponent("run_config.json"))
        if let tp = data.tokenizerPath, tp != outDir.appendingPathComponent("tokenizer.json").path {
            try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: tp)), to: outDir.appendingPathComponent("tokenizer.json"))
        }
        let metricsURL = outDir.appendingPathComponent("metrics.jsonl")
        let log = try MetricsLog(url: metricsURL, truncateAfterStep: resume ? state.step : nil)

        func saveCheckpoint() throws {
            state.dataPosition = batches.position
            state.runConfig = c.jsonString()
            try Checkpoint.save(to: checkpointDir, model: model, optimizer: optimizer, state: state)
            if let tp = data.tokenizerPath {
                try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: tp)), to: checkpointDir.appendingPathComponent("tokenizer.json"))
            }
            events(.checkpoint(step: state.step, path: checkpointDir.path))
        }

        var lastLoss = Double.nan, lastVal: Double? = nil
        var trainSeconds = 0.0, trainTokens = 0
        let tokensPerStep = c.batch * c.seq * c.gradAccum
        let end = min(c.steps, stopAfter ?? c.steps)
        while trainer.step < end {
            let t0 = Clock.now()
            let mbs = (0..<c.gradAccum).map { _ in batches.next() }
            let report = try trainer.trainStep(mbs)
            let dt = Clock.since(t0)
            trainSeconds += dt; trainTokens += tokensPerStep
            state.step = trainer.step
            state.tokensSeen += tokensPerStep
            lastLoss = Double(report.loss)
            var m = StepMetrics(
                step: trainer.step, tokens: state.tokensSeen, loss: lastLoss,
                lr: Double((optimizer.optimizers.first?.learningRate ?? 0) * report.lrScale),
                tokens_per_s: Double(tokensPerStep) / dt, rss_bytes: ProcessMemory.currentRSS, step_ms: dt * 1000)
            let last = trainer.step == c.steps
            if !evalBatches.isEmpty, last || (c.evalEvery > 0 && trainer.step % c.evalEvery == 0) {
                let e = try Self.evaluate(model: model, batches: last ? allEvalBatches : evalBatches)
                m.val_loss = e.loss; m.val_ppl = exp(e.loss)
                lastVal = e.loss
                state.bestValLoss = min(state.bestValLoss ?? .infinity, e.loss)
                events(.evaluation(step: trainer.step, loss: e.loss, perplexity: exp(e.loss)))
            }
            log.append(m)
            events(.step(m, totalSteps: c.steps))
            if trainer.step == end || (c.checkpointEvery > 0 && trainer.step % c.checkpointEvery == 0) { try saveCheckpoint() }
        }
        if let all = try? MetricsLog.read(url: metricsURL) {
            try? AtomicFile.write(MetricsLog.lossPlot(runs: [(outDir.lastPathComponent, all)]), to: outDir.appendingPathComponent("loss.svg"))
        }
        let summary = RunSummary(
            steps: trainer.step, tokens: state.tokensSeen, trainLoss: lastLoss, valLoss: lastVal,
            valPerplexity: lastVal.map { exp($0) }, bestValLoss: state.bestValLoss, unigramPerplexity: unigram,
            tokensPerSecond: trainTokens > 0 ? Double(trainTokens) / trainSeconds : 0,
            stepMsMean: trainTokens > 0 ? trainSeconds * 1000 / Double(trainTokens / tokensPerStep) : 0,
            seconds: Date().timeIntervalSince(started), peakRSSBytes: ProcessMemory.peakRSS,
            optimizerStateBytes: optimizer.stateBytes(model.parameters), checkpoint: checkpointDir.path)
        if trainer.step == c.steps {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            if let d = try? enc.encode(summary) { try AtomicFile.write(d, to: outDir.appendingPathComponent("summary.json")) }
        }
        return summary
    }
}

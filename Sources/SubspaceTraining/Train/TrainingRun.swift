import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// What a training run reports while it works. Only the command line prints these.
public enum RunEvent {
    case status(String)
    /// Something the user should know about a choice made for them (a warm-up clamped to
    /// the run, a schedule re-stretched on resume); printed as a `note:` line.
    case notice(String)
    /// What the run resolved to, every default filled in (also `resolvedRun` in
    /// `run_config.json`), before the first step; `firstStep` is 0 for a new run.
    case started(RunPlan, firstStep: Int)
    /// How far tokenizer training or an evaluation has come.
    case progress(RunProgress)
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
    /// On a classification file: the last evaluation's accuracy (`ChoiceAccuracy`).
    public var valAccuracy: Double?
    public var bestValLoss: Double?
    public var unigramPerplexity: Double?
    public var tokensPerSecond: Double
    /// Mean wall time of the optimizer steps of this invocation (evaluation excluded).
    public var stepMsMean: Double
    /// Wall time of this invocation, start to end (data, tokenizer, training, evaluation,
    /// checkpoints).
    public var seconds: Double
    /// Of `seconds`: the optimizer steps of this invocation.
    public var trainSeconds: Double?
    /// Of `seconds`: the evaluations of this invocation (the final one included).
    public var evalSeconds: Double?
    /// The step this invocation started from (0 for a new run; the checkpoint's on resume).
    public var firstStep: Int?
    public var peakRSSBytes: Int
    public var optimizerStateBytes: Int
    public var checkpoint: String
    /// True when the run stopped early because `shouldStop` asked it to (an interrupt); the
    /// checkpoint holds step `steps`.
    public var interrupted: Bool?
}

/// A whole training run: data, tokenizer, model, optimizer, the step loop, evaluation,
/// metrics, checkpoints and the loss plot, in the run directory `outDir`:
///
/// - `run_config.json`: the resolved `RunConfig`;
/// - `metrics.jsonl`: one `StepMetrics` line per optimizer step;
/// - `checkpoint/`: weights, Hugging Face `config.json`, `tokenizer.json`, optimizer state
///   and trainer state (see `Checkpoint`), replaced atomically;
/// - `loss.svg`: `RunFigure` (loss against steps and tokens, learning rate, tokens/s, RSS);
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
    /// Replace a run already in `outDir` (its run files are removed first).
    public let overwrite: Bool
    /// Asked after every step; when it returns true the run saves a checkpoint and returns
    /// with `RunSummary.interrupted` set (how the command line turns SIGINT and SIGTERM into
    /// a clean stop).
    public var shouldStop: () -> Bool = { false }
    /// The job this run is one rank of (`Distributed.start`); one process by default. With
    /// N ranks each reads its share of every global batch (`DataParallel`), gradients are
    /// averaged before each update, and rank 0 alone writes the run directory and evaluates.
    public var communicator: any Communicator = SingleProcess()

    public init(config: RunConfig, outDir: URL, resume: Bool = false, stopAfter: Int? = nil, overwrite: Bool = false) {
        self.config = config; self.outDir = outDir; self.resume = resume; self.stopAfter = stopAfter; self.overwrite = overwrite
    }

    public var checkpointDir: URL { outDir.appendingPathComponent("checkpoint") }

    /// Mean loss over evaluation batches, weighted by tokens. Forward only (`LlamaModel.loss`):
    /// the inference arena, or the training arena when a run already holds one of the shape.
    /// `progress` is told (batches done, batches) after each batch.
    /// The run's training micro-batches: sequences of the token stream, or prompt-completion
    /// examples when the data is such a file.
    static func trainingBatches(_ data: PreparedData, config c: RunConfig, shuffle: Bool, seed: UInt64) throws -> any TrainingBatches {
        if let ex = data.examples {
            return try ExampleBatches(examples: ex.train, batch: c.batch, seq: c.seq, shuffle: shuffle, seed: seed)
        }
        return try SequenceBatches(tokens: data.train, batch: c.batch, seq: c.seq, shuffle: shuffle, seed: seed)
    }

    /// The whole validation split in batches (none when it is shorter than one sequence).
    static func validationBatches(_ data: PreparedData, config c: RunConfig) throws -> [TokenBatch] {
        if let ex = data.examples {
            return try ExampleBatches(examples: ex.validation, batch: c.batch, seq: c.seq, shuffle: false, seed: 0).evaluationBatches()
        }
        return data.validation.count > c.seq
            ? try SequenceBatches(tokens: data.validation, batch: c.batch, seq: c.seq, shuffle: false, seed: 0).evaluationBatches()
            : []
    }

    public static func evaluate(
        model: LlamaModel, batches: [TokenBatch], progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> (loss: Double, tokens: Int) {
        var sum = 0.0, n = 0
        for (i, b) in batches.enumerated() {
            let r = try model.loss(b)
            sum += r.loss * Double(r.tokens); n += r.tokens
            progress(i + 1, batches.count)
        }
        return (n > 0 ? sum / Double(n) : .nan, n)
    }

    public func run(events: (RunEvent) -> Void = { _ in }) throws -> RunSummary {
        var c = config
        try ResourceCheck.modelFits(c.model, copies: 2, for: "training")
        try c.validate()
        // A new run: a warm-up that fits the run, and the --init-from model's own tokenizer.
        // (A resumed run keeps what its run_config.json recorded.)
        var warmupNote: String? = nil
        if !resume {
            warmupNote = c.fitWarmupToSteps()
            try c.adoptInitTokenizer()
        }
        if let stopAfter, stopAfter <= 0 || stopAfter >= c.steps {
            throw ConfigurationError("--stop-after \(stopAfter) must be between 1 and \(c.steps - 1), a step before the last (\(c.steps))")
        }
        let comm = communicator, root = comm.isRoot
        try DataParallel.check(c, ranks: comm.size)
        var perRank = c
        perRank.batch = c.batch / comm.size
        try ResourceCheck.training(perRank)
        // Claim the directory (refusals, the lock) before any work; rank 0 alone writes it.
        let claim = root ? try RunDirectory(outDir, mode: resume ? .resume : .fresh(overwrite: overwrite)) : nil
        defer { withExtendedLifetime(claim) {} }
        let started = Date()

        // Where a resumed run stands, read before anything heavy so that a wrong request
        // fails at once.
        var saved: TrainerState? = nil
        if resume {
            guard let s = try Checkpoint.loadTrainerState(from: checkpointDir) else {
                throw ConfigurationError("'\(checkpointDir.path)' has no trainer state to resume from")
            }
            try Self.checkResumable(s, config: c)
            if let stopAfter, stopAfter <= s.step {
                throw ConfigurationError("--stop-after \(stopAfter) is not after the run's current step \(s.step)")
            }
            saved = s
        }
        if let warmupNote { events(.notice(warmupNote)) }
        if let s = saved, let note = Self.restretchNote(state: s, config: c) { events(.notice(note)) }

        // Data and tokenizer. A resumed run reads with its own tokenizer, the copy in its
        // checkpoint, whatever has happened to the file it was first given.
        let runTokenizer = resume ? Self.runTokenizer(in: outDir) : nil
        let data = try PreparedData.prepare(
            data: c.data, tokenizer: runTokenizer?.path ?? c.tokenizer, vocab: c.model.vocab, status: { events(.status($0)) },
            tokenizerProgress: { events(.progress(RunProgress(task: .tokenizerTraining, done: $0, total: $1))) })
        let tokenizerData: Data? = try data.tokenizerPath.map { path in
            do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw DataError("cannot read the tokenizer \(FileErrorText.describe(error))")
            }
        }
        var batches = try Self.trainingBatches(data, config: c, shuffle: c.shuffle, seed: c.seed)
        // Periodic evaluations read the first `evalBatches` validation batches; the final one
        // reads the whole validation split.
        let allEvalBatches = try Self.validationBatches(data, config: c)
        let evalBatches = c.evalBatches > 0 ? Array(allEvalBatches.prefix(c.evalBatches)) : allEvalBatches
        if evalBatches.isEmpty { events(.status("the validation split is shorter than one sequence: no evaluation")) }
        let unigram = data.validation.isEmpty || data.examples != nil ? nil
            : PreparedData.unigramPerplexity(train: data.train, validation: data.validation, vocab: c.model.vocab)
        // A classification file's accuracy on its validation examples, at every evaluation.
        let choices: (examples: [PromptCompletionExample], labels: [[Int32]])? = data.examples.flatMap { ex in
            data.labels.flatMap { labels in data.tokenizer.map { tok in (ex.validation, labels.map { tok.encode($0) }) } }
        }

        // Model, optimizer, trainer.
        let model: LlamaModel
        let optimizer = try OptimizerRegistry.make(c.optimizer, options: c.optimizerOptions)
        var state = TrainerState(step: 0)
        if resume {
            // Built as the run config says (its slot operators included); `restore` checks
            // the checkpoint against it and fills every tensor.
            model = try LlamaModel(config: c.model, seed: c.seed, operators: c.operators())
            guard let s = try Checkpoint.restore(from: checkpointDir, into: model, optimizer: optimizer), s == saved else {
                throw ConfigurationError("'\(checkpointDir.path)' changed while the run was starting")
            }
            state = s
            batches.position = s.dataPosition
        } else if let from = c.initFrom {
            let source = try Checkpoint.loadModel(from: URL(fileURLWithPath: from))
            guard source.config == c.model else {
                throw ConfigurationError("--init-from model does not match the run's model config")
            }
            if c.adapter == nil && !Checkpoint.hasAdapters(source) {
                model = source
            } else {
                // A new adapter (or none) on the starting model's function, its own adapter merged;
                // LoRA-XS's and LoRA-SB's factors from the SVD of that base.
                model = try LlamaModel(config: c.model, seed: c.seed, operators: c.operators())
                try model.loadDense(from: source)
                try model.initializeAdaptersFromBase()
            }
        } else {
            model = try LlamaModel(config: c.model, seed: c.seed, operators: c.operators())
        }
        try model.usePrecision(c.resolvedPrecision)
        if !resume, let a = c.adapter, a.method == .loraSB {
            // LoRA-SB starts at the truncated first update of full fine-tuning, estimated on
            // batches drawn apart from the training stream (which stays as it would be).
            var draw = try Self.trainingBatches(data, config: c, shuffle: true, seed: c.seed &+ 0x5B)
            let n = a.initBatches ?? AdapterSettings.defaultLoRASBBatches
            events(.status("LoRA-SB: estimating the first update on \(n) batches"))
            let lr = optimizer.optimizers.first?.learningRate ?? 1e-3
            try LoRASBInitialization.initialize(
                model: model, batches: (0..<n).map { _ in draw.next() },
                stepSize: LoRASBInitialization.referenceStepSize(learningRate: lr, warmupSteps: c.warmup))
        }
        var rule = try c.resolvedStepRule.make(model: model, optimizer: optimizer, options: c.stepOptions)
        let reducer = comm.size > 1 ? GradientReducer(communicator: comm) : nil
        var dataParallel: String? = nil
        if let reducer {
            guard let backprop = rule as? BackpropStep, !backprop.readsSlotStatistics else {
                throw ConfigurationError("--optimizer \(c.optimizer) cannot run data-parallel: it reads each rank's own activations")
            }
            backprop.reducer = reducer
            let mode = try (c.dpCommunication ?? .automatic).resolved(
                optimizer: optimizer, name: c.optimizer, clip: c.clip, adjustsGradients: c.comera != nil)
            if mode == .projected { reducer.projecting = optimizer }
            dataParallel = "\(comm.size) ranks, \(mode.rawValue) all-reduce"
            // Every rank starts from rank 0's weights (they agree already; this makes sure).
            for p in model.parameters { try comm.broadcast(p.value) }
        }
        if let comera = c.comera { rule = try ComeraStep(inner: rule, settings: comera, steps: c.steps) }
        var trainer: any StepRule = rule
        if let r = c.restarts {
            trainer = RestartingStep(inner: rule, optimizer: optimizer, settings: r, totalSteps: c.steps, seed: c.seed)
        }
        trainer.setStep(state.step)
        // LoRA dropout draws one mask per training forward: one per micro-batch, so a resumed
        // run continues the masks where the saved one stopped.
        for op in model.loraOperators { op.dropoutDraws = UInt64(state.step) &* UInt64(c.gradAccum) }
        if resume, let stateful = rule as? StatefulStepRule {
            let saved = try Checkpoint.loadStepRuleState(from: checkpointDir)
            do { try stateful.importState(saved) } catch let e as ConfigurationError {
                throw CheckpointError(.optimizerMismatch, checkpointDir.appendingPathComponent(Checkpoint.stepRuleFile), e.message)
            }
        }
        var plan = RunPlan(
            config: c, trainTokens: data.train.count, validationTokens: data.validation.count,
            tokenizer: data.tokenizer == nil ? nil : (c.tokenizer ?? "trained on the training split (\(data.tokenizer!.vocabSize) tokens)"))
        plan.dataParallel = dataParallel
        if root { try AtomicFile.write(c.jsonString(plan: plan) + "\n", to: outDir.appendingPathComponent("run_config.json")) }
        if root, let tokenizerData {
            try AtomicFile.write(tokenizerData, to: outDir.appendingPathComponent("tokenizer.json"))
        }
        let metricsURL = outDir.appendingPathComponent("metrics.jsonl")
        let log = root ? try MetricsLog(url: metricsURL, truncateAfterStep: resume ? state.step : nil) : nil

        // What transformers needs besides weights and config.json to load the checkpoint as a
        // whole (`AutoTokenizer`, `generate()` without arguments): the tokenizer, its config
        // and the generation config, with the end-of-text token as bos, eos and pad.
        let special = data.tokenizer?.endOfTextID.map { SpecialTokenIds(bos: $0, eos: [$0]) } ?? SpecialTokenIds()
        var hubFiles: [(name: String, data: Data)] = [("generation_config.json", try special.generationConfigJSON())]
        if let tokenizerData, let tok = data.tokenizer {
            hubFiles.append(("tokenizer.json", tokenizerData))
            hubFiles.append(("tokenizer_config.json", try tok.huggingFaceTokenizerConfig(modelMaxLength: c.model.maxSeq)))
        }
        var savedStep = resume ? state.step : -1
        func saveCheckpoint() throws {
            state.dataPosition = batches.position
            guard root else { savedStep = state.step; return }
            state.runConfig = c.jsonString()
            try Checkpoint.save(
                to: checkpointDir, model: model, adapter: c.adapter, optimizer: optimizer, state: state,
                specialTokens: special, files: hubFiles, stepRuleState: (rule as? StatefulStepRule)?.exportState())
            savedStep = state.step
            events(.checkpoint(step: state.step, path: checkpointDir.path))
        }

        var lastLoss = Double.nan, lastVal: Double? = nil, lastAccuracy: Double? = nil
        var interrupted = false
        var trainSeconds = 0.0, trainTokens = 0, evalSeconds = 0.0
        let tokensPerStep = c.batch * c.seq * c.gradAccum
        let end = min(c.steps, stopAfter ?? c.steps)
        let firstStep = trainer.step
        events(.started(plan, firstStep: firstStep))
        while trainer.step < end {
            let t0 = Clock.now()
            let mbs = (0..<c.gradAccum).map { _ in DataParallel.shard(batches.next(), rank: comm.rank, of: comm.size) }
            let commBefore = reducer?.bytes ?? 0
            let report = try trainer.trainStep(mbs)
            let dt = Clock.since(t0)
            trainSeconds += dt; trainTokens += tokensPerStep
            state.step = trainer.step
            state.tokensSeen += tokensPerStep
            lastLoss = Double(report.loss)
            var m = StepMetrics(
                step: trainer.step, tokens: state.tokensSeen, loss: lastLoss,
                lr: Double(report.learningRate ?? (optimizer.optimizers.first?.learningRate ?? 0) * report.lrScale),
                tokens_per_s: Double(tokensPerStep) / dt, rss_bytes: ProcessMemory.currentRSS, step_ms: dt * 1000)
            m.comm_bytes = reducer.map { $0.bytes - commBefore }
            if let tt = model.tensorTrainSummary { m.report(tt, lateIndicator: (rule as? ComeraStep)?.objective.lateIndicator) }
            let last = trainer.step == c.steps
            if root, !evalBatches.isEmpty, last || (c.evalEvery > 0 && trainer.step % c.evalEvery == 0) {
                let te = Clock.now()
                let step = trainer.step
                let e = try Self.evaluate(model: model, batches: last ? allEvalBatches : evalBatches) { done, total in
                    events(.progress(RunProgress(task: .evaluation(step: step, final: last), done: done, total: total)))
                }
                evalSeconds += Clock.since(te)
                guard e.loss.isFinite else { throw TrainingError.nonFiniteLoss(step: trainer.step, loss: Float(e.loss)) }
                guard exp(e.loss).isFinite else { throw TrainingError.diverged(step: trainer.step, validationLoss: e.loss) }
                m.val_loss = e.loss; m.val_ppl = exp(e.loss)
                if let choices {
                    m.val_accuracy = try ChoiceAccuracy.accuracy(model: model, examples: choices.examples, labels: choices.labels, seq: c.seq, batch: c.batch)
                    lastAccuracy = m.val_accuracy
                }
                lastVal = e.loss
                state.bestValLoss = min(state.bestValLoss ?? .infinity, e.loss)
                events(.evaluation(step: trainer.step, loss: e.loss, perplexity: exp(e.loss)))
            }
            try log?.append(m)
            events(.step(m, totalSteps: c.steps))
            if trainer.step == end || (c.checkpointEvery > 0 && trainer.step % c.checkpointEvery == 0) { try saveCheckpoint() }
            if trainer.step < end, try comm.size > 1 ? comm.any(shouldStop()) : shouldStop() {
                if savedStep != trainer.step { try saveCheckpoint() }
                interrupted = true
                break
            }
        }
        if root, let all = try? MetricsLog.read(url: metricsURL) {
            try? AtomicFile.write(MetricsLog.lossPlot(runs: [(outDir.lastPathComponent, all)]), to: outDir.appendingPathComponent("loss.svg"))
        }
        let summary = RunSummary(
            steps: trainer.step, tokens: state.tokensSeen, trainLoss: lastLoss, valLoss: lastVal,
            valPerplexity: lastVal.map { exp($0) }, valAccuracy: lastAccuracy, bestValLoss: state.bestValLoss, unigramPerplexity: unigram,
            tokensPerSecond: trainTokens > 0 ? Double(trainTokens) / trainSeconds : 0,
            stepMsMean: trainTokens > 0 ? trainSeconds * 1000 / Double(trainTokens / tokensPerStep) : 0,
            seconds: Date().timeIntervalSince(started), trainSeconds: trainSeconds, evalSeconds: evalSeconds, firstStep: firstStep,
            peakRSSBytes: ProcessMemory.peakRSS,
            optimizerStateBytes: optimizer.stateBytes(model.parameters), checkpoint: checkpointDir.path,
            interrupted: interrupted ? true : nil)
        if root, trainer.step == c.steps {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            if let d = try? enc.encode(summary) { try AtomicFile.write(d, to: outDir.appendingPathComponent("summary.json")) }
        }
        return summary
    }

    /// The tokenizer a run was trained with: its checkpoint's copy (or, for checkpoints
    /// written before the copy moved inside, the run directory's).
    static func runTokenizer(in dir: URL) -> URL? {
        let inside = Checkpoint.resolve(dir.appendingPathComponent("checkpoint")).appendingPathComponent("tokenizer.json")
        if Checkpoint.fileKind(inside) == .regular { return inside }
        let beside = dir.appendingPathComponent("tokenizer.json")
        return Checkpoint.fileKind(beside) == .regular ? beside : nil
    }

    /// On resume with a different `--steps`, what happens to the schedule: a cosine decay is
    /// re-stretched to the new total (the note names the next step's rate under the old and
    /// the new schedule); nil when nothing changes (same total, or a constant schedule past
    /// its warm-up, which the total does not move).
    static func restretchNote(state s: TrainerState, config c: RunConfig) -> String? {
        guard let text = s.runConfig, let old = try? JSONDecoder().decode(RunConfig.self, from: Data(text.utf8)),
              old.steps != c.steps else { return nil }
        let before = old.learningRateSchedule.multiplier(step: s.step)
        let after = c.learningRateSchedule.multiplier(step: s.step)
        guard before != after || c.schedule == "cosine" else { return nil }
        let peak = c.optimizerOptions.learningRate
        func rate(_ m: Float) -> String {
            peak.map { SettingText.number(Float(String(format: "%.3g", Double($0 * m)))!) } ?? String(format: "%.3g x the peak", Double(m))
        }
        return "the \(c.schedule) schedule is re-stretched from \(old.steps) to \(c.steps) steps: "
            + "step \(s.step + 1) runs at lr \(rate(after)) (it would have been \(rate(before))), "
            + "and the decay reaches its end at step \(c.steps)"
    }

    /// Refuses a trainer state that this run cannot continue: one that has already reached
    /// the requested step budget, or whose counters do not fit the run (every step consumes
    /// `gradAccum` micro-batches of `batch * seq` tokens, so both counters follow from the
    /// step; anything else is a damaged or foreign file, and values like 2^63 - 1 would
    /// overflow the data cursor).
    static func checkResumable(_ s: TrainerState, config c: RunConfig) throws {
        let file = "trainer_state.json"
        if s.step >= c.steps {
            throw ConfigurationError("the run has already done \(s.step) steps; pass --steps greater than \(s.step) to train further")
        }
        let (position, o1) = s.step.multipliedReportingOverflow(by: c.gradAccum)
        let (perStep, o2) = (c.batch * c.seq).multipliedReportingOverflow(by: c.gradAccum)
        let (tokens, o3) = s.step.multipliedReportingOverflow(by: perStep)
        if o1 || o2 || o3 || s.dataPosition != position || s.tokensSeen != tokens {
            throw ConfigurationError(
                "\(file) does not fit the run: step \(s.step), data position \(s.dataPosition), tokens \(s.tokensSeen) "
                + "(expected data position \(o1 ? "overflow" : String(position)) and tokens \(o3 || o2 ? "overflow" : String(tokens)))")
        }
    }

    /// Checks what a resume request names against the run it resumes: a preset, model
    /// config, `--init-from` or tokenizer given again must be the run's own (the tokenizer by
    /// content, since a path can be edited or moved). Each mismatch is refused with both
    /// values named.
    public static func checkResumeRequest(
        saved: RunConfig, runDir: URL, preset: String?, model: LlamaConfig?, initFrom: String?, tokenizer: String?
    ) throws {
        if let preset, preset != saved.preset {
            throw ConfigurationError("--preset \(preset) does not match the run being resumed (\(saved.preset.map { "preset \($0)" } ?? "no preset"))")
        }
        if let model, model != saved.model {
            throw ConfigurationError("--config describes a different model from the run being resumed (\(model.summary) against \(saved.model.summary))")
        }
        if let initFrom {
            let a = URL(fileURLWithPath: initFrom).standardizedFileURL.path
            let b = saved.initFrom.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            if a != b {
                throw ConfigurationError("--init-from \(initFrom) does not match the run being resumed (\(saved.initFrom ?? "no --init-from"))")
            }
        }
        if let tokenizer {
            let given: Data
            do { given = try Data(contentsOf: URL(fileURLWithPath: tokenizer)) } catch {
                throw DataError("cannot read the tokenizer \(FileErrorText.describe(error))")
            }
            guard let own = runTokenizer(in: runDir) else {
                throw ConfigurationError("--tokenizer \(tokenizer): the run being resumed has no tokenizer of its own")
            }
            let ownData = (try? Data(contentsOf: own)) ?? Data()
            if given != ownData {
                throw ConfigurationError("--tokenizer \(tokenizer) differs from the run's own tokenizer (\(own.path))")
            }
        }
    }
}

import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model (defaults: the tiny preset on the Shakespeare corpus, about 5 minutes on 2 cores).")

    /// `RunConfig`'s defaults, quoted in the help.
    static let d = RunConfig(model: LlamaConfig(dim: 8, layers: 1, heads: 1, ffnDim: 8, vocab: 8, maxSeq: 8), data: "")

    @Option(help: "Model preset: \(LlamaConfig.presetNames.joined(separator: ", ")) (default tiny).") var preset: String?
    @Option(help: "A model config.json (Hugging Face LLaMA keys) instead of a preset.") var config: String?
    @Option(help: "Text file, directory of .txt works, .bin/.u32 token file, or .jsonl prompt-completion file for fine-tuning (loss on completions only; needs the model's tokenizer) (default: the Shakespeare corpus, \(defaultData())).") var data: String?
    @Option(help: "A tokenizer.json to use (default: the --init-from model's own; for a new model, one trained on the training split with the model's vocabulary).") var tokenizer: String?
    @Flag(name: .customLong("new-tokenizer"), help: "With --init-from: train a new tokenizer on the data instead of using the model's own (its embeddings then read ids they were not trained on).") var newTokenizer = false
    @Option(help: "Replay a run: its run_config.json (or its run directory); flags given override the recipe's values.") var recipe: String?
    @Option(help: "Optimizer steps (default \(d.steps)).") var steps: Int?
    @Option(help: "Sequences per micro-batch (default \(d.batch)); per rank under mpirun -np N (the global batch is N x this).") var batch: Int?
    @Option(help: "Sequence length (default \(d.seq), at most the model's maximum).") var seq: Int?
    @Option(help: "constant or cosine (linear warm-up, cosine decay to --min-lr-ratio) (default \(d.schedule)).") var schedule: String?
    @Option(help: "Warm-up steps (default \(d.warmup)); at most --steps - 1: a longer warm-up is clamped, with a note.") var warmup: Int?
    @Option(name: .customLong("min-lr-ratio"), help: "Final learning rate / peak for cosine (default \(SettingText.number(d.minLRRatio))).") var minLRRatio: Float?
    @Option(name: .customLong("eval-every"), help: "Evaluate every N steps (0: only at the end) (default \(d.evalEvery)).") var evalEvery: Int?
    @Option(name: .customLong("eval-batches"), help: "Validation batches per periodic evaluation (0: all; the final one reads all) (default \(d.evalBatches)).") var evalBatches: Int?
    @Option(name: .customLong("checkpoint-every"), help: "Checkpoint every N steps (0: only at the end) (default \(d.checkpointEvery)).") var checkpointEvery: Int?
    @Option(help: "Random seed (default \(d.seed)).") var seed: UInt64?
    @Option(help: "Shuffle sequences (true) or read the file in order (false) (default \(d.shuffle)).") var shuffle: Bool?
    @Option(name: .customLong("init-from"), help: "Start from a Hugging Face LLaMA directory, a Subspace checkpoint or run directory (weights only; its tokenizer.json is used unless --tokenizer or --new-tokenizer).") var initFrom: String?
    @Option(help: "Run directory (default runs/PRESET-OPTIMIZER-TIME).") var out: String?
    @Option(help: "Resume the run in this directory.") var resume: String?
    @Option(help: "Matrix products of the linear layers: fp32, or bf16 (bf16 operands, fp32 accumulation and master weights; needs AVX512-BF16 or AMX) (default fp32).") var precision: String?
    @Option(name: .customLong("dp-communication"), help: "Under mpirun: what ranks all-reduce each step: full (whole gradients), projected (galore, galore8bit, galore-adafactor, projfactor: the projected gradient R = P^T G; exact, needs --clip 0) or auto (projected where exact, else full) (default auto).") var dpCommunication: String?
    @Flag(help: "Replace the run already in --out (its metrics, checkpoint and run files are deleted).") var overwrite = false
    @Option(name: .customLong("stop-after"), help: "Pause after this step (checkpoint saved); continue later with --resume.") var stopAfter: Int?
    @Option(name: .customLong("sample-tokens"), help: "Tokens to sample at the end (0: none).") var sampleTokens: Int = 120
    @Option(name: .customLong("sample-prompt"), help: "Prompt of the sample at the end.") var samplePrompt: String = RunConfig.defaultSamplePrompt
    @OptionGroup var zo: ZerothOrderFlags
    @OptionGroup var opt: OptimizerFlags
    @OptionGroup(title: "Adapters and restarts") var adapterFlags: AdapterFlags

    func run() throws {
        // Under `mpirun -np N`: N ranks share the cores, and the run must be one that splits.
        let launch = LaunchEnvironment.current
        if launch.isDistributed && ProcessInfo.processInfo.environment["SUBSPACE_THREADS"] == nil {
            Parallel.workers = launch.threadsPerRank()
        }
        let root = launch.rank == 0
        let (cfg, dir, resuming) = guarded { try resolve() }
        guarded { try DataParallel.check(cfg, ranks: launch.size) }
        if let stopAfter, stopAfter <= 0 { fail("--stop-after must be a positive step, got \(stopAfter)") }
        if sampleTokens < 0 { fail("--sample-tokens must be non-negative, got \(sampleTokens)") }
        if resuming && overwrite { fail("--overwrite and --resume contradict each other") }
        // Flags the method does not read (--rank with adamw): a resumed run was warned when it began.
        let zoIgnored = (cfg.zerothOrder ?? ZerothOrderSettings()).unused(by: cfg.resolvedStepRule)
        if root, !resuming, !zoIgnored.isEmpty {
            writeStderr("warning: --trainer \(cfg.resolvedStepRule.rawValue) does not use \(zoIgnored.joined(separator: ", ")); ignored\n")
        }
        let ignored = resuming || !cfg.resolvedStepRule.usesOptimizerState(cfg.zerothOrder ?? ZerothOrderSettings())
            ? [] : OptimizerRegistry.ignoredOptions(cfg.optimizer, options: cfg.optimizerOptions)
        if root, !ignored.isEmpty {
            let list = ignored.joined(separator: ", ")
            writeStderr("warning: \(cfg.optimizer) does not use \(list); \(ignored.count == 1 ? "it is" : "they are") ignored "
                        + "(subspace settings --optimizer \(cfg.optimizer) shows what it uses)\n")
        }
        let progress = Progress(total: cfg.steps)
        Interrupts.install()
        var warned = false
        let communicator = guarded { try Distributed.start(launch) }
        let summary: RunSummary = guarded {
            let run = TrainingRun(config: cfg, outDir: dir, resume: resuming, stopAfter: stopAfter, overwrite: overwrite)
            run.shouldStop = { Interrupts.requested != nil }
            run.communicator = communicator
            return try run.run { event in
                guard root else { return }
                switch event {
                case .status(let s): progress.line(s)
                case .notice(let s): progress.line("note: \(s)")
                case .started(let plan, let first):
                    progress.begin(firstStep: first)
                    progress.line(((first > 0 ? ["resuming at step \(first) of \(plan.steps)"] : []) + plan.lines).joined(separator: "\n"))
                case .progress(let p): progress.task(p)
                case .step(let m, let total):
                    Interrupts.graceful = true
                    // Once the first step ran (so user errors stay one `error:` line).
                    if !warned, let w = BLAS.backend.warning { progress.line("warning: \(w)") }
                    warned = true
                    progress.step(m, total: total)
                case .evaluation(let step, let loss, let ppl):
                    progress.line(String(format: "step %d: validation loss %.4f, perplexity %.2f", step, loss, ppl))
                case .checkpoint(let step, let path): progress.line("step \(step): checkpoint saved to \(path)")
                }
            }
        }
        (communicator as? MPICommunicator)?.finish()
        if !root { Foundation.exit(Interrupts.requested.map { 128 + $0 } ?? 0) }
        if let sig = Interrupts.requested {
            progress.finish()
            writeStderr("interrupted at step \(summary.steps); continue with: subspace train --resume \(shellQuoted(dir.path))\n")
            Foundation.exit(128 + sig)
        }
        progress.finish()
        let first = summary.firstStep ?? 0
        let done = summary.steps - first
        let what = first > 0
            ? "trained steps \(first + 1)-\(summary.steps) (\(done) steps, \(done * cfg.batch * cfg.seq * cfg.gradAccum) tokens; \(summary.steps) steps in all)"
            : "trained \(summary.steps) steps (\(summary.tokens) tokens)"
        let train = summary.trainSeconds ?? 0, eval = summary.evalSeconds ?? 0
        var lines = [what + String(format: " in %.0f s: training %.0f s, evaluation %.0f s, the rest (data, checkpoints) %.0f s; %.0f tokens/s; peak RSS %.0f MiB",
                                   summary.seconds, train, eval, max(0, summary.seconds - train - eval), summary.tokensPerSecond,
                                   Double(summary.peakRSSBytes) / 1048576)]
        if let vl = summary.valLoss, let vp = summary.valPerplexity {
            lines.append(String(format: "validation loss %.4f, perplexity %.2f", vl, vp)
                         + (summary.unigramPerplexity.map { String(format: " (unigram baseline %.1f)", $0) } ?? ""))
        }
        lines.append("run directory: \(dir.path)")
        print(lines.joined(separator: "\n"))
        if sampleTokens > 0 {
            let ck = dir.appendingPathComponent("checkpoint")
            if FileManager.default.fileExists(atPath: ck.appendingPathComponent("tokenizer.json").path) {
                print("sample:")
                fflush(stdout)
                var stream: TextStream?
                do {
                    try sampleText(checkpoint: ck, prompt: samplePrompt, tokens: min(sampleTokens, cfg.model.maxSeq - 8), temperature: 0.8,
                                   topK: 40, seed: 0) { stream = TextStream(); return stream! }
                } catch {
                    stream?.finish()
                    writeStderr("warning: no sample: \(describe(error))\n")
                }
            }
        }
    }

    /// Builds the run config from flags, or from the run directory when resuming (flags then
    /// may only extend `--steps` or change intervals; anything else must match).
    func resolve() throws -> (RunConfig, URL, Bool) {
        let initFrom = self.initFrom.map { checkpointDirectory($0).path }
        if let resume {
            if out != nil { throw ConfigurationError("--out and --resume name the run directory twice; give --resume alone") }
            if recipe != nil { throw ConfigurationError("--recipe and --resume contradict each other: a resumed run follows its own run_config.json") }
            if newTokenizer { throw ConfigurationError("--new-tokenizer applies to a new run; a resumed run reads with its own tokenizer") }
            let dir = URL(fileURLWithPath: resume)
            let saved = try RunConfig.load(url: dir.appendingPathComponent("run_config.json"))
            try TrainingRun.checkResumeRequest(
                saved: saved, runDir: dir, preset: preset, model: try config.map(readModelConfig), initFrom: initFrom, tokenizer: tokenizer)
            var cfg = saved
            try apply(to: &cfg)
            cfg.tokenizer = saved.tokenizer
            let diff = cfg.resumeMismatches(with: saved)
            if !diff.isEmpty {
                throw ConfigurationError("the config does not match the run being resumed (\(diff.joined(separator: ", ")) differ)")
            }
            return (cfg, dir, true)
        }
        if let recipe {
            for (flag, given) in [("--preset", preset != nil), ("--config", config != nil), ("--init-from", initFrom != nil)] where given {
                throw ConfigurationError("--recipe names the model already; \(flag) cannot change it (edit a copy of the recipe instead)")
            }
            var url = URL(fileURLWithPath: recipe)
            if FileKind.of(url) == .directory { url = url.appendingPathComponent("run_config.json") }
            var cfg = try RunConfig.load(url: url)
            try apply(to: &cfg)
            if newTokenizer { cfg.newTokenizer = true; if tokenizer == nil { cfg.tokenizer = nil } }
            let dir = URL(fileURLWithPath: out ?? "runs/\(cfg.preset ?? "model")-\(cfg.optimizer)-\(Int(Date().timeIntervalSince1970))")
            return (cfg, dir, false)
        }
        var model: LlamaConfig
        var presetName: String? = preset ?? "tiny"
        if let initFrom {
            model = try Checkpoint.loadModel(from: URL(fileURLWithPath: initFrom)).config
            presetName = nil
        } else if let config {
            model = try readModelConfig(config)
            presetName = nil
        } else {
            model = try LlamaConfig.preset(presetName!)
        }
        var cfg = RunConfig(model: model, data: data ?? defaultData())
        cfg.preset = presetName
        cfg.initFrom = initFrom
        if newTokenizer { cfg.newTokenizer = true }
        cfg.seq = min(256, model.maxSeq)
        cfg.batch *= LaunchEnvironment.current.size
        try apply(to: &cfg)
        // The default run's AdamW rate (tuned for `tiny` on Shakespeare); every other optimizer
        // keeps its own documented default unless --lr is given.
        cfg.applyTrainDefaults()
        let dir = URL(fileURLWithPath: out ?? "runs/\(presetName ?? "model")-\(cfg.optimizer)-\(Int(Date().timeIntervalSince1970))")
        return (cfg, dir, false)
    }

    /// A model config file: ours (`LlamaConfig` JSON) or transformers' `config.json`.
    func readModelConfig(_ path: String) throws -> LlamaConfig {
        guard let d = FileManager.default.contents(atPath: path) else { throw ConfigurationError("cannot read config '\(path)'") }
        if let ours = try? JSONDecoder().decode(LlamaConfig.self, from: d) { return ours }
        return try LlamaConfig(huggingFaceJSON: d)
    }

    func apply(to c: inout RunConfig) throws {
        if let data { c.data = data }
        if let tokenizer { c.tokenizer = tokenizer }
        if let steps { c.steps = steps }
        // --batch is per rank: the global batch (run_config.json's) is ranks x --batch.
        if let batch { c.batch = batch * LaunchEnvironment.current.size }
        if let seq { c.seq = seq }
        if let schedule { c.schedule = schedule }
        if let warmup { c.warmup = warmup }
        if let minLRRatio { c.minLRRatio = minLRRatio }
        if let evalEvery { c.evalEvery = evalEvery }
        if let evalBatches { c.evalBatches = evalBatches }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        if let seed { c.seed = seed }
        if let precision { c.precision = try MatmulPrecision(parsing: precision) }
        if let dpCommunication { c.dpCommunication = try DataParallelCommunication(parsing: dpCommunication) }
        try zo.apply(to: &c)
        if let shuffle { c.shuffle = shuffle }
        try opt.apply(to: &c)
        try adapterFlags.apply(to: &c)
    }
}

/// The default corpus (`DefaultCorpus`).
func defaultData() -> String { DefaultCorpus.path("shakespeare") }

/// Samples text from a checkpoint directory that holds a tokenizer.json, writing the prompt
/// and then each token to a `TextStream` as it is produced; returns the timings.
///
/// - `numSamples` continuations of the prompt are printed one after another; with more than
///   one, each starts with a `=== sample i of N (seed s) ===` line. Sample i (from 0) draws
///   from `RandomStream(seed: seed + i)`, so it can be reproduced alone with `--seed s`.
/// - A sample ends at `tokens`, at the tokenizer's end-of-text token, or at the first
///   occurrence of one of `stops` in its generated text (not the prompt). The stop string is
///   printed, as transformers' `stop_strings` leaves it in the output; whatever the last
///   token carried past it is not.
/// - `useCache` false runs `Sampler.generate`, the reference path that recomputes the whole
///   context per token, instead of `Sampler.generateCached`.
@discardableResult
func sampleText(
    checkpoint: URL, prompt: String, tokens: Int, temperature: Float, topK: Int, topP: Float = 1, seed: UInt64,
    slidingWindow: Bool = false, stops: [String] = [], numSamples: Int = 1, useCache: Bool = true, adapter: URL? = nil, edit: URL? = nil,
    newStream: () -> TextStream = { TextStream() }
) throws -> GenerationStats {
    guard tokens >= 0 else { throw ConfigurationError("--tokens must be non-negative, got \(tokens)") }
    guard temperature >= 0, temperature.isFinite else { throw ConfigurationError("--temperature must be non-negative, got \(temperature)") }
    guard topK >= 0 else { throw ConfigurationError("--top-k must be non-negative, got \(topK)") }
    guard topP > 0, topP <= 1 else { throw ConfigurationError("--top-p must be in (0, 1], got \(topP)") }
    guard numSamples >= 1 else { throw ConfigurationError("--num-samples must be at least 1, got \(numSamples)") }
    if stops.contains("") { throw ConfigurationError("--stop must not be empty") }
    let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP)
    // The published checkpoint, or its `.old` twin when a save was cut between renames.
    let checkpoint = Checkpoint.resolve(checkpoint)
    _ = try Checkpoint.loadConfig(from: checkpoint)
    let tokPath = checkpoint.appendingPathComponent("tokenizer.json")
    guard FileManager.default.fileExists(atPath: tokPath.path) else {
        throw ConfigurationError("'\(checkpoint.path)' has no tokenizer.json to sample text with")
    }
    var model = try Checkpoint.loadModel(from: checkpoint, adapter: adapter)
    if let edit { model = try PerfusionEditFiles.load(from: edit, onto: model) }
    let tok = try TokenizerJSON.load(path: tokPath.path)
    if tok.vocabSize > model.config.vocab {
        throw ConfigurationError("the tokenizer has \(tok.vocabSize) tokens but the model's vocabulary is \(model.config.vocab)")
    }
    var ids = tok.encode(prompt)
    if ids.isEmpty { ids = [0] }
    let context = model.config.maxSeq
    if !slidingWindow, ids.count + tokens > context {
        throw ConfigurationError(
            "the prompt (\(ids.count) tokens) plus --tokens \(tokens) exceed the model's context of \(context) tokens; "
            + "ask for fewer tokens or pass --sliding-window")
    }
    try ResourceCheck.inference(model.config, batch: 1, seq: min(context, ids.count + tokens))
    if let bad = model.nonFiniteParameter {
        throw ConfigurationError("'\(checkpoint.path)': weight '\(bad)' holds NaN or infinite values; nothing can be sampled")
    }
    let stopBytes = stops.map { Array($0.utf8) }
    let cache = useCache ? model.makeKVCache() : nil
    var total = GenerationStats()
    for i in 0..<numSamples {
        let sampleSeed = seed &+ UInt64(i)
        if numSamples > 1 { writeAll(STDOUT_FILENO, Array("=== sample \(i + 1) of \(numSamples) (seed \(sampleSeed)) ===\n".utf8)) }
        let output = newStream()
        var rng = RandomStream(seed: sampleSeed)
        output.write(prompt)
        var produced: [UInt8] = [], generated: [Int32] = []
        // Streams the token; false once a stop string has appeared (printed up to its end).
        // The text is the decode of every token so far, not a concatenation of per-token
        // decodes: SentencePiece-style decoders strip and fuse across tokens. While the last
        // token is a byte-fallback piece (`<0xF0>`) its character may be incomplete, so
        // nothing new is written until it is whole.
        func emit(_ next: Int32) -> Bool {
            let before = produced.count
            generated.append(next)
            produced = tok.decodeBytes(generated)
            if let end = firstStopEnd(produced, after: min(before, produced.count), stops: stopBytes) {
                output.write(bytes: Array(produced[..<end]))
                return false
            }
            if !tok.isByteFallbackToken(next) { output.write(bytes: produced) }
            return true
        }
        if let cache {
            let g = try Sampler.generateCached(
                model: model, prompt: ids, count: tokens, options: options, cache: cache, rng: &rng,
                stop: tok.endOfTextID.map(Int32.init), onToken: emit)
            total.add(g.stats)
        } else {
            var more = true
            let t0 = DispatchTime.now().uptimeNanoseconds
            var reference = GenerationStats()
            reference.generatedTokens = try Sampler.generate(
                model: model, prompt: ids, count: tokens, temperature: temperature, topK: topK, topP: topP, rng: &rng,
                stop: tok.endOfTextID.map(Int32.init), shouldStop: { _ in !more }
            ) { next in more = emit(next) }.count
            reference.decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            total.add(reference)
        }
        output.write(bytes: produced)
        output.finish()
    }
    return total
}

/// The end (exclusive byte offset) of the earliest stop string occurrence in `text` that
/// ends after `after` (the bytes that were already checked), or nil.
func firstStopEnd(_ text: [UInt8], after: Int, stops: [[UInt8]]) -> Int? {
    var best: Int?
    for s in stops {
        var start = max(0, after - s.count + 1)
        while start + s.count <= text.count {
            if text[start..<(start + s.count)].elementsEqual(s) {
                let end = start + s.count
                if best.map({ end < $0 }) ?? true { best = end }
                break
            }
            start += 1
        }
    }
    return best
}

/// One line for stderr: tokens/s of the prefill and of decoding.
func samplingRateLine(_ s: GenerationStats, samples: Int, cached: Bool) -> String {
    let seconds = s.prefillSeconds + s.decodeSeconds
    var line = String(format: "%d tokens in %.2f s, %.1f tokens/s", s.generatedTokens, seconds, seconds > 0 ? Double(s.generatedTokens) / seconds : 0)
    if samples > 1 { line += " (\(samples) samples)" }
    if cached {
        // The first token of each sample comes from the prefill's logits.
        let steps = s.generatedTokens - samples
        line += String(format: "; prefill %d tokens at %.0f tokens/s, decode %.1f tokens/s",
                       s.prefillTokens, s.prefillSeconds > 0 ? Double(s.prefillTokens) / s.prefillSeconds : 0,
                       s.decodeSeconds > 0 ? Double(max(steps, 0)) / s.decodeSeconds : 0)
        if s.windowRefills > 0 { line += "; \(s.windowRefills) steps past the context re-ran it whole" }
    } else {
        line += " (no key/value cache)"
    }
    return line
}

/// Writes text to standard output as it grows, holding back an incomplete UTF-8 sequence at
/// the end (a byte-level token can end inside a character) until its last byte arrives.
final class TextStream {
    private var written = 0
    private var text: [UInt8] = []

    func write(_ s: String) { emit(Array(s.utf8)) }

    /// `all` is everything generated so far; what was not yet written is written.
    func write(bytes all: [UInt8]) {
        guard all.count > written else { return }
        var end = all.count
        // Back up over a trailing incomplete UTF-8 sequence (at most 3 bytes).
        var i = all.count - 1, back = 0
        while i >= written, back < 3, all[i] & 0xC0 == 0x80 { i -= 1; back += 1 }
        if i >= written {
            let lead = all[i]
            let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if all.count - i < need { end = i }
        }
        if end > written { emit(Array(all[written..<end])); written = end }
    }

    func finish() { emit(Array("\n".utf8)) }

    private func emit(_ bytes: [UInt8]) { writeAll(STDOUT_FILENO, bytes) }
}

/// A progress bar on a terminal, plain log lines otherwise.
final class Progress {
    let total: Int
    let tty = isatty(STDERR_FILENO) != 0
    var started = Date()
    var lastPrint = Date.distantPast
    var barShown = false

    /// The step this process started from (its steps alone count for the ETA).
    var firstStep = 0
    /// The last quarter of a task printed (log output).
    var quarter = -1
    var taskLabel = ""

    init(total: Int) { self.total = total }

    /// The run is about to take its first step (`firstStep` done before this process).
    func begin(firstStep: Int) { self.firstStep = firstStep; started = Date() }

    /// Tokenizer training and evaluations: a counter on a terminal; in a log, a line at each
    /// quarter of the tokenizer training and of the final evaluation.
    func task(_ p: RunProgress) {
        let label: String
        var logged = false
        switch p.task {
        case .tokenizerTraining: label = "training the tokenizer: merge"; logged = true
        case .evaluation(let step, let final):
            label = final ? "step \(step): final evaluation on the whole validation split, batch" : "step \(step): evaluating, batch"
            logged = final
        }
        if tty {
            let now = Date()
            guard now.timeIntervalSince(lastPrint) > 0.1 || p.done == p.total else { return }
            lastPrint = now
            write("\r\u{1B}[2K\(label) \(p.done)/\(p.total)")
            barShown = true
        } else if logged {
            if label != taskLabel { taskLabel = label; quarter = -1 }
            let q = p.total > 0 ? p.done * 4 / p.total : 4
            if q > quarter, q < 4 { quarter = q; write("\(label) \(p.done)/\(p.total)\n") }
        }
    }

    func write(_ s: String) { writeStderr(s) }

    func line(_ s: String) {
        if barShown { write("\r\u{1B}[2K"); barShown = false }
        write(s + "\n")
    }

    func step(_ m: StepMetrics, total: Int) {
        let now = Date()
        let elapsed = now.timeIntervalSince(started)
        let done = m.step - firstStep
        let eta = done > 0 ? elapsed / Double(done) * Double(total - m.step) : 0
        // CoMERA: the TT slots' surviving size.
        let tt = m.tt_params.map { String(format: " | TT %d params, %.1fx, ranks %d%@", $0, m.tt_compression ?? .infinity, m.tt_ranks ?? 0, m.comera_late == nil ? "" : " (late)") } ?? ""
        if tty {
            guard now.timeIntervalSince(lastPrint) > 0.1 || m.step == total else { return }
            lastPrint = now
            let width = 30, done = Int(Double(width) * Double(m.step) / Double(max(total, 1)))
            let bar = String(repeating: "█", count: done) + String(repeating: "·", count: width - done)
            write(String(format: "\r\u{1B}[2K%@ %d/%d loss %.4f | %.0f tok/s%@ | ETA %@", bar, m.step, total, m.loss, m.tokens_per_s, tt, Self.clock(eta)))
            barShown = true
        } else if m.step == 1 || m.step % 10 == 0 || m.step == total {
            write(String(format: "step %d/%d loss %.4f lr %.2e %.0f tok/s%@ ETA %@\n", m.step, total, m.loss, m.lr, m.tokens_per_s, tt, Self.clock(eta)))
        }
    }

    func finish() { if barShown { write("\n"); barShown = false } }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}

/// `path` as a shell word: as it is when it needs no quoting, else in single quotes.
func shellQuoted(_ path: String) -> String {
    let plain = path.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "/._-+,:=@%".unicodeScalars.contains($0) }
    return plain && !path.isEmpty ? path : "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// What a suite run is asked to do: which suite, on which presets, for how long, on which data.
/// Saved as `DIR/suite.json`; the report's "reproduce" command is made from it.
public struct SuiteSpec: Codable, Equatable, Sendable {
    /// "pretrain", "finetune", "speed" or "lowrank" (`Suite.names`).
    public var suite: String
    public var presets: [String]
    /// Training steps per cell (fine-tuning steps for `finetune`, timed steps for `speed`).
    public var steps: Int
    /// Evaluate every this many steps (training suites).
    public var evalEvery: Int
    /// Training corpus of `pretrain` and of `finetune`'s base run (nil: `train`'s default,
    /// the Shakespeare corpus).
    public var data: String?
    /// `finetune`: the corpus fine-tuned on, with the base run's tokenizer.
    public var finetuneData: String
    /// `finetune`: an existing run directory or checkpoint to start from instead of the base cell.
    public var base: String?
    /// `finetune`: steps of the base cell.
    public var baseSteps: Int
    /// Only these cells (nil: all).
    public var only: [String]?
    /// Run the PyTorch peer after each training cell.
    public var peers: Bool
    /// `pretrain` and `finetune`: run every cell at x1/3, x1 and x3 its rate
    /// (`Suite.swept(_:)`), cells `<cell>@lr<rate>` (nil: false; `lowrank` always sweeps).
    public var sweep: Bool?
    /// The output directory.
    public var out: String

    /// The suite's defaults: `pretrain`: `tiny`, 2,000 steps, evaluation every 200;
    /// `finetune`: `tiny`, a 2,000-step AdamW base on Shakespeare then 300 steps on Milton,
    /// evaluation every 50; `speed`: `tiny`, `llama20m` and `llama60m`, 10 timed steps.
    public static func defaults(suite: String, out: String) throws -> SuiteSpec {
        guard Suite.names.contains(suite) else {
            throw ConfigurationError("unknown suite '\(suite)'; known: \(Suite.names.joined(separator: ", "))")
        }
        let presets = suite == "speed" ? ["tiny", "llama20m", "llama60m"] : ["tiny"]
        let steps = ["pretrain": 2000, "finetune": 300, "speed": 10, "lowrank": 1000][suite]!
        return SuiteSpec(
            suite: suite, presets: presets, steps: steps, evalEvery: suite == "finetune" ? 50 : 200, data: nil,
            finetuneData: DefaultCorpus.path("milton"), base: nil, baseSteps: 2000, only: nil, peers: false, out: out)
    }

    public func validate() throws {
        guard Suite.names.contains(suite) else {
            throw ConfigurationError("unknown suite '\(suite)'; known: \(Suite.names.joined(separator: ", "))")
        }
        if presets.isEmpty { throw ConfigurationError("--presets names no preset") }
        for p in presets { _ = try LlamaConfig.preset(p) }
        if Set(presets).count != presets.count { throw ConfigurationError("--presets names a preset twice") }
        if steps <= 0 { throw ConfigurationError("--steps must be positive, got \(steps)") }
        if baseSteps <= 0 { throw ConfigurationError("--base-steps must be positive, got \(baseSteps)") }
        if evalEvery < 0 { throw ConfigurationError("--eval-every must be non-negative, got \(evalEvery)") }
        if out.isEmpty { throw ConfigurationError("--out must name a directory") }
        if peers && suite == "lowrank" {
            throw ConfigurationError("the lowrank suite has no PyTorch peer (its adapters and parametrizations are this engine's)")
        }
        if sweep == true && !["pretrain", "finetune"].contains(suite) {
            throw ConfigurationError("--sweep applies to the pretrain and finetune suites (lowrank always sweeps)")
        }
        if peers && suite == "speed" {
            throw ConfigurationError("peers run the training suites (pretrain, finetune); bench/compare.sh is the speed peer")
        }
    }

    /// Parses a comma-separated list ("tiny,llama20m"), dropping blanks.
    public static func list(_ s: String) -> [String] {
        s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Whether `path` names one of the corpora `scripts/setup.sh` fetches (`data/NAME`, or the
    /// same files under `shared/data/NAME`): the default corpus of a suite, which every
    /// machine finds without `--data`, so reports name it rather than a machine's path.
    public static func isDefaultCorpus(_ path: String, _ name: String) -> Bool {
        Array(URL(fileURLWithPath: path).standardizedFileURL.pathComponents.suffix(2)) == ["data", name]
    }

    /// `path` as a report names it: the default corpora by name, anything else as given.
    public static func describeCorpus(_ path: String) -> String {
        if isDefaultCorpus(path, "shakespeare") { return "the Shakespeare corpus" }
        if isDefaultCorpus(path, "milton") { return "the Milton corpus" }
        return path
    }

    /// The command that reproduces this suite (flags that differ from the defaults only; the
    /// default corpora are found on any machine, so they are not named).
    public var command: String {
        let d = (try? SuiteSpec.defaults(suite: suite, out: out)) ?? self
        var parts = ["subspace", "bench", "--suite", suite]
        if presets != d.presets { parts += ["--presets", presets.joined(separator: ",")] }
        if steps != d.steps { parts += ["--steps", "\(steps)"] }
        if evalEvery != d.evalEvery, suite != "speed" { parts += ["--eval-every", "\(evalEvery)"] }
        if let data, !Self.isDefaultCorpus(data, "shakespeare") { parts += ["--data", data] }
        if suite == "finetune" {
            if finetuneData != d.finetuneData, !Self.isDefaultCorpus(finetuneData, "milton") { parts += ["--finetune-data", finetuneData] }
            if let base { parts += ["--base", base] } else if baseSteps != d.baseSteps { parts += ["--base-steps", "\(baseSteps)"] }
        }
        if let only { parts += ["--only", only.joined(separator: ",")] }
        if peers { parts += ["--peers"] }
        if sweep == true { parts += ["--sweep"] }
        parts += ["--out", out]
        return parts.joined(separator: " ")
    }
}

/// One process the suite runs: a training cell, `finetune`'s base run, or a `speed` bench.
public struct SuiteJob: Sendable, Equatable {
    public enum Kind: String, Sendable { case train, base, bench }
    public var kind: Kind
    public var cell: String
    /// The cell's own flags (optimizer and hyperparameters).
    public var flags: [String]
    public var preset: String
    public var directory: URL
    /// Arguments of the `subspace` executable.
    public var arguments: [String]
    /// The file whose presence marks the job finished.
    public var marker: String { kind == .bench ? "bench.json" : "summary.json" }
    /// The file recording the command a job's directory was produced by (`signature`).
    public static let commandFile = "suite-command.json"
    /// What makes two runs of a cell the same experiment: its arguments without the output
    /// directory (so moving or re-spelling `--out` does not re-run anything).
    public var signature: [String] {
        var out: [String] = [], skip = false
        for a in arguments {
            if skip { skip = false; continue }
            if a == "--out" { skip = true; continue }
            out.append(a)
        }
        return out
    }
    /// The batch and sequence length the job trains with.
    public var batch: Int
    public var seq: Int
}

/// The matrix of a suite: cells by presets, each a `SuiteJob` with its directory and command.
///
/// Layout under `out`: training cells of `tiny` in `out/<cell>/` (the layout of the first
/// `subspace suite`), of other presets in `out/<preset>/<cell>/`; `finetune`'s base run in
/// `out/base/` (`out/<preset>/base/`); `speed` cells in `out/<preset>/<cell>/`. With peers,
/// the PyTorch peer of a cell writes `pytorch.json` and `pytorch-metrics.jsonl` into the
/// cell's directory, the shared initial weights are `out/peer-init/<preset>/` and the token
/// streams `out/peer-data/<preset>/{train,validation}.bin`.
///
/// `finetune`: the base cell trains the preset with AdamW (lr 1e-3, the `pretrain` cell's
/// swept rate) on `data`; each cell then starts from its checkpoint (`train --init-from`: weights
/// only, a fresh optimizer) with its tokenizer on `finetuneData`, warming up over the first 10%
/// of the steps (GaLore's fine-tuning warmup share).
public struct SuitePlan: Sendable {
    public let spec: SuiteSpec
    /// The cells of the first preset (the cells of each: `cells(preset:)`).
    public let cells: [Suite.Cell]
    public let outURL: URL
    private let cellsByPreset: [String: [Suite.Cell]]

    public init(spec: SuiteSpec) throws {
        try spec.validate()
        var byPreset: [String: [Suite.Cell]] = [:]
        for p in spec.presets {
            let cells = try Suite.cells(suite: spec.suite, preset: p)
            byPreset[p] = spec.sweep == true ? try cells.flatMap(Suite.swept) : cells
        }
        if let only = spec.only {
            let known = Set(byPreset.values.joined().map(\.name))
            if let bad = only.first(where: { !known.contains($0) }) {
                let all = spec.presets.flatMap { byPreset[$0]! }.map(\.name)
                throw ConfigurationError("--only: no cell '\(bad)' in suite \(spec.suite); cells: \(all.joined(separator: ", "))")
            }
            let keep = Set(only)
            byPreset = byPreset.mapValues { $0.filter { keep.contains($0.name) } }
        }
        self.spec = spec
        self.cellsByPreset = byPreset
        self.cells = byPreset[spec.presets[0]]!
        self.outURL = URL(fileURLWithPath: spec.out)
    }

    /// The cells run on `preset` (the `lowrank` suite's rank follows the preset's width).
    public func cells(preset: String) -> [Suite.Cell] { cellsByPreset[preset] ?? [] }

    /// Sequences per batch: `train`'s default 8, and for `speed` 4 on `llama60m` and larger
    /// (the batch of the README's PyTorch comparison).
    public func batch(preset: String) -> Int {
        guard spec.suite == "speed", let c = try? LlamaConfig.preset(preset) else { return 8 }
        return c.parameterCount > 40_000_000 ? 4 : 8
    }

    public func seq(preset: String) -> Int { min(256, (try? LlamaConfig.preset(preset).maxSeq) ?? 256) }

    public func directory(cell: String, preset: String) -> URL {
        if spec.suite != "speed" && preset == "tiny" { return outURL.appendingPathComponent(cell) }
        return outURL.appendingPathComponent(preset).appendingPathComponent(cell)
    }

    /// The checkpoint `finetune` cells start from.
    public func baseCheckpoint(preset: String) -> URL {
        if let base = spec.base {
            let u = URL(fileURLWithPath: base)
            let inner = u.appendingPathComponent("checkpoint")
            return FileManager.default.fileExists(atPath: inner.appendingPathComponent(Checkpoint.configFile).path) ? inner : u
        }
        return directory(cell: "base", preset: preset).appendingPathComponent("checkpoint")
    }

    public func peerInit(preset: String) -> URL {
        spec.suite == "finetune" ? baseCheckpoint(preset: preset) : outURL.appendingPathComponent("peer-init").appendingPathComponent(preset)
    }

    public func peerData(preset: String) -> URL {
        outURL.appendingPathComponent("peer-data").appendingPathComponent(preset)
    }

    /// The cells of `preset`, and with them, for a sweep (`lowrank`, `--sweep`) without
    /// `--only`, the cells on disk at rates outside today's grid (`<method>@lr<rate>` of one of
    /// its methods), flagged `true`: a grid that moved, after its best fell on an edge and the
    /// cell's rate became the best, keeps every rate that ran in its table. `jobs()` keeps such
    /// a cell only when it finished with the flags it would run with today, so none is ever
    /// started. Each method's cells are ordered by rate.
    func withEarlierRates(preset: String) -> [(cell: Suite.Cell, earlier: Bool)] {
        let cells = cells(preset: preset)
        guard spec.suite == "lowrank" || spec.sweep == true, spec.only == nil,
              let names = try? FileManager.default.contentsOfDirectory(
                  atPath: directory(cell: "_", preset: preset).deletingLastPathComponent().path)
        else { return cells.map { ($0, false) } }
        // A sweep cell's flags end in its rate (`Suite.sweep`): the rest is the method's. Each
        // method keeps the place of its first cell.
        var method: [String: (index: Int, flags: [String])] = [:]
        for (i, c) in cells.enumerated() where c.flags.suffix(2).first == "--lr" && method[Suite.sweepMethod(c.name)] == nil {
            method[Suite.sweepMethod(c.name)] = (i, Array(c.flags.dropLast(2)))
        }
        let known = Set(cells.map(\.name))
        var all = cells.map { ($0, false) }
        for n in names where !known.contains(n) {
            guard let rate = Suite.sweepRate(n), let v = Float(rate), v > 0, let m = method[Suite.sweepMethod(n)] else { continue }
            all.append((Suite.Cell(n, m.flags + ["--lr", rate]), true))
        }
        // Methods in the suite's order, rates rising (every cell of a sweep names its rate).
        func key(_ c: Suite.Cell) -> (Int, Float) {
            (method[Suite.sweepMethod(c.name)]?.index ?? Int.max, Suite.sweepRate(c.name).flatMap(Float.init) ?? 0)
        }
        return all.sorted { key($0.0) < key($1.0) }
    }

    /// Every job, in running order: per preset, `finetune`'s base (unless `base` is given),
    /// then the cells.
    public func jobs() -> [SuiteJob] {
        var out: [SuiteJob] = []
        for p in spec.presets {
            let b = batch(preset: p), t = seq(preset: p)
            func job(_ kind: SuiteJob.Kind, _ cell: String, _ flags: [String], _ args: [String]) -> SuiteJob {
                SuiteJob(kind: kind, cell: cell, flags: flags, preset: p, directory: directory(cell: cell, preset: p),
                         arguments: args, batch: b, seq: t)
            }
            switch spec.suite {
            case "speed":
                for c in cells(preset: p) {
                    out.append(job(.bench, c.name, c.flags, ["bench", "--preset", p, "--steps", "\(spec.steps)", "--batch", "\(b)", "--json"] + c.flags))
                }
            case "finetune":
                let shuffle = spec.peers ? ["--shuffle", "false"] : []
                if spec.base == nil {
                    let flags = ["--optimizer", "adamw", "--lr", "1e-3"]
                    var args = ["train", "--preset", p, "--steps", "\(spec.baseSteps)", "--eval-every", "\(spec.evalEvery)",
                                "--out", directory(cell: "base", preset: p).path, "--sample-tokens", "0"] + flags
                    if let data = spec.data { args += ["--data", data] }
                    out.append(job(.base, "base", flags, args))
                }
                let ck = baseCheckpoint(preset: p)
                for (c, earlier) in withEarlierRates(preset: p) {
                    let args = ["train", "--init-from", ck.path, "--tokenizer", ck.appendingPathComponent("tokenizer.json").path,
                                "--data", spec.finetuneData, "--steps", "\(spec.steps)", "--warmup", "\(spec.steps / 10)",
                                "--eval-every", "\(spec.evalEvery)", "--out", directory(cell: c.name, preset: p).path,
                                "--sample-tokens", "0"] + c.flags + shuffle
                    let j = job(.train, c.name, c.flags, args)
                    if !earlier || isFinished(j) { out.append(j) }
                }
            default:
                for (c, earlier) in withEarlierRates(preset: p) {
                    var args = ["train", "--preset", p, "--steps", "\(spec.steps)", "--eval-every", "\(spec.evalEvery)",
                                "--out", directory(cell: c.name, preset: p).path, "--sample-tokens", "0"] + c.flags
                    if let data = spec.data { args += ["--data", data] }
                    if spec.peers { args += ["--shuffle", "false", "--init-from", peerInit(preset: p).path] }
                    let j = job(.train, c.name, c.flags, args)
                    if !earlier || isFinished(j) { out.append(j) }
                }
            }
        }
        return out
    }

    /// A job is finished when its marker exists and the command it was run with is this
    /// job's (`SuiteJob.signature`, recorded in `suite-command.json` when it starts): a cell
    /// whose flags, steps or base changed in the suite's definition runs again. Directories
    /// from before the record was kept (no `suite-command.json`) count as finished.
    public func isFinished(_ job: SuiteJob) -> Bool {
        let fm = FileManager.default
        guard fm.fileExists(atPath: job.directory.appendingPathComponent(job.marker).path) else { return false }
        guard let d = fm.contents(atPath: job.directory.appendingPathComponent(SuiteJob.commandFile).path) else { return true }
        return (try? JSONDecoder().decode([String].self, from: d)) == job.signature
    }

    /// The result of a finished job, from its `summary.json` or `bench.json` (nil if absent or
    /// unreadable), with the memory breakdown of its preset, batch and sequence length.
    public func result(of job: SuiteJob) -> Suite.Result? {
        guard let d = FileManager.default.contents(atPath: job.directory.appendingPathComponent(job.marker).path) else { return nil }
        var r: Suite.Result
        if job.kind == .bench {
            guard let b = try? JSONDecoder().decode(BenchmarkResult.self, from: d) else { return nil }
            r = Suite.Result(
                cell: job.cell, preset: job.preset, steps: b.steps, tokens: b.steps * b.batch * b.seq, final_val_loss: nil,
                best_val_loss: nil, val_ppl: nil, tokens_per_s: b.tokens_per_s, step_ms: b.step_ms_mean,
                optimizer_state_bytes: b.optimizer_state_bytes, peak_rss_bytes: b.peak_rss_bytes, flags: job.flags)
            r.tokens_per_s_median = b.step_ms_median > 0 ? Double(b.batch * b.seq) / b.step_ms_median * 1000 : nil
            r.weights_bytes = b.weights_bytes
            r.activations_bytes = b.activations_bytes
            r.batch = b.batch; r.seq = b.seq
        } else {
            guard let s = try? JSONDecoder().decode(RunSummary.self, from: d) else { return nil }
            r = Suite.Result(
                cell: job.cell, preset: job.preset, steps: s.steps, tokens: s.tokens, final_val_loss: s.valLoss,
                best_val_loss: s.bestValLoss, val_ppl: s.valPerplexity, tokens_per_s: s.tokensPerSecond,
                step_ms: s.stepMsMean, optimizer_state_bytes: s.optimizerStateBytes, peak_rss_bytes: s.peakRSSBytes,
                flags: job.flags)
            r.batch = job.batch; r.seq = job.seq
            if let m = try? MetricsLog.read(url: job.directory.appendingPathComponent("metrics.jsonl")), let med = Suite.median(m.map(\.step_ms)), med > 0 {
                r.tokens_per_s_median = Double(job.batch * job.seq) / med * 1000
            }
        }
        r.suite = spec.suite
        r.impl = "subspace"
        // Model memory as planned for the cell's own run config (adapters, per-layer mode).
        if job.kind != .bench, let rc = try? RunConfig.load(url: job.directory.appendingPathComponent("run_config.json")),
           let plan = try? MemoryPlan(MemoryPlan.Request(
               config: rc.model, optimizer: rc.optimizer, options: rc.optimizerOptions, perLayerUpdate: rc.perLayerUpdate,
               batch: rc.batch, seq: rc.seq, rule: rc.resolvedStepRule.memory, adapter: rc.adapter)) {
            r.weights_bytes = plan.weightsBytes
            r.gradients_bytes = plan.gradientsBytes
            r.activations_bytes = plan.activationsBytes
        } else if let c = try? LlamaConfig.preset(job.preset) {
            if r.weights_bytes == nil { r.weights_bytes = c.parameterCount * 4 }
            if r.activations_bytes == nil { r.activations_bytes = LlamaActivations.bytes(config: c, batch: job.batch, seq: job.seq) }
            // Per-layer updates hold one gradient at a time: the largest, the embedding (or head).
            r.gradients_bytes = job.flags.contains("--per-layer-update") ? c.vocab * c.dim * 4 : c.parameterCount * 4
        }
        return r
    }

    /// The peer's result for a training job (nil if it has not run).
    public func peerResult(of job: SuiteJob) -> Suite.Result? {
        Suite.Result.read(url: job.directory.appendingPathComponent(SuitePlan.peerResultFile)).first
    }

    /// Why a job has no peer, if the peer said so (`pytorch.none`).
    public func peerUnavailable(_ job: SuiteJob) -> String? {
        FileManager.default.contents(atPath: job.directory.appendingPathComponent(SuitePlan.peerNoneFile).path)
            .flatMap { String(data: $0, encoding: .utf8) }?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static let peerResultFile = "pytorch.json"
    public static let peerMetricsFile = "pytorch-metrics.jsonl"
    public static let peerNoneFile = "pytorch.none"
}

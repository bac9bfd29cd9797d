import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// The method-comparison suite: the cell matrix, directories and commands, skipping finished
/// cells, results, report and figures. No cell is trained here: finished cells are faked with
/// the files a real run leaves (`summary.json`, `bench.json`, `metrics.jsonl`).
@Suite struct SuiteTests {
    func tmp(_ name: String) -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-suite-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: d)
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    func plan(_ suite: String, _ out: URL, _ edit: (inout SuiteSpec) -> Void = { _ in }) throws -> SuitePlan {
        var s = try SuiteSpec.defaults(suite: suite, out: out.path)
        edit(&s)
        return try SuitePlan(spec: s)
    }

    /// Writes the `summary.json` (and a two-evaluation `metrics.jsonl`) a finished train run leaves.
    func finish(_ job: SuiteJob, valLoss: Double, tokensPerS: Double, state: Int = 1 << 20) throws {
        try FileManager.default.createDirectory(at: job.directory, withIntermediateDirectories: true)
        let s = RunSummary(steps: 20, tokens: 20 * 2048, trainLoss: valLoss + 0.1, valLoss: valLoss, valPerplexity: exp(valLoss),
                           bestValLoss: valLoss, unigramPerplexity: 600, tokensPerSecond: tokensPerS, stepMsMean: 2048 / tokensPerS * 1000,
                           seconds: 10, peakRSSBytes: 300 << 20, optimizerStateBytes: state, checkpoint: "x")
        try JSONEncoder().encode(s).write(to: job.directory.appendingPathComponent("summary.json"))
        let m = [StepMetrics(step: 10, tokens: 20480, loss: 6, lr: 1e-3, tokens_per_s: tokensPerS, rss_bytes: 1, val_loss: valLoss + 0.5, step_ms: 400),
                 StepMetrics(step: 20, tokens: 40960, loss: 5, lr: 1e-3, tokens_per_s: tokensPerS, rss_bytes: 1, val_loss: valLoss, step_ms: 400)]
        let enc = JSONEncoder()
        let lines = try m.map { String(decoding: try enc.encode($0), as: UTF8.self) + "\n" }.joined()
        try lines.write(to: job.directory.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
    }

    @Test func cellMatrixOfEverySuite() throws {
        for name in SubspaceBench.Suite.names {
            let cells = try SubspaceBench.Suite.cells(suite: name)
            #expect(!cells.isEmpty)
            #expect(Set(cells.map(\.name)).count == cells.count, "cell names repeat in \(name)")
            for c in cells {
                #expect(OptimizerRegistry.names.contains(SubspaceBench.Suite.method(flags: c.flags)), "\(name)/\(c.name)")
            }
        }
        #expect(try SubspaceBench.Suite.cells(suite: "pretrain").first?.name == "adamw")
        #expect(throws: ConfigurationError.self) { try SubspaceBench.Suite.cells(suite: "nope") }
        #expect(throws: ConfigurationError.self) { try SuiteSpec.defaults(suite: "nope", out: "x") }
    }

    @Test func settingsFromFlags() {
        let f = ["--optimizer", "galore", "--lr", "1e-2", "--decay-rate", "-0.8", "--per-layer-update", "--rank", "64"]
        let s = SubspaceBench.Suite.settings(flags: f)
        #expect(s == ["optimizer": "galore", "lr": "1e-2", "decay-rate": "-0.8", "per-layer-update": "true", "rank": "64"])
        #expect(SubspaceBench.Suite.method(flags: f) == "galore")
        #expect(SubspaceBench.Suite.method(flags: ["--lr", "1"]) == "adamw")
        #expect(SuiteSpec.list(" tiny, llama20m ,,") == ["tiny", "llama20m"])
    }

    @Test func pretrainLayoutAndCommands() throws {
        let out = URL(fileURLWithPath: "/tmp/x/suite")
        let p = try plan("pretrain", out) { $0.presets = ["tiny", "llama9m"]; $0.steps = 20 }
        let jobs = p.jobs()
        let cells = try SubspaceBench.Suite.cells(suite: "pretrain")
        #expect(jobs.count == 2 * cells.count)
        let first = jobs[0]
        #expect(first.directory.path == "/tmp/x/suite/adamw")
        #expect(first.arguments == ["train", "--preset", "tiny", "--steps", "20", "--eval-every", "200", "--out", "/tmp/x/suite/adamw",
                                    "--sample-tokens", "0"] + cells[0].flags)
        #expect(first.marker == "summary.json")
        #expect(jobs[cells.count].directory.path == "/tmp/x/suite/llama9m/adamw")
        // Peers: file order and the shared initial weights.
        let peers = try plan("pretrain", out) { $0.peers = true; $0.data = "d" }
        let a = peers.jobs()[0].arguments
        #expect(Array(a.suffix(6)) == ["--data", "d", "--shuffle", "false", "--init-from", "/tmp/x/suite/peer-init/tiny"])
        let runner = SuiteRunner(plan: peers, executable: URL(fileURLWithPath: "/bin/true"), defaultData: "d")
        let pa = runner.peerArguments(peers.jobs()[0], peer: .init(python: "python", script: "peer.py", threads: 2))
        #expect(pa.first == "peer.py")
        let dash = try #require(pa.firstIndex(of: "--"))
        #expect(Array(pa[(dash + 1)...]) == Array(a.dropFirst()))
        #expect(pa.contains("/tmp/x/suite/peer-data/tiny/train.bin"))
    }

    @Test func finetuneAndSpeedJobs() throws {
        let out = URL(fileURLWithPath: "/tmp/x/ft")
        let ft = try plan("finetune", out) { $0.steps = 40 }.jobs()
        #expect(ft[0].kind == .base && ft[0].directory.path == "/tmp/x/ft/base")
        #expect(ft[0].arguments.contains("2000"))
        let cell = ft[1]
        #expect(cell.kind == .train)
        func value(_ flag: String) -> String? { cell.arguments.firstIndex(of: flag).map { cell.arguments[$0 + 1] } }
        #expect(value("--init-from") == "/tmp/x/ft/base/checkpoint")
        #expect(value("--tokenizer") == "/tmp/x/ft/base/checkpoint/tokenizer.json")
        #expect(value("--data") == DefaultCorpus.path("milton"))
        #expect(value("--warmup") == "4")
        // A given base: no base job; a run directory resolves to nothing else when it has no checkpoint/.
        let given = try plan("finetune", out) { $0.base = "/tmp/x/elsewhere" }
        #expect(given.jobs().allSatisfy { $0.kind == .train })
        #expect(given.baseCheckpoint(preset: "tiny").path == "/tmp/x/elsewhere")

        let sp = try plan("speed", URL(fileURLWithPath: "/tmp/x/sp")).jobs()
        #expect(Set(sp.map(\.preset)) == ["tiny", "llama20m", "llama60m"])
        let big = try #require(sp.first { $0.preset == "llama60m" })
        #expect(big.kind == .bench && big.marker == "bench.json")
        #expect(Array(big.arguments.prefix(8)) == ["bench", "--preset", "llama60m", "--steps", "10", "--batch", "4", "--json"])
        #expect(big.directory.path == "/tmp/x/sp/llama60m/adamw")
        #expect(sp.first { $0.preset == "tiny" }?.batch == 8)
    }

    @Test func badSpecsAreConfigurationErrors() throws {
        let out = URL(fileURLWithPath: "/tmp/x")
        #expect(throws: ConfigurationError.self) { try plan("pretrain", out) { $0.steps = 0 } }
        #expect(throws: ConfigurationError.self) { try plan("pretrain", out) { $0.presets = ["huge"] } }
        #expect(throws: ConfigurationError.self) { try plan("pretrain", out) { $0.presets = [] } }
        #expect(throws: ConfigurationError.self) { try plan("pretrain", out) { $0.only = ["adamw", "nosuch"] } }
        #expect(throws: ConfigurationError.self) { try plan("speed", out) { $0.peers = true } }
        let only = try plan("pretrain", out) { $0.only = ["muon", "adamw"] }
        #expect(only.cells.map(\.name) == ["adamw", "muon"])
    }

    @Test func reproduceCommand() throws {
        let d = try SuiteSpec.defaults(suite: "pretrain", out: "runs/suite")
        #expect(d.command == "subspace bench --suite pretrain --out runs/suite")
        var s = d
        s.steps = 300; s.evalEvery = 100; s.data = "/corpora/my-text"; s.only = ["adamw"]
        #expect(s.command == "subspace bench --suite pretrain --steps 300 --eval-every 100 --data /corpora/my-text --only adamw --out runs/suite")
        // The default corpora are found on every machine: a report does not name a machine's path.
        for path in ["../shared/data/shakespeare", "data/shakespeare", "/home/u/subspace/data/shakespeare/"] {
            s.data = path
            #expect(s.command == "subspace bench --suite pretrain --steps 300 --eval-every 100 --only adamw --out runs/suite")
        }
        #expect(SuiteSpec.describeCorpus("../shared/data/milton") == "the Milton corpus")
        var f = try SuiteSpec.defaults(suite: "finetune", out: "o")
        f.baseSteps = 100; f.peers = true
        #expect(f.command == "subspace bench --suite finetune --base-steps 100 --peers --out o")
    }

    /// Finished cells are skipped and untouched; an unfinished cell's directory is cleared and
    /// the cell launched (here `/bin/true`, which finishes nothing, so the cell fails).
    @Test func skipsFinishedCells() throws {
        let out = tmp("skip")
        let p = try plan("pretrain", out) { $0.only = ["adamw", "muon"]; $0.steps = 20 }
        let jobs = p.jobs()
        try finish(jobs[0], valLoss: 5.0, tokensPerS: 4000)
        try "keep".write(to: jobs[0].directory.appendingPathComponent("sentinel"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: jobs[1].directory, withIntermediateDirectories: true)
        try "stale".write(to: jobs[1].directory.appendingPathComponent("stale"), atomically: true, encoding: .utf8)
        #expect(p.isFinished(jobs[0]) && !p.isFinished(jobs[1]))

        var started: [String] = [], skipped: [String] = [], failed: [String] = []
        let runner = SuiteRunner(plan: p, executable: URL(fileURLWithPath: "/bin/true"), defaultData: "unused")
        let outcome = try runner.run { e in
            switch e {
            case .started(let j, _, _): started.append(j.cell)
            case .skipped(let j): skipped.append(j.cell)
            case .failed(let j, _): failed.append(j.cell)
            default: break
            }
        }
        #expect(skipped == ["adamw"] && started == ["muon"] && failed == ["muon"])
        #expect(outcome.results.map(\.cell) == ["adamw"] && outcome.failed == ["muon"])
        #expect(FileManager.default.fileExists(atPath: jobs[0].directory.appendingPathComponent("sentinel").path))
        #expect(!FileManager.default.fileExists(atPath: jobs[1].directory.appendingPathComponent("stale").path))
        let lines = SubspaceBench.Suite.Result.read(url: out.appendingPathComponent("results.jsonl"))
        #expect(lines.count == 1 && lines[0].final_val_loss == 5.0)
        let spec = try JSONDecoder().decode(SuiteSpec.self, from: Data(contentsOf: out.appendingPathComponent("suite.json")))
        #expect(spec == p.spec)

        // Report-only launches nothing.
        started = []
        _ = try runner.run(reportOnly: true) { e in if case .started(let j, _, _) = e { started.append(j.cell) } }
        #expect(started.isEmpty)
        try? FileManager.default.removeItem(at: out)
    }

    /// A finished cell whose recorded command differs from the suite's (a changed flag or step
    /// count) is not finished: it runs again. The output directory is not part of it.
    @Test func changedCommandRunsAgain() throws {
        let out = tmp("changed")
        let p = try plan("pretrain", out) { $0.only = ["adamw"]; $0.steps = 20 }
        let job = p.jobs()[0]
        try finish(job, valLoss: 5.0, tokensPerS: 4000)
        #expect(p.isFinished(job))  // no record: a directory from before records were kept
        let record = job.directory.appendingPathComponent(SuiteJob.commandFile)
        try JSONEncoder().encode(job.signature).write(to: record)
        #expect(p.isFinished(job))
        #expect(!job.signature.contains("--out") && job.arguments.contains("--out"))
        let longer = try plan("pretrain", out) { $0.only = ["adamw"]; $0.steps = 30 }
        #expect(!longer.isFinished(longer.jobs()[0]))
        var edited = job.signature
        edited[edited.firstIndex(of: "1e-3")!] = "3e-3"
        try JSONEncoder().encode(edited).write(to: record)
        #expect(!p.isFinished(job))
        // A report leaves it out rather than showing its losses under today's flags.
        let report = try SuiteRunner(plan: p, executable: URL(fileURLWithPath: "/bin/false"), defaultData: "x").run(reportOnly: true)
        #expect(report.results.isEmpty)
        // A run records its command before the child starts.
        let runner = SuiteRunner(plan: p, executable: URL(fileURLWithPath: "/bin/true"), defaultData: "unused")
        _ = try runner.run()
        let kept = try JSONDecoder().decode([String].self, from: Data(contentsOf: record))
        #expect(kept == job.signature)
        try? FileManager.default.removeItem(at: out)
    }

    @Test func resultsCarryTheMemoryBreakdown() throws {
        let out = tmp("memory")
        let p = try plan("pretrain", out) { $0.only = ["adamw"] }
        let job = p.jobs()[0]
        try finish(job, valLoss: 4.5, tokensPerS: 5000, state: 40 << 20)
        let r = try #require(p.result(of: job))
        let tiny = try LlamaConfig.preset("tiny")
        #expect(r.weights_bytes == tiny.parameterCount * 4 && r.gradients_bytes == tiny.parameterCount * 4)
        #expect(r.activations_bytes == LlamaActivations.bytes(config: tiny, batch: 8, seq: 256))
        #expect(r.optimizer_state_bytes == 40 << 20 && r.method == "adamw" && r.impl == "subspace" && r.suite == "pretrain")

        // A speed cell reads bench.json.
        let sp = try plan("speed", out) { $0.only = ["adamw"]; $0.presets = ["tiny"] }
        let b = sp.jobs()[0]
        try FileManager.default.createDirectory(at: b.directory, withIntermediateDirectories: true)
        let bench = BenchmarkResult(
            preset: "tiny", optimizer: "adamw", params: 5, batch: 8, seq: 256, steps: 10, threads: 2, per_layer_update: false,
            tokens_per_s: 4800, step_ms_median: 420, step_ms_mean: 426, forward_ms: 1, backward_ms: 1, optimizer_ms: 1,
            peak_rss_bytes: 280 << 20, optimizer_state_bytes: 41 << 20, weights_bytes: 21 << 20, activations_bytes: 90 << 20, loss: 8)
        try JSONEncoder().encode(bench).write(to: b.directory.appendingPathComponent("bench.json"))
        let br = try #require(sp.result(of: b))
        #expect(br.tokens == 10 * 8 * 256 && br.step_ms == 426 && br.activations_bytes == 90 << 20 && br.final_val_loss == nil)
        try? FileManager.default.removeItem(at: out)
    }

    @Test func resultJSONSchema() throws {
        var r = SubspaceBench.Suite.Result(
            cell: "galore-r64-T200", preset: "tiny", steps: 300, tokens: 614_400, final_val_loss: 4.6, best_val_loss: 4.55,
            val_ppl: 99.5, tokens_per_s: 4100, step_ms: 497, optimizer_state_bytes: 1000, peak_rss_bytes: 2000,
            flags: ["--optimizer", "galore", "--lr", "1e-2", "--rank", "64"])
        r.suite = "pretrain"; r.impl = "subspace"; r.weights_bytes = 1; r.gradients_bytes = 2; r.activations_bytes = 3
        let line = r.jsonLine()
        #expect(!line.contains("\n"))
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for key in ["cell", "method", "settings", "preset", "steps", "tokens", "final_val_loss", "best_val_loss", "val_ppl",
                    "tokens_per_s", "step_ms", "optimizer_state_bytes", "peak_rss_bytes", "flags", "suite", "impl",
                    "weights_bytes", "gradients_bytes", "activations_bytes"] {
            #expect(obj[key] != nil, "missing \(key)")
        }
        #expect(obj["method"] as? String == "galore")
        #expect((obj["settings"] as? [String: String])?["rank"] == "64")
        let keys = line.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map(String.init(describing:))
        #expect(keys.first?.contains("activations_bytes") == true, "keys are sorted")
        #expect(try JSONDecoder().decode(SubspaceBench.Suite.Result.self, from: Data(line.utf8)) == r)
        // A line of the first `subspace suite` (no method, settings or memory fields) still reads.
        let old = #"{"best_val_loss":5.16,"cell":"adamw","final_val_loss":5.16,"flags":["--optimizer","adamw"],"optimizer_state_bytes":42,"peak_rss_bytes":3,"preset":"tiny","step_ms":487.2,"steps":300,"tokens":614400,"tokens_per_s":4203,"val_ppl":174.2}"#
        let o = try JSONDecoder().decode(SubspaceBench.Suite.Result.self, from: Data(old.utf8))
        #expect(o.cell == "adamw" && o.weights_bytes == nil && o.impl == nil)
    }

    func fakeResults() -> (SuitePlan, [SubspaceBench.Suite.Result], [SubspaceBench.Suite.Result]) {
        let p = try! plan("pretrain", URL(fileURLWithPath: "/nonexistent/suite")) { $0.steps = 300 }
        func make(_ cell: String, _ flags: [String], _ loss: Double, _ tps: Double, _ ms: Double, impl: String) -> SubspaceBench.Suite.Result {
            var r = SubspaceBench.Suite.Result(
                cell: cell, preset: "tiny", steps: 300, tokens: 614_400, final_val_loss: loss, best_val_loss: loss - 0.01,
                val_ppl: exp(loss), tokens_per_s: tps, step_ms: ms, optimizer_state_bytes: 40 << 20,
                peak_rss_bytes: impl == "subspace" ? 300 << 20 : 1200 << 20, flags: flags)
            r.impl = impl; r.batch = 8; r.seq = 256
            r.weights_bytes = 20 << 20; r.gradients_bytes = 20 << 20; r.activations_bytes = 100 << 20
            if impl == "pytorch" { r.reference = "torch.optim.AdamW" }
            return r
        }
        let results = [make("adamw", ["--optimizer", "adamw", "--lr", "3e-3"], 5.16, 4000, 500, impl: "subspace"),
                       make("galore-r64-T200", ["--optimizer", "galore", "--rank", "64"], 4.60, 3900, 550, impl: "subspace")]
        let peers = [make("adamw", ["--optimizer", "adamw"], 5.20, 3200, 640, impl: "pytorch")]
        return (p, results, peers)
    }

    @Test func reportMarkdown() throws {
        let (p, results, peers) = fakeResults()
        let md = SuiteReport.markdown(plan: p, results: results, peers: peers)
        #expect(md.contains("subspace bench --suite pretrain --steps 300 --out /nonexistent/suite"))
        #expect(md.contains("| method | settings | val loss | best val loss | val ppl | tokens/s | step ms (x AdamW) |"))
        #expect(md.contains("| adamw | lr=3e-3 | 5.1600 | 5.1500 | 174.16 | 4000 | 500.0 (1.00x) | 40.0 | 60.0 | 300.0 |"))
        #expect(md.contains("| galore-r64-T200 | rank=64 | 4.6000 |"))
        #expect(md.contains("550.0 (1.10x)"))
        #expect(md.contains("![validation loss](val_loss.svg)") && md.contains("![memory by kind](memory.svg)"))
        // Side by side: tokens/s 4000 / 3200 = 1.25x, RSS 300 / 1200 = 0.25x, loss 5.16 / 5.20.
        #expect(md.contains("| adamw | torch.optim.AdamW | 4000 | 3200 | 1.25x | 300.0 | 1200.0 | 0.25x | 5.1600 | 5.2000 | 0.99x |"))
        #expect(!md.contains("| galore-r64-T200 | torch"))
        #expect(SuiteReport.markdown(plan: p, results: [], peers: []).contains("No cell has finished yet"))
    }

    @Test func figures() throws {
        let (_, results, peers) = fakeResults()
        let mem = SuiteFigures.memory(title: "Memory", results: results)
        #expect(mem.hasPrefix("<svg") && mem.hasSuffix("</svg>\n"))
        for name in ["weights", "gradients", "optimizer state", "activations", "peak RSS", "adamw", "galore-r64-T200"] {
            #expect(mem.contains(">\(name)<"), "memory figure lacks \(name)")
        }
        // Two stacks of four segments, four legend swatches (besides the background, the
        // clip path, the plot area and the legend box).
        #expect(mem.components(separatedBy: "<rect").count - 1 == 4 + 2 * 4 + 4)
        // Stack heights are proportional: 160 MiB of segments under a 300 MiB marker.
        let tp = SuiteFigures.throughput(title: "Throughput", results: results, peers: peers)
        #expect(tp.contains(">PyTorch<") && tp.contains(">Subspace<"))
        #expect(tp.components(separatedBy: "<rect").count - 1 == 4 + 3 + 2, "three bars: galore has no peer")
        let m = [StepMetrics(step: 1, tokens: 100, loss: 6, lr: 1, tokens_per_s: 1, rss_bytes: 1, val_loss: 5.5, step_ms: 1),
                 StepMetrics(step: 2, tokens: 200, loss: 5, lr: 1, tokens_per_s: 1, rss_bytes: 1, step_ms: 1)]
        let vl = SuiteFigures.validationLoss(title: "V", runs: [("adamw", m)], peers: [("adamw", m)])
        // The legend ranks by final validation loss and shows it: "5.500  adamw".
        #expect(vl.contains("adamw<") && vl.contains("adamw (PyTorch)<") && vl.contains("stroke-dasharray"))
    }

    @Test func barHeightsScale() {
        let svg = SVGBars(title: "t", yLabel: "y", categories: ["a", "b"], series: ["s"], values: [[1], [2]], stacked: false).render()
        // The bars are the rects filled with the first series' colour: b is twice a.
        let bars = svg.components(separatedBy: "<rect").filter { $0.contains("fill=\"\(Palette.color(0))\"") && !$0.contains("width=\"14\"") }
            .compactMap { r in r.components(separatedBy: "height=\"").dropFirst().first.flatMap { Double($0.prefix { $0 != "\"" }) } }
        #expect(bars.count == 2 && abs(bars[1] / bars[0] - 2) < 0.02)
    }

    /// A sweep whose grid moved (a cell's rate became its sweep's best) keeps the finished
    /// cells of the old grid in its report, and never runs a cell outside today's grid.
    @Test func sweepKeepsEarlierRates() throws {
        let out = tmp("earlier")
        let today = try plan("pretrain", out) { $0.sweep = true }
        let grid = today.jobs().filter { SubspaceBench.Suite.sweepMethod($0.cell) == "adafactor" }, count = today.jobs().count
        #expect(grid.map(\.cell) == ["adafactor@lr3e-4", "adafactor@lr1e-3", "adafactor@lr3e-3"])
        func cell(_ name: String, rate: String) -> SuiteJob {
            var j = grid[0]
            j.cell = name; j.directory = out.appendingPathComponent(name)
            j.flags = Array(j.flags.dropLast(2)) + ["--lr", rate]
            j.arguments = Array(j.arguments.dropLast(2)) + ["--lr", rate]
            return j
        }
        // Finished with today's flags at an old rate (9e-3, in the grid when the cell had 3e-3): kept, with its own signature recorded.
        let old = cell("adafactor@lr9e-3", rate: "9e-3")
        try finish(old, valLoss: 5.5, tokensPerS: 4000)
        try JSONEncoder().encode(old.signature).write(to: old.directory.appendingPathComponent(SuiteJob.commandFile))
        // Finished with other flags: left out; started but unfinished: left out, not run.
        let stale = cell("adafactor@lr1e-5", rate: "1e-5")
        try finish(stale, valLoss: 5.9, tokensPerS: 4000)
        try JSONEncoder().encode(["train", "--other"]).write(to: stale.directory.appendingPathComponent(SuiteJob.commandFile))
        try FileManager.default.createDirectory(at: out.appendingPathComponent("adafactor@lr3e-5"), withIntermediateDirectories: true)
        // Not a method of the suite, or no rate: ignored.
        for n in ["nomethod@lr1e-3", "adafactor@lrx", "adafactor"] {
            try FileManager.default.createDirectory(at: out.appendingPathComponent(n), withIntermediateDirectories: true)
        }
        let p = try plan("pretrain", out) { $0.sweep = true }
        let names = p.jobs().filter { SubspaceBench.Suite.sweepMethod($0.cell) == "adafactor" }.map(\.cell)
        #expect(names == ["adafactor@lr3e-4", "adafactor@lr1e-3", "adafactor@lr3e-3", "adafactor@lr9e-3"])
        #expect(p.jobs().count == count + 1)
        #expect(p.jobs().first { $0.cell == "adafactor@lr9e-3" }?.flags == ["--optimizer", "adafactor", "--lr", "9e-3"])
        // The report lists it; without --sweep, or with --only, the plan is today's cells.
        let outcome = try SuiteRunner(plan: p, executable: URL(fileURLWithPath: "/bin/false"), defaultData: "x").run(reportOnly: true)
        #expect(outcome.results.map(\.cell) == ["adafactor@lr9e-3"])
        let report = try String(contentsOf: out.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(report.contains("| adafactor | 9e-3: 5.5000 |"))
        #expect(try plan("pretrain", out).jobs().count == SubspaceBench.Suite.cells(suite: "pretrain").count)
        #expect(try plan("pretrain", out) { $0.sweep = true; $0.only = ["adafactor@lr3e-4"] }.jobs().map(\.cell) == ["adafactor@lr3e-4"])
        try? FileManager.default.removeItem(at: out)
    }

    /// The written files, from fake finished cells (report-only).
    @Test func writesReportFiles() throws {
        let out = tmp("files")
        let p = try plan("pretrain", out) { $0.only = ["adamw", "lion"] }
        for (j, l) in zip(p.jobs(), [5.0, 5.5]) { try finish(j, valLoss: l, tokensPerS: 4000) }
        try "{\"cell\":\"adamw\",\"preset\":\"tiny\",\"steps\":20,\"tokens\":40960,\"final_val_loss\":5.1,\"tokens_per_s\":3000,\"step_ms\":600,\"optimizer_state_bytes\":1,\"peak_rss_bytes\":1000000000,\"flags\":[],\"impl\":\"pytorch\",\"reference\":\"torch.optim.AdamW\"}\n"
            .write(to: p.jobs()[0].directory.appendingPathComponent(SuitePlan.peerResultFile), atomically: true, encoding: .utf8)
        let outcome = try SuiteRunner(plan: p, executable: URL(fileURLWithPath: "/bin/false"), defaultData: "x").run(reportOnly: true)
        #expect(outcome.results.count == 2 && outcome.peers.count == 1)
        for f in ["results.jsonl", "peers.jsonl", "report.md", "val_loss.svg", "loss.svg", "memory.svg", "throughput.svg"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(f).path), "\(f) missing")
        }
        let report = try String(contentsOf: out.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(report.contains("| adamw | torch.optim.AdamW | 4000 | 3000 | 1.33x |"))
        try? FileManager.default.removeItem(at: out)
    }
}

/// The `lowrank` suite's learning-rate sweeps: four cells per method on a log grid, and the
/// report's best-of-sweep and sweep tables.
@Suite struct SuiteSweepTests {
    @Test func sweepCellsAndBest() throws {
        let cells = try Suite.cells(suite: "lowrank")
        #expect(cells.count % Suite.sweepFactors.count == 0)
        let adamw = cells.filter { Suite.sweepMethod($0.name) == "adamw" }
        #expect(adamw.map(\.name) == ["adamw@lr3e-4", "adamw@lr1e-3", "adamw@lr3e-3", "adamw@lr9e-3"])
        #expect(adamw[3].flags.suffix(2) == ["--lr", "9e-3"])
        // The rank is a quarter of the preset's width: 64 on tiny, 128 on small.
        #expect(cells.contains { $0.name == "galore-r64@lr1e-2" })
        let small = try Suite.cells(suite: "lowrank", preset: "small")
        let galore = try #require(small.first { $0.name == "galore-r128@lr1e-2" })
        #expect(galore.flags.prefix(4) == ["--optimizer", "galore", "--rank", "128"])
        var spec = try SuiteSpec.defaults(suite: "lowrank", out: "x")
        spec.presets = ["tiny", "small"]
        spec.only = ["lowrank-r128@lr1e-3", "lowrank-r64@lr1e-3"]
        let plan = try SuitePlan(spec: spec)
        #expect(plan.jobs().map { "\($0.preset) \($0.cell)" } == ["tiny lowrank-r64@lr1e-3", "small lowrank-r128@lr1e-3"])
        #expect(plan.jobs()[1].arguments.contains("128"))
        // A run of chosen cells says so, rather than "each at four learning rates".
        #expect(SuiteReport.describe(plan: plan).contains("the rates chosen"))
        spec.only = nil
        #expect(SuiteReport.describe(plan: try SuitePlan(spec: spec)).contains("each at four learning rates"))
        // --sweep: every pretrain cell at x1/3, x1, x3 its rate; Muon around its default 0.02.
        var sw = try SuiteSpec.defaults(suite: "pretrain", out: "x")
        sw.sweep = true
        sw.only = ["adamw@lr1e-3", "muon@lr7e-3", "galore-r64-T200@lr3e-2"]
        let swept = try SuitePlan(spec: sw)
        #expect(swept.cells.map(\.name) == ["adamw@lr1e-3", "galore-r64-T200@lr3e-2", "muon@lr7e-3"])
        #expect(swept.cells[0].flags == ["--optimizer", "adamw", "--lr", "1e-3"])
        #expect(swept.cells[1].flags.filter { $0 == "--lr" }.count == 1)
        #expect(sw.command.contains("--sweep"))
        #expect(try Suite.swept(Suite.Cell("lion", ["--optimizer", "lion", "--lr", "3e-4"])).map(\.name) == ["lion@lr1e-4", "lion@lr3e-4", "lion@lr9e-4"])
        #expect(throws: ConfigurationError.self) { try Suite.swept(Suite.Cell("x", ["--optimizer", "sgd"])) }
        sw.suite = "lowrank"
        #expect(throws: ConfigurationError.self) { try sw.validate() }
        func result(_ cell: String, _ loss: Double) -> Suite.Result {
            Suite.Result(cell: cell, preset: "tiny", steps: 1, tokens: 1, final_val_loss: loss, best_val_loss: loss, val_ppl: nil,
                         tokens_per_s: 1, step_ms: 1, optimizer_state_bytes: 0, peak_rss_bytes: 0, flags: [])
        }
        let rs = [result("adamw@lr1e-3", 5), result("adamw@lr3e-3", 4), result("adamw@lr9e-3", 4.5), result("galore@lr1e-2", 6)]
        #expect(SuiteReport.bestOfSweeps(rs).map(\.cell) == ["adamw@lr3e-3", "galore@lr1e-2"])
        let table = SuiteReport.sweepTable(rs)
        #expect(table.contains("| adamw | 1e-3: 5.0000, 3e-3: 4.0000, 9e-3: 4.5000 |"))
        #expect(throws: ConfigurationError.self) {
            var s = try SuiteSpec.defaults(suite: "lowrank", out: "x")
            s.peers = true
            try s.validate()
        }
    }
}

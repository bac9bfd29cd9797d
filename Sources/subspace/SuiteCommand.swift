import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

/// Suite options shared by `subspace bench --suite` and `subspace suite`.
struct SuiteOptions: ParsableArguments {
    @Option(help: "Model presets, comma-separated (default: the suite's: tiny; speed: tiny,llama20m,llama60m).")
    var presets: String?
    @Option(help: "Training corpus of pretrain and of finetune's base cell (default: the Shakespeare corpus).")
    var data: String?
    @Option(help: "Only these cells (comma-separated names).") var only: String?
    @Option(name: .customLong("eval-every"), help: "Evaluate every N steps (default: pretrain 200, finetune 50).")
    var evalEvery: Int?
    @Option(name: .customLong("finetune-data"), help: "finetune: the corpus to fine-tune on (default: data/milton, fetched by scripts/setup.sh).")
    var finetuneData: String?
    @Option(help: "finetune: start from this run directory or checkpoint instead of training a base cell.")
    var base: String?
    @Option(name: .customLong("base-steps"), help: "finetune: steps of the base cell (default 2000).")
    var baseSteps: Int?
    @Flag(help: "After each training cell, run its PyTorch peer (bench/peers/suite_peer.py) and report the ratios.")
    var peers = false
    @Flag(help: "pretrain, finetune: run every cell at x1/3, x1 and x3 its learning rate (cells CELL@lrRATE); the report ranks the rates.")
    var sweep = false
    @Option(help: "Python for the peers.") var python: String = ".venv/bin/python"
    @Option(name: .customLong("peer-script"), help: "The peer script.") var peerScript: String = "bench/peers/suite_peer.py"
    @Flag(name: .customLong("report-only"), help: "Run nothing: rewrite results.jsonl, report.md and the figures from the finished cells.")
    var reportOnly = false

    /// The spec: the suite's defaults, then the given flags.
    func spec(suite: String, out: String, steps: Int?, preset: String? = nil) throws -> SuiteSpec {
        var s = try SuiteSpec.defaults(suite: suite, out: out)
        if let preset { s.presets = [preset] }
        if let presets { s.presets = SuiteSpec.list(presets) }
        if let steps { s.steps = steps }
        if let evalEvery { s.evalEvery = evalEvery }
        s.data = data
        if let only {
            s.only = SuiteSpec.list(only)
            if s.only!.isEmpty { throw ConfigurationError("--only names no cell") }
        }
        if let finetuneData { s.finetuneData = finetuneData }
        s.base = base
        if let baseSteps { s.baseSteps = baseSteps }
        s.peers = peers
        if sweep { s.sweep = true }
        if base != nil && suite != "finetune" { throw ConfigurationError("--base applies to the finetune suite") }
        return s
    }

    /// Runs the suite, printing progress to stderr and the report (and peer ratios) to stdout.
    func run(spec: SuiteSpec) {
        let plan: SuitePlan = guarded { try SuitePlan(spec: spec) }
        if peers, !reportOnly, !FileManager.default.fileExists(atPath: peerScript) { fail("no peer script at '\(peerScript)'") }
        let runner = SuiteRunner(
            plan: plan, executable: Self.executable(), peer: peers ? .init(python: python, script: peerScript) : nil,
            defaultData: defaultData())
        func say(_ s: String) { writeStderr("suite: \(s)\n") }
        let outcome: SuiteRunner.Outcome = guarded {
            try runner.run(reportOnly: reportOnly) { event in
                switch event {
                case .status(let s): say(s)
                case .started(let j, let i, let n): say("[\(i)/\(n)] \(j.preset) \(j.cell) -> \(j.directory.path)")
                case .skipped(let j): say("\(j.preset) \(j.cell): finished earlier, skipped")
                case .finished(let j, let r):
                    say("\(j.preset) \(j.cell): done" + (r.final_val_loss.map { String(format: ", val loss %.4f", $0) } ?? "")
                        + String(format: ", %.0f tokens/s", r.tokens_per_s))
                case .failed(let j, let status): say("\(j.preset) \(j.cell) failed (status \(status)); continuing")
                case .peerStarted(let j): say("\(j.preset) \(j.cell): PyTorch peer")
                case .peerFinished(let j, let p):
                    say("\(j.preset) \(j.cell): peer \(p.reference ?? "") done" + (p.final_val_loss.map { String(format: ", val loss %.4f", $0) } ?? ""))
                case .peerUnavailable(let j, let reason): say("\(j.preset) \(j.cell): no peer (\(reason))")
                case .peerFailed(let j, let status): say("\(j.preset) \(j.cell): peer failed (status \(status))")
                }
            }
        }
        if let md = try? String(contentsOf: plan.outURL.appendingPathComponent("report.md"), encoding: .utf8) { print(md) }
        for r in outcome.results {
            guard let p = outcome.peers.first(where: { $0.cell == r.cell && $0.preset == r.preset }) else { continue }
            let (a, b) = SuiteReport.throughputPair(r, p)
            var parts = [String(format: "tokens/s %.0f / %.0f = %.2fx", a, b, a / b),
                         String(format: "peak RSS %.0f / %.0f MiB = %.2fx", Double(r.peak_rss_bytes) / 1048576, Double(p.peak_rss_bytes) / 1048576,
                                       Double(r.peak_rss_bytes) / Double(p.peak_rss_bytes))]
            if let a = r.final_val_loss, let b = p.final_val_loss { parts.append(String(format: "final val loss %.4f / %.4f = %.4fx", a, b, a / b)) }
            print("\(r.preset) \(r.cell) vs \(p.reference ?? "PyTorch"): " + parts.joined(separator: ", "))
        }
        if !outcome.failed.isEmpty { fail("cells failed: \(outcome.failed.joined(separator: ", ")) (re-run to retry them)") }
    }

    /// This executable, for the cells' processes.
    static func executable() -> URL {
        let proc = URL(fileURLWithPath: "/proc/self/exe")
        if let dest = try? FileManager.default.destinationOfSymbolicLink(atPath: proc.path) { return URL(fileURLWithPath: dest) }
        let arg0 = CommandLine.arguments[0]
        if arg0.contains("/") { return URL(fileURLWithPath: arg0).standardizedFileURL }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let u = URL(fileURLWithPath: String(dir)).appendingPathComponent(arg0)
            if FileManager.default.isExecutableFile(atPath: u.path) { return u }
        }
        return URL(fileURLWithPath: arg0)
    }
}

/// `subspace suite`: the first form of `subspace bench --suite`, kept as an alias (same
/// directory layout and cells).
struct SuiteRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suite", abstract: "Alias of `subspace bench --suite`: run a method comparison and write its report.")
    @Argument(help: "Suite: \(Suite.names.joined(separator: ", ")).") var suite: String = "pretrain"
    @Option(help: "Output directory (finished cells are skipped on a re-run).") var out: String = "runs/suite"
    @Option(help: "Model preset (one; --presets takes several).") var preset: String?
    @Option(help: "Steps per cell (default: pretrain 2000, finetune 300, speed 10 timed).") var steps: Int?
    @OptionGroup var options: SuiteOptions

    func run() throws {
        let spec = guarded { try options.spec(suite: suite, out: out, steps: steps, preset: preset) }
        options.run(spec: spec)
    }
}

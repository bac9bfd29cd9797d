import ArgumentParser
import Foundation
import Subspace

/// `subspace suite`: every method on the same model, data, seed and budget.
struct SuiteRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suite", abstract: "Run the method comparison (each cell a separate train run) and write a report.")
    @Argument(help: "Suite: \(Suite.names.joined(separator: ", ")).") var suite: String = "pretrain"
    @Option(help: "Output directory (finished cells are skipped on a re-run).") var out: String = "runs/suite"
    @Option(help: "Model preset.") var preset: String = "tiny"
    @Option(help: "Steps per cell.") var steps: Int = 2000
    @Option(help: "Data (default: the Shakespeare corpus).") var data: String?
    @Option(help: "Only these cells (comma-separated names).") var only: String?
    @Option(name: .customLong("eval-every"), help: "Evaluate every N steps.") var evalEvery: Int = 200

    func run() throws {
        let cells: [Suite.Cell] = guarded {
            var all = try Suite.cells(suite: suite)
            if let only {
                let keep = Set(only.split(separator: ",").map(String.init))
                all = all.filter { keep.contains($0.name) }
                if all.isEmpty { throw ConfigurationError("--only matched no cell") }
            }
            guard steps > 0 else { throw ConfigurationError("--steps must be positive") }
            return all
        }
        let dir = URL(fileURLWithPath: out)
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        var results: [Suite.Result] = []
        for cell in cells {
            let runDir = dir.appendingPathComponent(cell.name)
            let summaryURL = runDir.appendingPathComponent("summary.json")
            if !FileManager.default.fileExists(atPath: summaryURL.path) {
                FileHandle.standardError.write(Data("suite: \(cell.name)\n".utf8))
                try? FileManager.default.removeItem(at: runDir)
                var args = ["train", "--preset", preset, "--steps", "\(steps)", "--eval-every", "\(evalEvery)",
                            "--out", runDir.path, "--sample-tokens", "0"] + cell.flags
                if let data { args += ["--data", data] }
                let p = Process()
                p.executableURL = exe
                p.arguments = args
                p.standardOutput = FileHandle.nullDevice
                try p.run()
                p.waitUntilExit()
                if p.terminationStatus != 0 {
                    FileHandle.standardError.write(Data("suite: cell \(cell.name) failed (status \(p.terminationStatus)); continuing\n".utf8))
                    continue
                }
            }
            guard let d = FileManager.default.contents(atPath: summaryURL.path),
                  let s = try? JSONDecoder().decode(RunSummary.self, from: d) else { continue }
            results.append(Suite.Result(
                cell: cell.name, preset: preset, steps: s.steps, tokens: s.tokens, final_val_loss: s.valLoss,
                best_val_loss: s.bestValLoss, val_ppl: s.valPerplexity, tokens_per_s: s.tokensPerSecond,
                step_ms: s.stepMsMean, optimizer_state_bytes: s.optimizerStateBytes, peak_rss_bytes: s.peakRSSBytes, flags: cell.flags))
        }
        let lines = results.map { jsonLine($0) }.joined(separator: "\n") + "\n"
        try AtomicFile.write(lines, to: dir.appendingPathComponent("results.jsonl"))
        let runs = results.compactMap { r -> (String, [StepMetrics])? in
            (try? MetricsLog.read(url: dir.appendingPathComponent(r.cell).appendingPathComponent("metrics.jsonl"))).map { (r.cell, $0) }
        }
        try AtomicFile.write(MetricsLog.lossPlot(runs: runs), to: dir.appendingPathComponent("loss.svg"))
        let md = "Preset `\(preset)`, \(steps) steps of batch 8 x 256 tokens, seed 0, data: \(data ?? "Shakespeare (default split)").\n\n" + Suite.markdown(results)
        try AtomicFile.write(md, to: dir.appendingPathComponent("report.md"))
        print(md)
    }
}

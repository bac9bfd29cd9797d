import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// The suite's written output in its directory: `results.jsonl` (one `Suite.Result` line per
/// finished cell), `peers.jsonl` (the PyTorch peers, same keys), `report.md` (tables, the
/// command that reproduces them, links to the figures) and the SVG figures (`SuiteFigures`):
/// `val_loss.svg`, `loss.svg` (`RunFigure` of every cell), `pareto.svg` (validation loss
/// against memory), `memory.svg` and `throughput.svg` (with per-step spread)
/// for the training suites; `memory-<preset>.svg` and `throughput-<preset>.svg` for `speed`
/// (and for training suites on several presets).
public enum SuiteReport {
    /// Writes every file; returns the paths written.
    @discardableResult
    public static func write(plan: SuitePlan, results: [Suite.Result], peers: [Suite.Result]) throws -> [URL] {
        let dir = plan.outURL
        var written: [URL] = []
        func put(_ text: String, _ name: String) throws {
            let u = dir.appendingPathComponent(name)
            try AtomicFile.write(text, to: u)
            written.append(u)
        }
        try Suite.Result.write(results, to: dir.appendingPathComponent("results.jsonl"))
        written.append(dir.appendingPathComponent("results.jsonl"))
        if !peers.isEmpty {
            try Suite.Result.write(peers, to: dir.appendingPathComponent("peers.jsonl"))
            written.append(dir.appendingPathComponent("peers.jsonl"))
        }
        for (name, svg) in figures(plan: plan, results: results, peers: peers) { try put(svg, name) }
        try put(markdown(plan: plan, results: results, peers: peers), "report.md")
        return written
    }

    /// Figure file names and their SVG text.
    public static func figures(plan: SuitePlan, results: [Suite.Result], peers: [Suite.Result]) -> [(String, String)] {
        var out: [(String, String)] = []
        let presets = plan.spec.presets.filter { p in results.contains { $0.preset == p } }
        let perPreset = plan.spec.suite == "speed" || presets.count > 1
        for p in presets {
            // A sweep's figures show each method's best rate (the sweep table has the rest).
            let all = results.filter { $0.preset == p }, ps = peers.filter { $0.preset == p }
            let rs = all.contains { $0.cell.contains("@") } ? bestOfSweeps(all) : all
            let suffix = perPreset ? "-\(p)" : ""
            var spread: [String: Double] = [:], peerSpread: [String: Double] = [:]
            if plan.spec.suite != "speed" {
                let runs = rs.compactMap { r in metrics(plan.directory(cell: r.cell, preset: p).appendingPathComponent("metrics.jsonl")).map { (r.cell, $0) } }
                let peerRuns = ps.compactMap { r in metrics(plan.directory(cell: r.cell, preset: p).appendingPathComponent(SuitePlan.peerMetricsFile)).map { (r.cell, $0) } }
                out.append(("val_loss\(suffix).svg", SuiteFigures.validationLoss(title: "Validation loss, \(plan.spec.suite), \(p)", runs: runs, peers: peerRuns)))
                out.append(("loss\(suffix).svg", RunFigure.render(runs: runs, title: "Training, \(plan.spec.suite), \(p): \(runs.count) cells")))
                out.append(("pareto\(suffix).svg", SuiteFigures.pareto(title: "Validation loss against memory, \(plan.spec.suite), \(p)", results: rs)))
                spread = Dictionary(runs.compactMap { r in SuiteFigures.throughputSpread(r.1).map { (r.0, $0) } }, uniquingKeysWith: { a, _ in a })
                peerSpread = Dictionary(peerRuns.compactMap { r in SuiteFigures.throughputSpread(r.1).map { (r.0, $0) } }, uniquingKeysWith: { a, _ in a })
            }
            out.append(("memory\(suffix).svg", SuiteFigures.memory(title: "Memory by kind, \(p)", results: rs)))
            out.append(("throughput\(suffix).svg", SuiteFigures.throughput(title: "Training throughput, \(p)", results: rs, peers: ps,
                                                                            spread: spread, peerSpread: peerSpread)))
        }
        return out
    }

    static func metrics(_ url: URL) -> [StepMetrics]? {
        (try? MetricsLog.read(url: url)).flatMap { $0.isEmpty ? nil : $0 }
    }

    static func mib(_ b: Int?) -> String { b.map { String(format: "%.1f", Double($0) / 1_048_576) } ?? "-" }
    static func num(_ v: Double?, _ fmt: String) -> String { v.map { String(format: fmt, $0) } ?? "-" }
    static func ratio(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b, b != 0, a.isFinite, b.isFinite else { return "-" }
        return String(format: "%.2fx", a / b)
    }

    /// A cell's settings without the optimizer name: "lr=1e-2 rank=64".
    static func settings(_ r: Suite.Result) -> String {
        let s = Suite.settings(flags: r.flags).filter { $0.key != "optimizer" }
        let order = r.flags.filter { $0.hasPrefix("--") }.map { String($0.dropFirst(2)) }
        let text = order.compactMap { k in s[k].map { $0 == "true" ? k : "\(k)=\($0)" } }.joined(separator: " ")
        return text.isEmpty ? "(defaults)" : text
    }

    /// The report: what was run, the command that reproduces it, a table per preset, links to
    /// the figures and, with peers, the side-by-side table and ratios.
    public static func markdown(plan: SuitePlan, results: [Suite.Result], peers: [Suite.Result]) -> String {
        let spec = plan.spec
        var s = ""
        let presets = spec.presets.filter { p in results.contains { $0.preset == p } }
        let perPreset = spec.suite == "speed" || presets.count > 1
        s += describe(plan: plan)
        s += "\nReproduce (finished cells are skipped on a re-run):\n\n```sh\n\(spec.command)\n```\n"
        if results.isEmpty { return s + "\nNo cell has finished yet.\n" }
        for p in presets {
            let rs = results.filter { $0.preset == p }, ps = peers.filter { $0.preset == p }
            let suffix = perPreset ? "-\(p)" : ""
            let r0 = rs[0]
            s += "\n### Preset `\(p)`"
            s += spec.suite == "speed"
                ? ", batch \(r0.batch ?? 0) x \(r0.seq ?? 0) tokens, \(r0.steps) timed steps\n\n"
                : ", \(r0.steps) steps of batch \(r0.batch ?? 8) x \(r0.seq ?? 256) tokens\n\n"
            if rs.contains(where: { $0.cell.contains("@") }) {
                s += "Best rate of each method's sweep (lowest final validation loss):\n\n" + trainingTable(bestOfSweeps(rs))
                s += "\nEvery cell of the sweeps:\n\n" + sweepTable(rs) + "\n"
            }
            s += spec.suite == "speed" ? speedTable(rs) : trainingTable(rs)
            s += "\n"
            if spec.suite != "speed" {
                s += "![validation loss](val_loss\(suffix).svg)\n![validation loss against memory](pareto\(suffix).svg)\n"
                s += "![training curves](loss\(suffix).svg)\n"
            }
            s += "![memory by kind](memory\(suffix).svg)\n![throughput](throughput\(suffix).svg)\n"
            if !ps.isEmpty { s += "\n" + peerTable(rs, ps) }
        }
        return s
    }

    static func describe(plan: SuitePlan) -> String {
        let spec = plan.spec
        let data = spec.data.map(SuiteSpec.describeCorpus) ?? "the Shakespeare corpus (default split)"
        switch spec.suite {
        case "speed":
            return "Suite `speed`: `subspace bench` per method on \(spec.presets.map { "`\($0)`" }.joined(separator: ", ")): "
                + "\(spec.steps) timed steps after 2 untimed ones on seeded random tokens, no clipping. Memory: fp32 weights, "
                + "gradients, optimizer state and activations of one batch as allocated; the black line is the process's peak RSS.\n"
        case "finetune":
            var base = spec.base.map { "the checkpoint `\($0)`" } ?? "a base cell (AdamW, lr 1e-3, \(spec.baseSteps) steps on \(data))"
            if spec.base == nil, let sum = FileManager.default.contents(atPath: plan.directory(cell: "base", preset: spec.presets[0]).appendingPathComponent("summary.json").path),
               let b = try? JSONDecoder().decode(RunSummary.self, from: sum), let v = b.valLoss {
                base += String(format: ", validation loss %.4f on its own split", v)
            }
            return "Suite `finetune`: every method starts from \(base) and fine-tunes on \(SuiteSpec.describeCorpus(spec.finetuneData)) with the base's tokenizer "
                + "(weights only, a fresh optimizer; warmup 10% of the steps, cosine to 0.1), seed 0, evaluation every \(spec.evalEvery) steps "
                + "and on the whole validation split at the end. Every cell is a separate process, run one after another.\n"
        case "lowrank":
            // With `--only` a run may hold one rate per method (the best of a shorter sweep).
            let rates = spec.only == nil
                ? "each at four learning rates (x1/9, x1/3, x1, x3 its reference rate, scaled to `tiny`; the report ranks the rates that ran)"
                : "each at the learning rates its cells name (`--only`: of the grid x1/9, x1/3, x1, x3 its reference rate, the rates chosen)"
            return "Suite `lowrank`: Glentis et al.'s comparison of memory-efficient pre-training scaled down: every method on the same "
                + "model, data (\(data)), seed 0 and budget, \(rates); warmup 60 steps, cosine to 0.1, clipping 1.0, evaluation every \(spec.evalEvery) steps and on the whole "
                + "validation split at the end. Every cell is a separate process, run one after another.\n"
        default:
            return "Suite `pretrain`: every method on the same model, data (\(data)), seed 0 and budget; warmup 60 steps, cosine to 0.1, "
                + "clipping 1.0, evaluation every \(spec.evalEvery) steps and on the whole validation split at the end. Every cell is a "
                + "separate process, run one after another. Learning rates per cell are in `Sources/SubspaceBench/Suite.swift`"
                + (spec.sweep == true ? "; with `--sweep` each cell runs at x1/3, x1 and x3 its rate and the report ranks the rates that ran.\n" : ".\n")
        }
    }

    static func trainingTable(_ rs: [Suite.Result]) -> String {
        let base = rs.first { Suite.sweepMethod($0.cell) == "adamw" }
        var s = "| method | settings | val loss | best val loss | val ppl | tokens/s | step ms (x AdamW) | optimizer state MiB | weights + state MiB | peak RSS MiB |\n"
        s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rs {
            let x = base.map { " (\(ratio(r.step_ms, $0.step_ms)))" } ?? ""
            s += "| \(r.cell) | \(settings(r)) | \(num(r.final_val_loss, "%.4f")) | \(num(r.best_val_loss, "%.4f")) | "
            s += "\(num(r.val_ppl, "%.2f")) | \(num(r.tokens_per_s, "%.0f")) | \(num(r.step_ms, "%.1f"))\(x) | "
            s += "\(mib(r.optimizer_state_bytes)) | \(r.weights_bytes.map { mib($0 + r.optimizer_state_bytes) } ?? "-") | \(mib(r.peak_rss_bytes)) |\n"
        }
        return s
    }

    /// Per method of a sweep (`Suite.sweepMethod`), the cell with the lowest final validation
    /// loss, in the order the methods first appear.
    static func bestOfSweeps(_ rs: [Suite.Result]) -> [Suite.Result] {
        var order: [String] = [], best: [String: Suite.Result] = [:]
        for r in rs {
            let m = Suite.sweepMethod(r.cell)
            if best[m] == nil { order.append(m); best[m] = r; continue }
            if (r.final_val_loss ?? .infinity) < (best[m]!.final_val_loss ?? .infinity) { best[m] = r }
        }
        return order.map { best[$0]! }
    }

    /// Validation loss of every sweep cell: a row per method, a column per rate factor.
    static func sweepTable(_ rs: [Suite.Result]) -> String {
        var order: [String] = [], cells: [String: [Suite.Result]] = [:]
        for r in rs {
            let m = Suite.sweepMethod(r.cell)
            if cells[m] == nil { order.append(m) }
            cells[m, default: []].append(r)
        }
        var s = "| method | learning rate: final val loss |\n|---|---|\n"
        for m in order {
            let entries = cells[m]!.map { r in "\(r.cell.split(separator: "@").last.map { $0.dropFirst(2) } ?? ""): \(num(r.final_val_loss, "%.4f"))" }
            s += "| \(m) | \(entries.joined(separator: ", ")) |\n"
        }
        return s
    }

    static func speedTable(_ rs: [Suite.Result]) -> String {
        let base = rs.first { Suite.sweepMethod($0.cell) == "adamw" }
        var s = "| method | settings | tokens/s | step ms (x AdamW) | weights MiB | gradients MiB | optimizer state MiB | activations MiB | peak RSS MiB |\n"
        s += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rs {
            let x = base.map { " (\(ratio(r.step_ms, $0.step_ms)))" } ?? ""
            s += "| \(r.cell) | \(settings(r)) | \(num(r.tokens_per_s, "%.0f")) | \(num(r.step_ms, "%.1f"))\(x) | \(mib(r.weights_bytes)) | "
            s += "\(mib(r.gradients_bytes)) | \(mib(r.optimizer_state_bytes)) | \(mib(r.activations_bytes)) | \(mib(r.peak_rss_bytes)) |\n"
        }
        return s
    }

    /// Tokens per second of a cell and its peer: of the median step when both have it, else
    /// the means.
    public static func throughputPair(_ r: Suite.Result, _ p: Suite.Result) -> (Double, Double) {
        if let a = r.tokens_per_s_median, let b = p.tokens_per_s_median { return (a, b) }
        return (r.tokens_per_s, p.tokens_per_s)
    }

    /// Subspace next to its PyTorch peer, with ratios Subspace / PyTorch.
    public static func peerTable(_ rs: [Suite.Result], _ ps: [Suite.Result]) -> String {
        var s = "Against PyTorch (`bench/peers/suite_peer.py`: the same initial weights, batches in file order, schedule and "
        s += "clipping; tokens/s of the median step; ratios are Subspace / PyTorch):\n\n"
        s += "| method | reference | tokens/s | PyTorch | ratio | peak RSS MiB | PyTorch | ratio | val loss | PyTorch | ratio |\n"
        s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rs {
            guard let p = ps.first(where: { $0.cell == r.cell }) else { continue }
            let (a, b) = throughputPair(r, p)
            s += "| \(r.cell) | \(p.reference ?? "-") | \(num(a, "%.0f")) | \(num(b, "%.0f")) | "
            s += "\(ratio(a, b)) | \(mib(r.peak_rss_bytes)) | \(mib(p.peak_rss_bytes)) | "
            s += "\(ratio(Double(r.peak_rss_bytes), Double(p.peak_rss_bytes))) | \(num(r.final_val_loss, "%.4f")) | "
            s += "\(num(p.final_val_loss, "%.4f")) | \(ratio(r.final_val_loss, p.final_val_loss)) |\n"
        }
        return s
    }
}

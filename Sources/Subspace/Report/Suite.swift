import Foundation

/// The method comparison: which optimizers, with which settings, on which preset and data.
///
/// Each cell is one `subspace train` run in its own process (so each peak RSS is its own),
/// in `DIR/<cell name>/`; a cell whose `summary.json` exists is finished and is skipped on a
/// re-run. Adding a method to a suite is one line in `cells(suite:)`.
public enum Suite {
    public struct Cell: Sendable {
        public let name: String
        /// `subspace train` flags for this cell (optimizer and its hyperparameters).
        public let flags: [String]
        public init(_ name: String, _ flags: [String]) { self.name = name; self.flags = flags }
    }

    public static let names = ["pretrain", "speed"]

    /// Learning rates are each method's reference setting scaled to `tiny`: AdamW's tuned
    /// 3e-3; GaLore-family methods GaLore's 0.01 with scale 0.25, rank 64, gap 200 (the
    /// issue's setting); Muon its default 0.02; Lion 3e-4 (a tenth of AdamW's, as its paper
    /// advises).
    public static func cells(suite: String) throws -> [Cell] {
        let lowRank = ["--rank", "64", "--update-gap", "200", "--scale", "0.25"]
        switch suite {
        case "pretrain", "speed":
            return [
                Cell("adamw", ["--optimizer", "adamw", "--lr", "3e-3"]),
                Cell("galore-r64-T200", ["--optimizer", "galore", "--lr", "1e-2"] + lowRank),
                Cell("galore-adafactor-r64-T200", ["--optimizer", "galore-adafactor", "--lr", "1e-2"] + lowRank),
                Cell("fira-r64-T200", ["--optimizer", "fira", "--lr", "1e-2"] + lowRank),
                Cell("flora-r64", ["--optimizer", "flora", "--lr", "3e-3", "--rank", "64", "--update-gap", "200"]),
                Cell("gum-r64-T200", ["--optimizer", "gum", "--lr", "2e-2"] + lowRank),
                Cell("projfactor", ["--optimizer", "projfactor", "--lr", "3e-3"]),
                Cell("muon", ["--optimizer", "muon"]),
                Cell("adafactor", ["--optimizer", "adafactor", "--lr", "3e-3"]),
                Cell("lion", ["--optimizer", "lion", "--lr", "3e-4"]),
            ]
        default:
            throw ConfigurationError("unknown suite '\(suite)'; known: \(names.joined(separator: ", "))")
        }
    }

    /// One finished cell, as `results.jsonl` stores it.
    public struct Result: Codable, Sendable {
        public var cell: String
        public var preset: String
        public var steps: Int
        public var tokens: Int
        public var final_val_loss: Double?
        public var best_val_loss: Double?
        public var val_ppl: Double?
        public var tokens_per_s: Double
        public var step_ms: Double
        public var optimizer_state_bytes: Int
        public var peak_rss_bytes: Int
        public var flags: [String]

        public init(
            cell: String, preset: String, steps: Int, tokens: Int, final_val_loss: Double?, best_val_loss: Double?,
            val_ppl: Double?, tokens_per_s: Double, step_ms: Double, optimizer_state_bytes: Int, peak_rss_bytes: Int,
            flags: [String]
        ) {
            self.cell = cell; self.preset = preset; self.steps = steps; self.tokens = tokens
            self.final_val_loss = final_val_loss; self.best_val_loss = best_val_loss; self.val_ppl = val_ppl
            self.tokens_per_s = tokens_per_s; self.step_ms = step_ms; self.optimizer_state_bytes = optimizer_state_bytes
            self.peak_rss_bytes = peak_rss_bytes; self.flags = flags
        }
    }

    /// A markdown table of results, with ratios to the AdamW cell when there is one.
    public static func markdown(_ results: [Result]) -> String {
        let base = results.first { $0.cell == "adamw" }
        func mib(_ b: Int) -> String { String(format: "%.1f", Double(b) / 1_048_576) }
        var s = "| method | val loss | val ppl | tokens/s | step ms (x AdamW) | optimizer state MiB | peak RSS MiB |\n"
        s += "|---|---:|---:|---:|---:|---:|---:|\n"
        for r in results {
            let ratio = base.map { String(format: " (%.2fx)", r.step_ms / $0.step_ms) } ?? ""
            s += "| \(r.cell) | \(r.final_val_loss.map { String(format: "%.4f", $0) } ?? "-") | "
            s += "\(r.val_ppl.map { String(format: "%.2f", $0) } ?? "-") | \(String(format: "%.0f", r.tokens_per_s)) | "
            s += "\(String(format: "%.1f", r.step_ms))\(ratio) | \(mib(r.optimizer_state_bytes)) | \(mib(r.peak_rss_bytes)) |\n"
        }
        return s
    }
}

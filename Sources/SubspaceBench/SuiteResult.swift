import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

extension Suite {
    /// One finished cell, one line of `results.jsonl` (Subspace) or `peers.jsonl` (the
    /// PyTorch peer, `bench/peers/suite_peer.py`, which writes the same keys).
    ///
    /// Field names are the file's keys (snake case, sorted when written). The fields after
    /// `flags` were added with `subspace bench --suite`; they are optional so that older
    /// `results.jsonl` files still read.
    public struct Result: Codable, Sendable, Equatable {
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
        /// The cell's command-line flags (optimizer and hyperparameters).
        public var flags: [String]
        /// "pretrain", "finetune" or "speed".
        public var suite: String?
        /// "subspace" or "pytorch".
        public var impl: String?
        /// The optimizer name (`--optimizer`).
        public var method: String?
        /// The cell's hyperparameters from `flags`, without the leading dashes
        /// (`{"lr": "1e-2", "rank": "64"}`; a bare flag maps to "true").
        public var settings: [String: String]?
        /// Model memory by kind for the stacked figure: fp32 weights, gradients (all of them,
        /// or the largest one with `--per-layer-update`) and activations of one batch.
        public var weights_bytes: Int?
        public var gradients_bytes: Int?
        public var activations_bytes: Int?
        public var batch: Int?
        public var seq: Int?
        /// The reference implementation a peer line ran (e.g. "galore_torch.GaLoreAdamW").
        public var reference: String?
        /// Tokens per second of the median step: robust to steps slowed by other processes
        /// (or a paused machine), so the side-by-side ratios use it when both sides have it.
        public var tokens_per_s_median: Double?

        public init(
            cell: String, preset: String, steps: Int, tokens: Int, final_val_loss: Double?, best_val_loss: Double?,
            val_ppl: Double?, tokens_per_s: Double, step_ms: Double, optimizer_state_bytes: Int, peak_rss_bytes: Int,
            flags: [String]
        ) {
            self.cell = cell; self.preset = preset; self.steps = steps; self.tokens = tokens
            self.final_val_loss = final_val_loss; self.best_val_loss = best_val_loss; self.val_ppl = val_ppl
            self.tokens_per_s = tokens_per_s; self.step_ms = step_ms; self.optimizer_state_bytes = optimizer_state_bytes
            self.peak_rss_bytes = peak_rss_bytes; self.flags = flags
            self.method = Suite.method(flags: flags)
            self.settings = Suite.settings(flags: flags)
        }

        /// One JSON line (sorted keys, no trailing newline).
        public func jsonLine() -> String {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            guard let d = try? enc.encode(self), let s = String(data: d, encoding: .utf8) else { return "{}" }
            return s
        }

        /// Reads a JSON-lines file of results; lines that do not parse are skipped.
        public static func read(url: URL) -> [Result] {
            guard let data = FileManager.default.contents(atPath: url.path), let text = String(data: data, encoding: .utf8) else {
                return []
            }
            return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Result.self, from: Data($0.utf8)) }
        }

        /// Writes results as JSON lines, atomically.
        public static func write(_ results: [Result], to url: URL) throws {
            try AtomicFile.write(results.map { $0.jsonLine() + "\n" }.joined(), to: url)
        }
    }

    /// The median of `values` (nil when empty).
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted(), n = s.count
        return n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2])
    }

    /// The value of `--optimizer` in `flags` ("adamw" when absent, the command's default).
    public static func method(flags: [String]) -> String {
        settings(flags: flags)["optimizer"] ?? "adamw"
    }

    /// `--name value` pairs of `flags` as a dictionary; a flag followed by another flag (or
    /// last) is a switch and maps to "true".
    public static func settings(flags: [String]) -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while i < flags.count {
            let f = flags[i]
            guard f.hasPrefix("--") else { i += 1; continue }
            let key = String(f.dropFirst(2))
            if i + 1 < flags.count, !flags[i + 1].hasPrefix("--") || Double(flags[i + 1]) != nil {
                out[key] = flags[i + 1]; i += 2
            } else {
                out[key] = "true"; i += 1
            }
        }
        return out
    }
}

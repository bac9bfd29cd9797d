import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// One line of `metrics.jsonl`: what an optimizer step measured.
public struct StepMetrics: Codable, Sendable {
    public var step: Int
    public var tokens: Int
    public var loss: Double
    public var lr: Double
    public var tokens_per_s: Double
    public var rss_bytes: Int
    public var val_loss: Double?
    public var val_ppl: Double?
    /// On a classification file: validation accuracy (`ChoiceAccuracy`).
    public var val_accuracy: Double?
    public var step_ms: Double
    /// Data-parallel runs: gradient bytes this rank all-reduced in the step (nil: one process).
    public var comm_bytes: Int?
    /// Tensor-train slots (CoMERA): core parameters over the surviving ranks, dense slot
    /// parameters per TT parameter, surviving internal ranks, and the late stage's l (absent
    /// in the early stage).
    public var tt_params: Int?
    public var tt_compression: Double?
    public var tt_ranks: Int?
    public var comera_late: Double?
    public init(step: Int, tokens: Int, loss: Double, lr: Double, tokens_per_s: Double, rss_bytes: Int, val_loss: Double? = nil, val_ppl: Double? = nil, step_ms: Double) {
        self.step = step; self.tokens = tokens; self.loss = loss; self.lr = lr; self.tokens_per_s = tokens_per_s
        self.rss_bytes = rss_bytes; self.val_loss = val_loss; self.val_ppl = val_ppl; self.step_ms = step_ms
    }
}

extension StepMetrics {
    /// Fills the tensor-train fields.
    public mutating func report(_ tt: TensorTrainSummary, lateIndicator: Float?) {
        tt_params = tt.parameters
        tt_compression = tt.compression.isFinite ? tt.compression : nil
        tt_ranks = tt.activeRanks
        comera_late = lateIndicator.map(Double.init)
    }
}

/// A run's metrics: JSON lines in `metrics.jsonl`, one `write(2)` per record
/// (`DurableFile.Appender`: a full disk is an error the run reports, never a trap), and the
/// same scalars as TensorBoard events beside it (`TensorBoardEvents`; `train/loss`,
/// `train/lr`, `train/tokens_per_s`, `train/rss_mib`, `val/loss`, `val/perplexity`, `val/accuracy` on a classification file).
public final class MetricsLog {
    let file: DurableFile.Appender
    let events: TensorBoardEvents?
    let encoder: JSONEncoder

    /// Opens `url` for appending. A new run (`truncateAfterStep` nil) starts an empty file;
    /// a resumed one keeps the lines of steps up to `truncateAfterStep` and drops later ones,
    /// so it does not duplicate steps from a run that went on past its last checkpoint.
    public init(url: URL, truncateAfterStep: Int? = nil, tensorBoard: Bool = true) throws {
        let fm = FileManager.default
        if let keep = truncateAfterStep {
            if let data = fm.contents(atPath: url.path) {
                let text = String(decoding: data, as: UTF8.self)
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                var kept: [Substring] = []
                for (i, line) in lines.enumerated() where !line.isEmpty {
                    guard let m = try? JSONDecoder().decode(StepMetrics.self, from: Data(line.utf8)) else {
                        // A kill during an append can tear the last line; anything else is not
                        // ours to drop.
                        if i == lines.count - 1 || (i == lines.count - 2 && lines.last?.isEmpty == true && !text.hasSuffix("}\n")) { continue }
                        throw DataError("'\(url.path)' line \(i + 1) is not a metrics record; move the file away to resume")
                    }
                    if m.step <= keep { kept.append(line) }
                }
                try AtomicFile.write(kept.map { $0 + "\n" }.joined(), to: url)
            }
        } else {
            try AtomicFile.write(Data(), to: url)
        }
        do { file = try DurableFile.Appender(url) } catch let e as IOFailure { throw DataError(e.description) }
        events = tensorBoard ? try TensorBoardEvents(directory: url.deletingLastPathComponent(), resumedAt: truncateAfterStep.map { $0 + 1 }) : nil
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
    }

    public func append(_ m: StepMetrics) throws {
        let d: Data
        do { d = try encoder.encode(m) } catch { throw DataError("cannot encode the metrics of step \(m.step): \(error)") }
        do { try file.append(d + Data("\n".utf8)) } catch let e as IOFailure { throw DataError(e.description) }
        var scalars = [("train/loss", m.loss), ("train/lr", m.lr), ("train/tokens_per_s", m.tokens_per_s),
                       ("train/rss_mib", Double(m.rss_bytes) / 1_048_576)]
        if let v = m.val_loss { scalars.append(("val/loss", v)) }
        if let p = m.val_ppl { scalars.append(("val/perplexity", p)) }
        if let a = m.val_accuracy { scalars.append(("val/accuracy", a)) }
        try events?.add(step: m.step, scalars: scalars)
    }

    /// Reads a metrics file (lines that do not parse are skipped).
    public static func read(url: URL) throws -> [StepMetrics] {
        guard let data = FileManager.default.contents(atPath: url.path), let text = String(data: data, encoding: .utf8) else {
            throw DataError("cannot read metrics '\(url.path)'")
        }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(StepMetrics.self, from: Data($0.utf8)) }
    }

    /// The figure of one or more runs (`RunFigure`): loss against steps and tokens (raw,
    /// smoothed, validation), learning rate, tokens/s and RSS.
    public static func lossPlot(runs: [(name: String, metrics: [StepMetrics])]) -> String {
        RunFigure.render(runs: runs)
    }
}

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// The suite's figures, as SVG text: validation loss against tokens, memory stacked by kind,
/// and throughput bars.
public enum SuiteFigures {
    static let mib = 1_048_576.0

    /// Validation loss against tokens seen, one solid line per Subspace cell and a dashed one
    /// per PyTorch peer.
    public static func validationLoss(
        title: String, runs: [(name: String, metrics: [StepMetrics])], peers: [(name: String, metrics: [StepMetrics])] = []
    ) -> String {
        func points(_ m: [StepMetrics]) -> [(x: Double, y: Double)] { m.compactMap { s in s.val_loss.map { (Double(s.tokens), $0) } } }
        var series = runs.map { SVGPlot.Series(name: $0.name, points: points($0.metrics)) }
        series += peers.map { SVGPlot.Series(name: "\($0.name) (PyTorch)", points: points($0.metrics), dashed: true) }
        return SVGPlot(title: title, xLabel: "tokens", yLabel: "validation loss (nats)", series: series.filter { !$0.points.isEmpty }).render()
    }

    /// Memory per cell in MiB, stacked as fp32 weights, gradients, optimizer state and
    /// activations (one batch), with the measured peak RSS as a black line.
    public static func memory(title: String, results: [Suite.Result]) -> String {
        let values = results.map { r -> [Double] in
            [r.weights_bytes, r.gradients_bytes, r.optimizer_state_bytes, r.activations_bytes].map { Double($0 ?? 0) / mib }
        }
        return SVGBars(
            title: title, yLabel: "MiB", categories: results.map(\.cell),
            series: ["weights", "gradients", "optimizer state", "activations"], values: values, stacked: true,
            markers: results.map { Double($0.peak_rss_bytes) / mib }, markerLabel: "peak RSS").render()
    }

    /// Training tokens per second per cell; with peers, PyTorch's bar beside Subspace's.
    public static func throughput(title: String, results: [Suite.Result], peers: [Suite.Result] = []) -> String {
        let byCell = Dictionary(peers.map { ($0.cell, $0) }, uniquingKeysWith: { a, _ in a })
        let withPeers = !peers.isEmpty
        let values = results.map { r -> [Double] in
            withPeers ? [r.tokens_per_s, byCell[r.cell]?.tokens_per_s ?? .nan] : [r.tokens_per_s]
        }
        return SVGBars(
            title: title, yLabel: "tokens/s", categories: results.map(\.cell),
            series: withPeers ? ["Subspace", "PyTorch"] : ["Subspace"], values: values, stacked: false).render()
    }
}

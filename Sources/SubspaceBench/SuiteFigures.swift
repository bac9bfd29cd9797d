import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// The suite's figures, as SVG text: validation loss against tokens, validation loss against
/// memory (Pareto), memory stacked by kind, and throughput bars with their spread. Cell i of
/// the suite takes `Palette.color(i)` in every figure, as in the suite's `loss.svg`
/// (`RunFigure`), so a method keeps its colour from one figure to the next.
public enum SuiteFigures {
    static let mib = 1_048_576.0

    /// Validation loss against tokens seen: one line with a marker per evaluation for each
    /// Subspace cell, dashed for each PyTorch peer. The legend lists the cells from the best
    /// final validation loss to the worst, with that loss, so it reads as a ranking.
    public static func validationLoss(
        title: String, runs: [(name: String, metrics: [StepMetrics])], peers: [(name: String, metrics: [StepMetrics])] = []
    ) -> String {
        func points(_ m: [StepMetrics]) -> [(x: Double, y: Double)] { m.compactMap { s in s.val_loss.map { (Double(s.tokens), $0) } } }
        var series: [SVGPlot.Series] = []
        for (i, r) in runs.enumerated() {
            var s = SVGPlot.Series(name: r.name, points: points(r.metrics), color: Palette.color(i), width: 1.8,
                                   marker: SVG.Marker.forSeries(i), markerColor: Palette.validation(i))
            s.dash = Palette.dash(i)
            series.append(s)
        }
        for p in peers {
            let i = runs.firstIndex { $0.name == p.name } ?? (runs.count + series.count)
            series.append(.init(name: "\(p.name) (PyTorch)", points: points(p.metrics), dashed: true, color: Palette.validation(i),
                                width: 1.4, marker: .square, markerColor: Palette.validation(i)))
        }
        series = series.filter { !$0.points.isEmpty }
        var plot = SVGPlot(title: title, xLabel: "tokens", yLabel: "validation loss (nats)", series: series)
        plot.xSI = true
        let ranked = series.indices.sorted { (series[$0].points.last?.y ?? .infinity) < (series[$1].points.last?.y ?? .infinity) }
        plot.legend = SVGLegend(title: "final validation loss", entries: ranked.map { k in
            let s = series[k]
            return .init(.lineMarker(color: s.color!, dash: s.dash, marker: s.marker ?? .circle, markerColor: s.markerColor ?? s.color!),
                         String(format: "%.3f  ", s.points.last?.y ?? .nan) + s.name)
        })
        return plot.render()
    }

    /// Final validation loss against memory, one point per cell, with the Pareto front (the
    /// cells no other cell beats on both), in two panels: against the weights plus the
    /// optimizer state (what the methods are about: the state-compressing ones shrink the
    /// second, the low-rank parametrizations both; Glentis et al.'s memory axis) and against
    /// the whole process's peak RSS (what the machine needs; activations dominate it at this
    /// size). Cells without a validation
    /// loss are left out.
    public static func pareto(title: String, results: [Suite.Result], order: [String]? = nil) -> String {
        let names = order ?? results.map(\.cell)
        let rs = results.filter { ($0.final_val_loss ?? $0.best_val_loss) != nil }
        func points(_ x: (Suite.Result) -> Double) -> [SVGScatter.Point] {
            rs.map { r in
                let i = names.firstIndex(of: r.cell) ?? 0
                return .init(label: r.cell, x: x(r), y: r.final_val_loss ?? r.best_val_loss!, color: Palette.color(i), marker: SVG.Marker.forSeries(i))
            }
        }
        let state = SVGScatter(title: "against weights + optimizer state", xLabel: "weights + optimizer state (MiB)",
                               yLabel: "final validation loss (nats)",
                               points: points { Double(($0.weights_bytes ?? 0) + $0.optimizer_state_bytes) / mib })
        let rss = SVGScatter(title: "against peak RSS", xLabel: "peak RSS (MiB)", yLabel: "final validation loss (nats)",
                             points: points { Double($0.peak_rss_bytes) / mib })
        let w = 520.0, h = 440.0, head = 30.0
        var body = SVG.text(title, x: w, y: 21, anchor: "middle", size: 15, weight: "bold") + "\n"
        let (a, ax) = state.draw(in: .init(x: 0, y: head, width: w, height: h), id: "state")
        let (b, _) = rss.draw(in: .init(x: w, y: head, width: w, height: h), id: "rss")
        body += a + b
        let legend = SVGLegend(entries: [
            .init(.line(color: "#333", dash: "4,3", width: 1.2), "Pareto front (lower-left:"),
            .init(.none, "no cell is better on both)"),
            .init(.marker(.circle, color: "#bbb"), "ringed, bold: on the front"),
        ])
        let lx = 2 * w + 6
        return SVG.document(width: lx + legend.width + 10, height: max(head + h + 4, ax.plot.y + legend.height + 10),
                            body: body + legend.render(x: lx, y: ax.plot.y))
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

    /// The spread of a run's per-step throughput: the standard deviation of `tokens_per_s`
    /// over its steps, the first left out (it pays for first-touch page faults and buffer
    /// allocation, up to twice a later step). nil with fewer than 3 steps.
    public static func throughputSpread(_ m: [StepMetrics]) -> Double? {
        let v = m.dropFirst().map(\.tokens_per_s).filter(\.isFinite)
        guard v.count >= 2 else { return nil }
        let mean = v.reduce(0, +) / Double(v.count)
        return (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count - 1)).squareRoot()
    }

    /// Training tokens per second per cell (the table's figure: tokens over the summed step
    /// times); with peers, PyTorch's bar beside Subspace's. Where a cell's per-step metrics
    /// are known (`spread`, `peerSpread`: cell to the standard deviation of its per-step
    /// tokens/s), a whisker spans the bar ± one standard deviation: how much a single step
    /// moves on a shared machine, not an uncertainty of the mean.
    public static func throughput(title: String, results: [Suite.Result], peers: [Suite.Result] = [],
                                  spread: [String: Double] = [:], peerSpread: [String: Double] = [:]) -> String {
        let byCell = Dictionary(peers.map { ($0.cell, $0) }, uniquingKeysWith: { a, _ in a })
        let withPeers = !peers.isEmpty
        let values = results.map { r -> [Double] in
            withPeers ? [r.tokens_per_s, byCell[r.cell]?.tokens_per_s ?? .nan] : [r.tokens_per_s]
        }
        func whisker(_ v: Double, _ sd: Double?) -> (lo: Double, hi: Double)? {
            guard let sd, v.isFinite, v > 0 else { return nil }
            return (max(0, v - sd), v + sd)
        }
        let errors = results.map { r -> [(lo: Double, hi: Double)?] in
            let own = whisker(r.tokens_per_s, spread[r.cell])
            return withPeers ? [own, whisker(byCell[r.cell]?.tokens_per_s ?? .nan, peerSpread[r.cell])] : [own]
        }
        return SVGBars(
            title: title, yLabel: "tokens/s", categories: results.map(\.cell),
            series: withPeers ? ["Subspace", "PyTorch"] : ["Subspace"], values: values, stacked: false,
            errors: errors, errorLabel: "± 1 std of per-step tokens/s").render()
    }
}

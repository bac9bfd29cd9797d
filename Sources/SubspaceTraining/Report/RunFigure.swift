import Foundation

/// The figure of one or more training runs (`loss.svg` in every run directory, `subspace
/// plot RUN...`, the suites' `loss.svg`), as small multiples sharing the step axis:
///
/// - **Loss** against steps, with tokens on a second axis along the top (when every run
///   sees the same tokens per step; otherwise a second panel plots loss against tokens).
///   The raw training loss is drawn faint; over it the TensorBoard-style smoothed curve
///   (`Smoothing.ema`, debiased, weight from `Smoothing.weight(points:)`, named in the
///   legend); validation losses are markers in a darker shade of the run's colour
///   (`Palette.validation`), joined by a thin line. The y range holds the smoothed curves and
///   validation points and all but the lowest 1% of raw losses; raw spikes above it are
///   clipped rather than squashing the curves that matter.
/// - **Learning rate**, **tokens/s** (raw faint, smoothed over it, as the loss) and **peak
///   resident memory** (RSS, MiB) against steps.
///
/// Run i takes `Palette.color(i)` (and its dash) in every panel; the legend sits right of
/// the panels, one row per run and a key to the line styles.
public enum RunFigure {
    public typealias Run = (name: String, metrics: [StepMetrics])

    /// The faint raw curves: visible behind one run's smoothed curve, a haze behind many.
    static func rawOpacity(runs: Int) -> Double { runs <= 1 ? 0.3 : runs <= 4 ? 0.18 : 0.08 }

    /// Tokens per optimizer step shared by every run (nil when runs differ or a run's batch
    /// changes): then tokens are a second axis of the step panels.
    static func tokensPerStep(_ runs: [Run]) -> Double? {
        var k: Double?
        for r in runs {
            for m in r.metrics where m.step > 0 {
                let t = Double(m.tokens) / Double(m.step)
                if let k0 = k { if abs(t - k0) > 1e-9 * k0 { return nil } } else { k = t }
            }
        }
        return k
    }

    static func percentile(_ v: [Double], _ p: Double) -> Double? {
        let s = v.filter(\.isFinite).sorted()
        guard !s.isEmpty else { return nil }
        return s[min(s.count - 1, max(0, Int((Double(s.count - 1) * p).rounded())))]
    }

    /// Raw, smoothed and validation series of one quantity for every run, and its y range.
    static func smoothedPanel(_ runs: [Run], x: (StepMetrics) -> Double, y: (StepMetrics) -> Double, validation: Bool,
                              title: String, xLabel: String, yLabel: String) -> SVGPlot {
        var series: [SVGPlot.Series] = []
        var lo = Double.infinity, hi = -Double.infinity
        let opacity = rawOpacity(runs: runs.count)
        for (i, r) in runs.enumerated() {
            let raw = r.metrics.map { (x: x($0), y: y($0)) }
            let sm = Smoothing.ema(raw.map(\.y), weight: Smoothing.weight(points: raw.count))
            let c = Palette.color(i)
            var rawSeries = SVGPlot.Series(name: "\(r.name) raw", points: raw, color: c, width: 1, opacity: opacity, inLegend: false)
            rawSeries.column = runs.count > 4 ? 3 : 1.5
            series.append(rawSeries)
            var smooth = SVGPlot.Series(name: r.name, points: zip(raw, sm).map { (x: $0.x, y: $1) }, color: c, width: 1.8)
            smooth.dash = Palette.dash(i)
            series.append(smooth)
            let finite = sm.filter(\.isFinite)
            lo = min(lo, finite.min() ?? lo, percentile(raw.map(\.y), 0.01) ?? lo)
            hi = max(hi, finite.max() ?? hi)
            if validation {
                let v = r.metrics.compactMap { m in m.val_loss.map { (x: x(m), y: $0) } }.filter { $0.y.isFinite }
                if !v.isEmpty {
                    series.append(.init(name: "\(r.name) validation", points: v, color: Palette.validation(i), width: 1,
                                        marker: SVG.Marker.forSeries(i), markerColor: Palette.validation(i), inLegend: false))
                    lo = min(lo, v.map(\.y).min()!); hi = max(hi, v.map(\.y).max()!)
                }
            }
        }
        var p = SVGPlot(title: title, xLabel: xLabel, yLabel: yLabel, series: series)
        if lo.isFinite && hi.isFinite {
            let pad = max((hi - lo) * 0.05, abs(hi) * 1e-3)
            p.yDomain = (lo - pad, hi + pad)
        }
        return p
    }

    public static func render(runs: [Run], title: String? = nil) -> String {
        let runs = runs.filter { !$0.metrics.isEmpty }
        let step: (StepMetrics) -> Double = { Double($0.step) }
        let perStep = tokensPerStep(runs)
        var loss = smoothedPanel(runs, x: step, y: { $0.loss }, validation: true,
                                 title: perStep == nil ? "Loss against steps" : "Loss: training (smoothed over raw) and validation (markers)",
                                 xLabel: "step", yLabel: "loss (nats)")
        if let k = perStep { loss.top = ("tokens", k) }
        var lossTokens: SVGPlot?
        if perStep == nil {
            var p = smoothedPanel(runs, x: { Double($0.tokens) }, y: { $0.loss }, validation: true,
                                  title: "Loss against tokens", xLabel: "tokens", yLabel: "loss (nats)")
            p.xSI = true
            lossTokens = p
        }
        let lr = SVGPlot(title: "Learning rate", xLabel: "step", yLabel: "learning rate", series: runs.enumerated().map { i, r in
            var s = SVGPlot.Series(name: r.name, points: r.metrics.map { (Double($0.step), $0.lr) }, color: Palette.color(i), width: 1.6)
            s.dash = Palette.dash(i)
            return s
        })
        var speed = smoothedPanel(runs, x: step, y: { $0.tokens_per_s }, validation: false,
                                  title: "Throughput", xLabel: "step", yLabel: "tokens/s")
        speed.ySI = true
        let rss = SVGPlot(title: "Resident memory (RSS)", xLabel: "step", yLabel: "MiB", series: runs.enumerated().map { i, r in
            var s = SVGPlot.Series(name: r.name, points: r.metrics.map { (Double($0.step), Double($0.rss_bytes) / 1_048_576) },
                                   color: Palette.color(i), width: 1.6)
            s.dash = Palette.dash(i)
            return s
        })

        // Layout: the loss panel (or two) across the top, three small panels below, the
        // legend to the right of all of them.
        let W = 780.0, topH = 360.0, smallH = 240.0, head = 32.0
        var body = ""
        let figureTitle = title ?? (runs.count == 1 ? "Run \(runs[0].name)" : "\(runs.count) runs")
        body += SVG.text(figureTitle, x: W / 2, y: 22, anchor: "middle", size: 15, weight: "bold") + "\n"
        var plots: [SVG.Rect] = []
        if let lossTokens {
            let (a, ax) = loss.draw(in: .init(x: 0, y: head, width: W / 2, height: topH), id: "loss")
            let (b, bx) = lossTokens.draw(in: .init(x: W / 2, y: head, width: W / 2, height: topH), id: "loss-tokens")
            body += a + b; plots += [ax.plot, bx.plot]
        } else {
            let (a, ax) = loss.draw(in: .init(x: 0, y: head, width: W, height: topH), id: "loss")
            body += a; plots.append(ax.plot)
        }
        for (k, (p, id)) in [(lr, "lr"), (speed, "speed"), (rss, "rss")].enumerated() {
            let (s, ax) = p.draw(in: .init(x: W / 3 * Double(k), y: head + topH + 8, width: W / 3, height: smallH), id: id)
            body += s; plots.append(ax.plot)
        }

        var entries: [SVGLegend.Entry] = runs.enumerated().map { i, r in
            .init(.lineMarker(color: Palette.color(i), dash: Palette.dash(i), marker: SVG.Marker.forSeries(i), markerColor: Palette.validation(i)), r.name)
        }
        let weights = Set(runs.map { String(format: "%.3g", Smoothing.weight(points: $0.metrics.count)) }).sorted()
        entries += [
            .init(.none, ""),
            .init(.line(color: "#555", width: 1, opacity: 0.4), "raw (every step)"),
            .init(.line(color: "#555", width: 1.8), "EMA, debiased, w = \(weights.joined(separator: ", "))"),
            .init(.marker(.circle, color: "#333"), "validation loss"),
        ]
        let legend = SVGLegend(entries: entries)
        let lx = W + 8, ly = plots[0].y
        let width = lx + legend.width + 10
        let height = max(head + topH + 8 + smallH + 6, ly + legend.height + 10)
        return SVG.document(width: width, height: height, body: body + legend.render(x: lx, y: ly))
    }
}

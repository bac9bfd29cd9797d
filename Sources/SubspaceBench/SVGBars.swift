import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// Bar charts as standalone SVG: one bar per category, either stacked (segments of one total,
/// e.g. memory by kind) or grouped (one bar per series side by side, e.g. Subspace next to
/// PyTorch), with an optional marker per category (a short black line, e.g. measured peak RSS).
/// Shares `SVGPlot`'s palette, ticks and escaping.
public struct SVGBars {
    public var title: String
    public var yLabel: String
    /// Bar labels along the x axis.
    public var categories: [String]
    /// Segment (stacked) or group (grouped) names, in legend order.
    public var series: [String]
    /// `values[category][series]`; NaN or a missing entry draws nothing.
    public var values: [[Double]]
    public var stacked: Bool
    /// One marker per category (nil: none), named `markerLabel` in the legend.
    public var markers: [Double?]
    public var markerLabel: String?

    public init(title: String, yLabel: String, categories: [String], series: [String], values: [[Double]],
                stacked: Bool, markers: [Double?] = [], markerLabel: String? = nil) {
        self.title = title; self.yLabel = yLabel; self.categories = categories; self.series = series
        self.values = values; self.stacked = stacked; self.markers = markers; self.markerLabel = markerLabel
    }

    func value(_ c: Int, _ s: Int) -> Double {
        guard c < values.count, s < values[c].count, values[c][s].isFinite else { return 0 }
        return max(0, values[c][s])
    }

    public func render() -> String {
        let left = 70.0, right = 190.0, top = 40.0, bottom = 120.0, height = 460.0
        let slot = stacked ? 44.0 : max(44.0, 22.0 * Double(series.count) + 14)
        let width = max(720.0, left + right + slot * Double(categories.count))
        let pw = width - left - right, ph = height - top - bottom
        var hi = 0.0
        for c in categories.indices {
            let bar = stacked ? series.indices.reduce(0) { $0 + value(c, $1) } : (series.indices.map { value(c, $0) }.max() ?? 0)
            hi = max(hi, bar, (c < markers.count ? markers[c] ?? 0 : 0))
        }
        hi = hi > 0 ? hi * 1.08 : 1
        let ticks = SVGPlot.ticks(0, hi)
        let yhi = max(hi, ticks.last ?? hi)
        func sy(_ y: Double) -> Double { top + (1 - y / yhi) * ph }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func label(_ v: Double) -> String { abs(v) >= 1e4 ? String(format: "%.3g", v) : String(format: "%g", (v * 1000).rounded() / 1000) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(f(left + pw / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(SVGPlot.escape(title))</text>\n"
        for t in ticks where t <= yhi {
            s += "<line x1=\"\(f(left))\" x2=\"\(f(left + pw))\" y1=\"\(f(sy(t)))\" y2=\"\(f(sy(t)))\" stroke=\"#e5e5e5\"/>"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(sy(t) + 4))\" text-anchor=\"end\">\(label(t))</text>\n"
        }
        s += "<text transform=\"translate(16,\(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(SVGPlot.escape(yLabel))</text>\n"
        let step = pw / Double(max(categories.count, 1))
        for (c, name) in categories.enumerated() {
            let x0 = left + step * Double(c)
            if stacked {
                let bw = min(step * 0.7, 60), bx = x0 + (step - bw) / 2
                var acc = 0.0
                for k in series.indices {
                    let v = value(c, k)
                    guard v > 0 else { continue }
                    let color = SVGPlot.palette[k % SVGPlot.palette.count]
                    s += "<rect x=\"\(f(bx))\" y=\"\(f(sy(acc + v)))\" width=\"\(f(bw))\" height=\"\(f(sy(acc) - sy(acc + v)))\" fill=\"\(color)\"/>"
                    acc += v
                }
                s += "\n"
            } else {
                let n = Double(max(series.count, 1))
                let bw = min(step * 0.8 / n, 40), start = x0 + (step - bw * n) / 2
                for k in series.indices {
                    let v = value(c, k)
                    guard v > 0 else { continue }
                    let color = SVGPlot.palette[k % SVGPlot.palette.count]
                    s += "<rect x=\"\(f(start + bw * Double(k)))\" y=\"\(f(sy(v)))\" width=\"\(f(bw * 0.92))\" height=\"\(f(sy(0) - sy(v)))\" fill=\"\(color)\"/>"
                }
                s += "\n"
            }
            if c < markers.count, let m = markers[c], m.isFinite {
                s += "<line x1=\"\(f(x0 + step * 0.1))\" x2=\"\(f(x0 + step * 0.9))\" y1=\"\(f(sy(m)))\" y2=\"\(f(sy(m)))\" stroke=\"black\" stroke-width=\"2\"/>\n"
            }
            let lx = x0 + step / 2, ly = top + ph + 14
            s += "<text transform=\"translate(\(f(lx)),\(f(ly))) rotate(-35)\" text-anchor=\"end\">\(SVGPlot.escape(name))</text>\n"
        }
        s += "<line x1=\"\(f(left))\" x2=\"\(f(left + pw))\" y1=\"\(f(sy(0)))\" y2=\"\(f(sy(0)))\" stroke=\"#333\"/>\n"
        var legend = series.enumerated().map { (SVGPlot.palette[$0.offset % SVGPlot.palette.count], $0.element, false) }
        if let markerLabel, markers.contains(where: { $0 != nil }) { legend.append(("black", markerLabel, true)) }
        for (i, (color, name, line)) in legend.enumerated() {
            let ly = top + 14 + Double(i) * 18, lx = left + pw + 14
            if line {
                s += "<line x1=\"\(f(lx))\" x2=\"\(f(lx + 14))\" y1=\"\(f(ly - 4))\" y2=\"\(f(ly - 4))\" stroke=\"black\" stroke-width=\"2\"/>"
            } else {
                s += "<rect x=\"\(f(lx))\" y=\"\(f(ly - 10))\" width=\"14\" height=\"10\" fill=\"\(color)\"/>"
            }
            s += "<text x=\"\(f(lx + 20))\" y=\"\(f(ly))\">\(SVGPlot.escape(name))</text>\n"
        }
        return s + "</svg>\n"
    }
}

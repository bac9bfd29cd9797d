import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// Bar charts as standalone SVG: one bar per category, either stacked (segments of one total,
/// e.g. memory by kind) or grouped (one bar per series side by side, e.g. Subspace next to
/// PyTorch), with an optional marker per category (a short black line, e.g. measured peak
/// RSS) and optional error bars per bar (e.g. the spread of per-step throughput). Category
/// labels are slanted at 35 degrees; the bottom and left margins are sized from the longest
/// one, and the legend (right of the plot) from its labels, so nothing clips. Uses
/// `SVGAxes`, `SVGLegend`, `Palette` and `Ticks` from the training layer.
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
    /// Grouped bars only: `errors[category][series]` is the (low, high) whisker of that
    /// bar, nil for none; named `errorLabel` in the legend.
    public var errors: [[(lo: Double, hi: Double)?]]
    public var errorLabel: String?

    public init(title: String, yLabel: String, categories: [String], series: [String], values: [[Double]],
                stacked: Bool, markers: [Double?] = [], markerLabel: String? = nil,
                errors: [[(lo: Double, hi: Double)?]] = [], errorLabel: String? = nil) {
        self.title = title; self.yLabel = yLabel; self.categories = categories; self.series = series
        self.values = values; self.stacked = stacked; self.markers = markers; self.markerLabel = markerLabel
        self.errors = errors; self.errorLabel = errorLabel
    }

    func value(_ c: Int, _ s: Int) -> Double {
        guard c < values.count, s < values[c].count, values[c][s].isFinite else { return 0 }
        return max(0, values[c][s])
    }
    func error(_ c: Int, _ s: Int) -> (lo: Double, hi: Double)? {
        guard !stacked, c < errors.count, s < errors[c].count, let e = errors[c][s], e.lo.isFinite, e.hi.isFinite else { return nil }
        return e
    }

    static let slant = 35.0 * Double.pi / 180

    public func render() -> String {
        let f = SVG.f
        var hi = 0.0
        for c in categories.indices {
            let bar = stacked ? series.indices.reduce(0) { $0 + value(c, $1) } : (series.indices.map { value(c, $0) }.max() ?? 0)
            let whisker = series.indices.compactMap { error(c, $0)?.hi }.max() ?? 0
            hi = max(hi, bar, whisker, (c < markers.count ? markers[c] ?? 0 : 0))
        }
        hi = hi > 0 ? hi * 1.05 : 1
        // A slanted label of width w reaches w cos(35) left of its bar and w sin(35) below.
        let longest = categories.map { SVG.textWidth($0, size: 11) }.max() ?? 0
        let slot = stacked ? 48.0 : max(48.0, 24.0 * Double(series.count) + 16)
        let panelW = max(560.0, 110 + slot * Double(categories.count))
        let leftRoom = max(0, longest * cos(Self.slant) - slot / 2 - 60)
        let frame = SVG.Rect(x: leftRoom, y: 0, width: panelW, height: 300 + longest * sin(Self.slant) + 20)
        let axes = SVGAxes(frame: frame, title: title, xLabel: "", yLabel: yLabel, x: (0, 1), y: (0, hi),
                           xTicks: false, bottomExtra: longest * sin(Self.slant) + 6)
        let p = axes.plot
        var s = axes.render(id: "bars")
        let step = p.width / Double(max(categories.count, 1))
        for (c, name) in categories.enumerated() {
            let x0 = p.x + step * Double(c)
            if stacked {
                let bw = min(step * 0.7, 60), bx = x0 + (step - bw) / 2
                var acc = 0.0
                for k in series.indices {
                    let v = value(c, k)
                    guard v > 0 else { continue }
                    s += "<rect x=\"\(f(bx))\" y=\"\(f(axes.sy(acc + v)))\" width=\"\(f(bw))\" height=\"\(f(axes.sy(acc) - axes.sy(acc + v)))\" fill=\"\(Palette.color(k))\"/>"
                    acc += v
                }
                s += "\n"
            } else {
                let n = Double(max(series.count, 1))
                let bw = min(step * 0.8 / n, 40), start = x0 + (step - bw * n) / 2
                for k in series.indices {
                    let v = value(c, k)
                    guard v > 0 else { continue }
                    let bx = start + bw * Double(k)
                    s += "<rect x=\"\(f(bx))\" y=\"\(f(axes.sy(v)))\" width=\"\(f(bw * 0.92))\" height=\"\(f(axes.sy(0) - axes.sy(v)))\" fill=\"\(Palette.color(k))\"/>"
                    if let e = error(c, k) {
                        let cx = bx + bw * 0.46, cap = min(5, bw * 0.3)
                        s += "<path class=\"error-bar\" d=\"M\(f(cx)),\(f(axes.sy(e.lo)))V\(f(axes.sy(e.hi)))M\(f(cx - cap)),\(f(axes.sy(e.lo)))H\(f(cx + cap))M\(f(cx - cap)),\(f(axes.sy(e.hi)))H\(f(cx + cap))\" stroke=\"#222\" stroke-width=\"1.3\" fill=\"none\"/>"
                    }
                }
                s += "\n"
            }
            if c < markers.count, let m = markers[c], m.isFinite {
                s += "<line x1=\"\(f(x0 + step * 0.1))\" x2=\"\(f(x0 + step * 0.9))\" y1=\"\(f(axes.sy(m)))\" y2=\"\(f(axes.sy(m)))\" stroke=\"black\" stroke-width=\"2\"/>\n"
            }
            s += SVG.text(name, x: x0 + step / 2 + 4, y: p.maxY + 12, anchor: "end", size: 11, rotate: -35) + "\n"
        }
        s += "<line x1=\"\(f(p.x))\" x2=\"\(f(p.maxX))\" y1=\"\(f(axes.sy(0)))\" y2=\"\(f(axes.sy(0)))\" stroke=\"#333\"/>\n"
        var entries = series.indices.map { SVGLegend.Entry(.box(color: Palette.color($0)), series[$0]) }
        if let markerLabel, markers.contains(where: { $0 != nil }) { entries.append(.init(.line(color: "black"), markerLabel)) }
        if let errorLabel, errors.contains(where: { $0.contains { $0 != nil } }) { entries.append(.init(.errorBar(color: "#222"), errorLabel)) }
        let legend = SVGLegend(entries: entries)
        let lx = frame.maxX + 4
        let width = lx + legend.width + 10, height = max(frame.maxY, p.y + legend.height + 10)
        return SVG.document(width: width, height: height, body: s + legend.render(x: lx, y: p.y))
    }
}

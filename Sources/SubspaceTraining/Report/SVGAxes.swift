import Foundation

/// One panel's frame: title, plot area, grid, ticks and axis labels, laid out inside `frame`
/// with margins sized from the tick labels it will draw (so a long label widens the margin
/// instead of running off the panel). Line plots, scatters and bars draw their marks inside
/// `plot` through `sx` / `sy`; small-multiple figures place several panels in one document.
/// The plot area is a `rect` of class `plot-area`, which the figure tests find.
public struct SVGAxes {
    public var frame: SVG.Rect
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var x: (lo: Double, hi: Double)
    public var y: (lo: Double, hi: Double)
    public var xSI: Bool
    public var ySI: Bool
    /// A second x axis along the top, in units of the bottom one times `factor` (tokens for
    /// steps); nil for none.
    public var top: (label: String, factor: Double)?
    /// False for bar charts, whose x axis carries category labels of their own.
    public var xTicks: Bool
    public private(set) var plot: SVG.Rect = .init(x: 0, y: 0, width: 1, height: 1)
    let yTickValues: [Double]
    let yTickLabels: [String]

    public static let titleSize = 13.0

    public init(frame: SVG.Rect, title: String, xLabel: String, yLabel: String, x: (Double, Double), y: (Double, Double),
                xSI: Bool = false, ySI: Bool = false, top: (label: String, factor: Double)? = nil, xTicks: Bool = true,
                bottomExtra: Double = 0) {
        self.frame = frame; self.title = title; self.xLabel = xLabel; self.yLabel = yLabel
        self.x = (x.0, x.1 > x.0 ? x.1 : x.0 + 1); self.y = (y.0, y.1 > y.0 ? y.1 : y.0 + max(abs(y.0) * 0.1, 1))
        self.xSI = xSI; self.ySI = ySI; self.top = top; self.xTicks = xTicks
        let topMargin = (title.isEmpty ? 8 : 26) + (top == nil ? 0 : 34.0)
        let bottom = (xTicks ? 34.0 : 20) + bottomExtra + (xLabel.isEmpty ? 0 : 4)
        let h = frame.height - topMargin - bottom
        yTickValues = Ticks.values(self.y.lo, self.y.hi, target: max(3, min(8, Int(h / 42))))
        yTickLabels = Ticks.labels(yTickValues, si: ySI)
        let labelW = yTickLabels.map { SVG.textWidth($0, size: 11) }.max() ?? 0
        let left = 8 + 14 + 6 + labelW + 6
        plot = SVG.Rect(x: frame.x + left, y: frame.y + topMargin, width: max(frame.width - left - 14, 10), height: max(h, 10))
    }

    public func sx(_ v: Double) -> Double { plot.x + (v - x.lo) / (x.hi - x.lo) * plot.width }
    public func sy(_ v: Double) -> Double { plot.y + (1 - (v - y.lo) / (y.hi - y.lo)) * plot.height }

    /// The clip path id of this panel's plot area (defined by `render`).
    public func clipID(_ id: String) -> String { "clip-\(id)" }

    /// Ticks along the bottom: about one per 70 px, fewer when the labels are wide.
    func xTickValues() -> ([Double], [String]) {
        var target = max(3, Int(plot.width / 70))
        while true {
            let v = Ticks.values(x.lo, x.hi, target: target), l = Ticks.labels(v, si: xSI)
            let widest = l.map { SVG.textWidth($0, size: 11) }.max() ?? 0
            if target <= 2 || Double(v.count) * (widest + 12) <= plot.width { return (v, l) }
            target -= 1
        }
    }

    /// Frame, grid, ticks, labels and the clip path; marks go on top of this.
    public func render(id: String) -> String {
        let f = SVG.f
        var s = "<g class=\"panel\">\n<defs><clipPath id=\"\(clipID(id))\"><rect x=\"\(f(plot.x))\" y=\"\(f(plot.y))\" width=\"\(f(plot.width))\" height=\"\(f(plot.height))\"/></clipPath></defs>\n"
        if !title.isEmpty {
            // Centred over the plot, but kept inside the panel when it is wider than the plot.
            let w = SVG.textWidth(title, size: Self.titleSize, bold: true)
            let cx = min(max(plot.midX, frame.x + w / 2 + 2), frame.maxX - w / 2 - 2)
            s += SVG.text(title, x: cx, y: frame.y + 16, anchor: "middle", size: Self.titleSize, weight: "bold") + "\n"
        }
        for (t, l) in zip(yTickValues, yTickLabels) {
            let yy = sy(t)
            s += "<line x1=\"\(f(plot.x))\" x2=\"\(f(plot.maxX))\" y1=\"\(f(yy))\" y2=\"\(f(yy))\" stroke=\"#e6e6e6\"/>"
            s += SVG.text(l, x: plot.x - 6, y: yy + 4, anchor: "end", size: 11, fill: "#333") + "\n"
        }
        if xTicks {
            let (xs, ls) = xTickValues()
            for (t, l) in zip(xs, ls) {
                let xx = sx(t)
                s += "<line x1=\"\(f(xx))\" x2=\"\(f(xx))\" y1=\"\(f(plot.y))\" y2=\"\(f(plot.maxY))\" stroke=\"#efefef\"/>"
                s += "<line x1=\"\(f(xx))\" x2=\"\(f(xx))\" y1=\"\(f(plot.maxY))\" y2=\"\(f(plot.maxY + 4))\" stroke=\"#333\"/>"
                s += SVG.text(l, x: xx, y: plot.maxY + 16, anchor: "middle", size: 11, fill: "#333") + "\n"
            }
        }
        if let top {
            let lo = x.lo * top.factor, hi = x.hi * top.factor
            var target = max(3, Int(plot.width / 70))
            var v = Ticks.values(lo, hi, target: target), l = Ticks.labels(v, si: true)
            while target > 2 && Double(v.count) * ((l.map { SVG.textWidth($0, size: 11) }.max() ?? 0) + 12) > plot.width {
                target -= 1; v = Ticks.values(lo, hi, target: target); l = Ticks.labels(v, si: true)
            }
            for (t, lab) in zip(v, l) {
                let xx = sx(t / top.factor)
                s += "<line x1=\"\(f(xx))\" x2=\"\(f(xx))\" y1=\"\(f(plot.y - 4))\" y2=\"\(f(plot.y))\" stroke=\"#333\"/>"
                s += SVG.text(lab, x: xx, y: plot.y - 7, anchor: "middle", size: 11, fill: "#333") + "\n"
            }
            s += SVG.text(top.label, x: plot.midX, y: plot.y - 22, anchor: "middle", size: 11, fill: "#555") + "\n"
        }
        s += "<rect class=\"plot-area\" x=\"\(f(plot.x))\" y=\"\(f(plot.y))\" width=\"\(f(plot.width))\" height=\"\(f(plot.height))\" fill=\"none\" stroke=\"#444\"/>\n"
        if !xLabel.isEmpty {
            s += SVG.text(xLabel, x: plot.midX, y: frame.maxY - 4, anchor: "middle", fill: "#222") + "\n"
        }
        if !yLabel.isEmpty {
            s += SVG.text(yLabel, x: frame.x + 18, y: plot.midY, anchor: "middle", rotate: -90, fill: "#222") + "\n"
        }
        return s + "</g>\n"
    }
}

/// A legend box: one row per entry, a swatch and a label, sized from the label widths
/// (`SVG.textWidth`), so it is as wide as its longest label needs and never clips. Figures
/// put it outside their plot areas and grow to hold it. A `rect` of class `legend-box`
/// bounds it, for the figure tests.
public struct SVGLegend {
    public enum Swatch {
        case line(color: String, dash: String? = nil, width: Double = 2, opacity: Double = 1)
        case marker(SVG.Marker, color: String)
        case lineMarker(color: String, dash: String?, marker: SVG.Marker, markerColor: String)
        case box(color: String)
        case errorBar(color: String)
        case none
    }
    public struct Entry {
        public var swatch: Swatch
        public var label: String
        public init(_ swatch: Swatch, _ label: String) { self.swatch = swatch; self.label = label }
    }
    public var title: String?
    public var entries: [Entry]
    public init(title: String? = nil, entries: [Entry]) { self.title = title; self.entries = entries }

    static let row = 18.0, pad = 8.0, swatch = 28.0
    var rows: Int { entries.count + (title == nil ? 0 : 1) }
    public var width: Double {
        let w = entries.map { SVG.textWidth($0.label) }.max() ?? 0
        let t = title.map { SVG.textWidth($0, bold: true) } ?? 0
        return 2 * Self.pad + max(Self.swatch + 6 + w, t)
    }
    public var height: Double { 2 * Self.pad + Double(rows) * Self.row - 2 }

    public func render(x: Double, y: Double) -> String {
        let f = SVG.f
        var s = "<g class=\"legend\">\n<rect class=\"legend-box\" x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(width))\" height=\"\(f(height))\" fill=\"white\" stroke=\"#ccc\"/>\n"
        var row = 0
        if let title {
            s += SVG.text(title, x: x + Self.pad, y: y + Self.pad + 12, weight: "bold") + "\n"
            row = 1
        }
        for e in entries {
            let base = y + Self.pad + Double(row) * Self.row + 12, mid = base - 4
            let x0 = x + Self.pad, x1 = x0 + Self.swatch
            switch e.swatch {
            case let .line(color, dash, width, opacity):
                s += "<line x1=\"\(f(x0))\" x2=\"\(f(x1))\" y1=\"\(f(mid))\" y2=\"\(f(mid))\" stroke=\"\(color)\" stroke-width=\"\(f(width))\""
                    + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + (opacity < 1 ? " stroke-opacity=\"\(opacity)\"" : "") + "/>"
            case let .marker(m, color):
                s += m.svg(x: (x0 + x1) / 2, y: mid, r: 4, fill: color)
            case let .lineMarker(color, dash, m, mc):
                s += "<line x1=\"\(f(x0))\" x2=\"\(f(x1))\" y1=\"\(f(mid))\" y2=\"\(f(mid))\" stroke=\"\(color)\" stroke-width=\"2\""
                    + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>"
                s += m.svg(x: (x0 + x1) / 2, y: mid, r: 4, fill: mc)
            case let .box(color):
                s += "<rect x=\"\(f(x0 + 6))\" y=\"\(f(mid - 6))\" width=\"14\" height=\"11\" fill=\"\(color)\"/>"
            case let .errorBar(color):
                let cx = (x0 + x1) / 2
                s += "<path d=\"M\(f(cx)),\(f(mid - 6))V\(f(mid + 6))M\(f(cx - 4)),\(f(mid - 6))H\(f(cx + 4))M\(f(cx - 4)),\(f(mid + 6))H\(f(cx + 4))\" stroke=\"\(color)\" stroke-width=\"1.3\" fill=\"none\"/>"
            case .none: break
            }
            s += SVG.text(e.label, x: x1 + 6, y: base) + "\n"
            row += 1
        }
        return s + "</g>\n"
    }
}

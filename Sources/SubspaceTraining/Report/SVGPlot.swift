import Foundation

/// Line charts as standalone SVG (no dependency): one panel (`SVGAxes`) with its series and
/// a legend outside the plot area, to its right, sized from the labels. `RunFigure` and the
/// suite's figures compose several panels with `draw(in:id:)`.
public struct SVGPlot {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        /// nil: `Palette.color(index)`.
        public var color: String?
        /// A stroke pattern ("6,3"); nil: solid.
        public var dash: String?
        public var width: Double
        public var opacity: Double
        /// Draw the polyline (false: markers only).
        public var line: Bool
        /// A marker on every point, filled with `markerColor` (default: the line's colour).
        public var marker: SVG.Marker?
        public var markerColor: String?
        /// Listed in the standalone legend.
        public var inLegend: Bool
        /// The width in px of the columns a long polyline is thinned to (`thin`).
        public var column = 1.0
        public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false, color: String? = nil,
                    width: Double = 1.6, opacity: Double = 1, line: Bool = true, marker: SVG.Marker? = nil,
                    markerColor: String? = nil, inLegend: Bool = true) {
            self.name = name; self.points = points; self.dash = dashed ? "6,3" : nil; self.color = color
            self.width = width; self.opacity = opacity; self.line = line; self.marker = marker
            self.markerColor = markerColor; self.inLegend = inLegend
        }
        var finite: [(x: Double, y: Double)] { points.filter { $0.x.isFinite && $0.y.isFinite } }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var xSI = false
    public var ySI = false
    /// A second x axis along the top (see `SVGAxes.top`).
    public var top: (label: String, factor: Double)?
    /// Fixed ranges; nil: from the data (y padded by 5%; x from 0 when the data starts near it).
    public var xDomain: (Double, Double)?
    public var yDomain: (Double, Double)?
    /// Legend rows; nil: one per series with `inLegend`.
    public var legend: SVGLegend?
    /// The panel's size; the standalone figure adds the legend's width to the right.
    public var width = 720.0, height = 440.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series
    }

    /// The colour of series i.
    func color(_ i: Int) -> String { series[i].color ?? Palette.color(i) }

    public func dataDomain() -> (x: (Double, Double), y: (Double, Double)) {
        let pts = series.flatMap(\.finite)
        var x0 = pts.map(\.x).min() ?? 0, x1 = pts.map(\.x).max() ?? 1
        if x0 > 0 && x0 <= 0.05 * (x1 - x0) { x0 = 0 }
        if x1 <= x0 { x1 = x0 + 1 }
        let y0 = pts.map(\.y).min() ?? 0, y1 = pts.map(\.y).max() ?? 1
        let pad = max((y1 - y0) * 0.05, abs(y1) * 1e-3, 1e-12)
        return (xDomain ?? (x0, x1), yDomain ?? (y0 - pad, y1 + pad))
    }

    /// The panel inside `frame`: axes, then every series clipped to the plot area. `id` must
    /// be unique in the document (it names the clip path).
    public func draw(in frame: SVG.Rect, id: String) -> (svg: String, axes: SVGAxes) {
        let d = dataDomain()
        let axes = SVGAxes(frame: frame, title: title, xLabel: xLabel, yLabel: yLabel, x: d.x, y: d.y, xSI: xSI, ySI: ySI, top: top)
        var s = axes.render(id: id)
        s += "<g clip-path=\"url(#\(axes.clipID(id)))\">\n"
        for (i, ser) in series.enumerated() {
            let pts = ser.finite
            guard !pts.isEmpty else { continue }
            let c = color(i)
            if ser.line && pts.count > 1 {
                let path = Self.thin(pts.map { (axes.sx($0.x), axes.sy($0.y)) }, column: ser.column).map { "\(SVG.f($0.0)),\(SVG.f($0.1))" }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"\(SVG.f(ser.width))\" stroke-linejoin=\"round\""
                s += (ser.dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + (ser.opacity < 1 ? " stroke-opacity=\"\(ser.opacity)\"" : "")
                s += " points=\"\(path)\"/>\n"
            }
            if let m = ser.marker {
                for p in pts { s += m.svg(x: axes.sx(p.x), y: axes.sy(p.y), r: 3.5, fill: ser.markerColor ?? c) }
                s += "\n"
            }
        }
        return (s + "</g>\n", axes)
    }

    /// Screen points reduced to at most the lowest and highest (in drawing order) of each
    /// `column` px wide column: a polyline of thousands of steps drawn in a few hundred pixels
    /// looks the same (a noisy band keeps its extremes) at a fraction of the file size.
    static func thin(_ p: [(Double, Double)], column: Double = 1) -> [(Double, Double)] {
        guard p.count > 300 else { return p }
        var out: [(Double, Double)] = []
        var i = 0
        while i < p.count {
            let col = (p[i].0 / column).rounded(.down)
            var j = i
            while j + 1 < p.count && (p[j + 1].0 / column).rounded(.down) == col { j += 1 }
            if j - i < 2 { out += p[i...j] } else {
                let g = p[i...j]
                let lo = g.indices.min { p[$0].1 < p[$1].1 }!, hi = g.indices.max { p[$0].1 < p[$1].1 }!
                out += Set([i, lo, hi, j]).sorted().map { p[$0] }
            }
            i = j + 1
        }
        return out
    }

    /// The default legend: one row per series in the legend.
    func defaultLegend() -> SVGLegend {
        SVGLegend(entries: series.indices.filter { series[$0].inLegend }.map { i in
            let s = series[i]
            if let m = s.marker {
                return s.line ? .init(.lineMarker(color: color(i), dash: s.dash, marker: m, markerColor: s.markerColor ?? color(i)), s.name)
                    : .init(.marker(m, color: s.markerColor ?? color(i)), s.name)
            }
            return .init(.line(color: color(i), dash: s.dash), s.name)
        })
    }

    public func render() -> String {
        let legend = self.legend ?? defaultLegend()
        let (body, axes) = draw(in: SVG.Rect(x: 0, y: 0, width: width, height: height), id: "p0")
        let lx = width + 4, ly = axes.plot.y
        let totalW = lx + legend.width + 10, totalH = max(height, ly + legend.height + 10)
        return SVG.document(width: totalW, height: totalH, body: body + (legend.entries.isEmpty ? "" : legend.render(x: lx, y: ly)))
    }
}

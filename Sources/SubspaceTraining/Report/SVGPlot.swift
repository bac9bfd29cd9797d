import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// Line charts as standalone SVG (no dependencies): loss curves of one or several runs.
public struct SVGPlot {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var dashed: Bool
        public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false) {
            self.name = name; self.points = points; self.dashed = dashed
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var width = 720.0, height = 440.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series
    }

    public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    public static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// "Nice" tick values covering [lo, hi].
    public static func ticks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
        let span = max(hi - lo, 1e-12)
        let raw = span / Double(count)
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        var t = ceil(lo / step) * step
        var out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(t); t += step }
        return out
    }

    public func render() -> String {
        // The legend column widens for long series names (about 6.6 px a character at 12 px).
        let longest = Double(series.map(\.name.count).max() ?? 0)
        let left = 70.0, right = max(170.0, 50 + 6.6 * longest), top = 40.0, bottom = 50.0
        let width = self.width + right - 170
        let pw = width - left - right, ph = height - top - bottom
        let pts = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        let x0 = pts.map(\.x).min() ?? 0, x1 = max(pts.map(\.x).max() ?? 1, x0 + 1e-9)
        let y0 = pts.map(\.y).min() ?? 0, y1 = max(pts.map(\.y).max() ?? 1, y0 + 1e-9)
        let pad = (y1 - y0) * 0.05
        let ylo = y0 - pad, yhi = y1 + pad
        func sx(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func sy(_ y: Double) -> Double { top + (1 - (y - ylo) / (yhi - ylo)) * ph }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func label(_ v: Double) -> String { abs(v) >= 1e4 ? String(format: "%.3g", v) : String(format: "%g", (v * 1000).rounded() / 1000) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(f(left + pw / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(Self.escape(title))</text>\n"
        for t in Self.ticks(ylo, yhi) {
            s += "<line x1=\"\(f(left))\" x2=\"\(f(left + pw))\" y1=\"\(f(sy(t)))\" y2=\"\(f(sy(t)))\" stroke=\"#e5e5e5\"/>"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(sy(t) + 4))\" text-anchor=\"end\">\(label(t))</text>\n"
        }
        for t in Self.ticks(x0, x1) {
            s += "<line x1=\"\(f(sx(t)))\" x2=\"\(f(sx(t)))\" y1=\"\(f(top))\" y2=\"\(f(top + ph))\" stroke=\"#f0f0f0\"/>"
            s += "<text x=\"\(f(sx(t)))\" y=\"\(f(top + ph + 16))\" text-anchor=\"middle\">\(label(t))</text>\n"
        }
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s += "<text transform=\"translate(16,\(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(Self.escape(yLabel))</text>\n"
        for (i, ser) in series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let path = ser.points.filter { $0.x.isFinite && $0.y.isFinite }.map { "\(f(sx($0.x))),\(f(sy($0.y)))" }.joined(separator: " ")
            if !path.isEmpty {
                s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\"\(ser.dashed ? " stroke-dasharray=\"5,3\"" : "") points=\"\(path)\"/>\n"
            }
            let ly = top + 14 + Double(i) * 18
            s += "<line x1=\"\(f(left + pw + 12))\" x2=\"\(f(left + pw + 36))\" y1=\"\(f(ly - 4))\" y2=\"\(f(ly - 4))\" stroke=\"\(color)\" stroke-width=\"2\"\(ser.dashed ? " stroke-dasharray=\"5,3\"" : "")/>"
            s += "<text x=\"\(f(left + pw + 40))\" y=\"\(f(ly))\">\(Self.escape(ser.name))</text>\n"
        }
        return s + "</svg>\n"
    }
}

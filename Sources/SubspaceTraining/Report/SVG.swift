import Foundation

/// The small kit every figure is drawn with: geometry, text measurement, escaping, the
/// palette, tick choice and labelling, and TensorBoard's smoothing. Figures are hand-written
/// SVG 1.1 (no dependency, readable in a browser, on GitHub and by `rsvg-convert`); nothing
/// here prints.
public enum SVG {
    /// An axis-aligned rectangle in SVG user units (y grows downwards).
    public struct Rect: Equatable, Sendable {
        public var x, y, width, height: Double
        public init(x: Double, y: Double, width: Double, height: Double) {
            self.x = x; self.y = y; self.width = width; self.height = height
        }
        public var maxX: Double { x + width }
        public var maxY: Double { y + height }
        public var midX: Double { x + width / 2 }
        public var midY: Double { y + height / 2 }
        /// True when the interiors overlap (touching edges do not count).
        public func intersects(_ o: Rect) -> Bool {
            x < o.maxX && o.x < maxX && y < o.maxY && o.y < maxY
        }
        public func contains(_ o: Rect, tolerance: Double = 0.5) -> Bool {
            o.x >= x - tolerance && o.y >= y - tolerance && o.maxX <= maxX + tolerance && o.maxY <= maxY + tolerance
        }
        public func insetBy(_ d: Double) -> Rect { Rect(x: x - d, y: y - d, width: width + 2 * d, height: height + 2 * d) }
    }

    public static let fontFamily = "DejaVu Sans, Verdana, Arial, sans-serif"

    /// Advance widths of DejaVu Sans in em (its hmtx table, 2,048 units an em), for the
    /// characters labels use; others count as 0.7 em. DejaVu Sans is the widest of the common
    /// sans-serif faces (Verdana is about as wide; Helvetica and Arial are about 10% narrower),
    /// and it is what `rsvg-convert` on Debian draws with, so a box sized with these widths
    /// holds its text wherever the SVG is shown.
    static let advance: [Character: Double] = {
        var w: [Character: Double] = [:]
        for c in "0123456789" { w[c] = 0.636 }
        let lower: [(String, Double)] = [
            ("a", 0.613), ("b", 0.635), ("c", 0.550), ("d", 0.635), ("e", 0.615), ("f", 0.352), ("g", 0.635),
            ("h", 0.634), ("i", 0.278), ("j", 0.278), ("k", 0.579), ("l", 0.278), ("m", 0.974), ("n", 0.634),
            ("o", 0.612), ("p", 0.635), ("q", 0.635), ("r", 0.411), ("s", 0.521), ("t", 0.392), ("u", 0.634),
            ("v", 0.592), ("w", 0.818), ("x", 0.592), ("y", 0.592), ("z", 0.525),
            ("A", 0.684), ("B", 0.686), ("C", 0.698), ("D", 0.770), ("E", 0.632), ("F", 0.575), ("G", 0.775),
            ("H", 0.752), ("I", 0.295), ("J", 0.295), ("K", 0.656), ("L", 0.557), ("M", 0.863), ("N", 0.748),
            ("O", 0.787), ("P", 0.603), ("Q", 0.787), ("R", 0.695), ("S", 0.635), ("T", 0.611), ("U", 0.732),
            ("V", 0.684), ("W", 0.989), ("X", 0.685), ("Y", 0.611), ("Z", 0.685),
            (" ", 0.318), (".", 0.318), (",", 0.318), (":", 0.337), (";", 0.337), ("-", 0.361), ("_", 0.500),
            ("(", 0.390), (")", 0.390), ("[", 0.390), ("]", 0.390), ("/", 0.337), ("%", 0.950), ("+", 0.838),
            ("=", 0.838), ("×", 0.838), ("±", 0.838), ("·", 0.318), ("'", 0.275), ("\"", 0.460), ("*", 0.500),
            ("<", 0.838), (">", 0.838), ("#", 0.838), ("&", 0.780), ("~", 0.838), ("|", 0.337), ("!", 0.400),
            ("?", 0.531), ("@", 1.000), ("●", 0.800), ("—", 1.000), ("–", 0.500),
        ]
        for (s, v) in lower { w[Character(s)] = v }
        return w
    }()

    /// Estimated width in user units of `text` drawn at `size` px (see `advance`); bold
    /// DejaVu Sans is up to 15% wider.
    public static func textWidth(_ text: String, size: Double = 12, bold: Bool = false) -> Double {
        text.reduce(0.0) { $0 + (advance[$1] ?? 0.7) } * size * (bold ? 1.15 : 1)
    }

    /// A number for an attribute: one decimal is finer than any screen needs.
    public static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    public static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// A text element; `anchor` is start, middle or end; `rotate` in degrees about (x, y).
    public static func text(_ s: String, x: Double, y: Double, anchor: String = "start", size: Double? = nil,
                            rotate: Double? = nil, fill: String? = nil, weight: String? = nil, cls: String? = nil) -> String {
        var a = ""
        if let rotate {
            a += " transform=\"translate(\(f(x)),\(f(y))) rotate(\(f(rotate)))\" x=\"0\" y=\"0\""
        } else {
            a += " x=\"\(f(x))\" y=\"\(f(y))\""
        }
        if anchor != "start" { a += " text-anchor=\"\(anchor)\"" }
        if let size { a += " font-size=\"\(f(size))\"" }
        if let fill { a += " fill=\"\(fill)\"" }
        if let weight { a += " font-weight=\"\(weight)\"" }
        if let cls { a += " class=\"\(cls)\"" }
        return "<text\(a)>\(escape(s))</text>"
    }

    /// A whole document: the root with a viewBox (so it scales), a white background, the font.
    public static func document(width: Double, height: Double, body: String) -> String {
        let w = Int(width.rounded(.up)), h = Int(height.rounded(.up))
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" viewBox=\"0 0 \(w) \(h)\" "
            + "font-family=\"\(fontFamily)\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + body + "</svg>\n"
    }

    /// A marker shape centred on (x, y).
    public enum Marker: Sendable {
        case circle, square, triangle, diamond
        /// Shapes cycled per decade of series, so a colour shared by two series (index i and
        /// i + 20) still differs by shape.
        public static func forSeries(_ i: Int) -> Marker { [.circle, .square, .triangle, .diamond][(i / Palette.colors.count) % 4] }
        public func svg(x: Double, y: Double, r: Double, fill: String, stroke: String = "white") -> String {
            let common = "fill=\"\(fill)\" stroke=\"\(stroke)\" stroke-width=\"0.8\""
            switch self {
            case .circle: return "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"\(f(r))\" \(common)/>"
            case .square: return "<rect x=\"\(f(x - r))\" y=\"\(f(y - r))\" width=\"\(f(2 * r))\" height=\"\(f(2 * r))\" \(common)/>"
            case .triangle:
                return "<polygon points=\"\(f(x)),\(f(y - r * 1.2)) \(f(x + r * 1.1)),\(f(y + r * 0.8)) \(f(x - r * 1.1)),\(f(y + r * 0.8))\" \(common)/>"
            case .diamond:
                return "<polygon points=\"\(f(x)),\(f(y - r * 1.3)) \(f(x + r * 1.1)),\(f(y)) \(f(x)),\(f(y + r * 1.3)) \(f(x - r * 1.1)),\(f(y))\" \(common)/>"
            }
        }
    }
}

/// Series colours for up to 20 series that stay apart. The first ten are Tableau 10
/// (matplotlib's `tab10`: ten hues, the most familiar categorical palette). Tableau 20's
/// other half, the light partners of those ten, is too close to itself (light blue and light
/// cyan are 6 CIELAB units apart) and faint on white, so the next ten were picked greedily,
/// each the candidate (from ColorBrewer's Dark2, Set1 and Paired, d3's tab20b and the CSS
/// named colours, lightness L* 30 to 72 so lines read on white) farthest in CIELAB from every
/// colour before it. Every pair of the 20 is at least 25 CIELAB units (CIE76) apart, about as
/// far as Tableau 10's own closest pair (27.7), and in this order neighbours are too.
/// Series 11 to 20 are also dashed (`dash`), so a reader can tell the decades apart; past
/// 20 the colours repeat with another marker shape (`SVG.Marker.forSeries`). Figures with
/// more series than that should be small multiples.
public enum Palette {
    public static let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
        "#a6761d", "#556b2f", "#ff1493", "#1b9e77", "#8b008b", "#b03060", "#9e9ac8", "#ff4500", "#7b4173", "#008080",
    ]
    public static func color(_ i: Int) -> String { colors[((i % colors.count) + colors.count) % colors.count] }
    /// The stroke pattern of series i: solid for the first ten, dashed for the next ten.
    public static func dash(_ i: Int) -> String? { (i % colors.count) >= 10 ? "6,3" : nil }

    static func rgb(_ hex: String) -> (Double, Double, Double) {
        let h = hex.hasPrefix("#") ? String(hex.dropFirst()) : hex
        let v = Int(h, radix: 16) ?? 0
        return (Double((v >> 16) & 255), Double((v >> 8) & 255), Double(v & 255))
    }
    static func hex(_ c: (Double, Double, Double)) -> String {
        func b(_ x: Double) -> Int { max(0, min(255, Int(x.rounded()))) }
        return String(format: "#%02x%02x%02x", b(c.0), b(c.1), b(c.2))
    }
    /// The same hue, darker: each channel scaled by 1 - `amount` (HSV value down, hue and
    /// saturation kept).
    public static func shade(_ hex: String, _ amount: Double) -> String {
        let (r, g, b) = rgb(hex), k = 1 - amount
        return Self.hex((r * k, g * k, b * k))
    }
    /// The validation shade of series i's colour: 35% darker, so validation markers read as
    /// the same run's, yet stand apart from its training curve.
    public static func validation(_ i: Int) -> String { shade(color(i), 0.35) }
}

/// Axis ticks: "nice" steps of 1, 2 or 5 times a power of ten, and labels written with the
/// decimals the step needs (no 0.30000000000000004), optionally with SI suffixes (1.2M tokens).
public enum Ticks {
    /// The nice step that cuts [lo, hi] into about `target` intervals (at most `target`).
    public static func step(_ lo: Double, _ hi: Double, target: Int = 5) -> Double {
        let span = max(hi - lo, abs(hi) * 1e-9, 1e-12)
        let raw = span / Double(max(target, 1))
        let mag = pow(10, floor(log10(raw)))
        return ([1.0, 2, 5, 10].first { $0 * mag >= raw * (1 - 1e-9) } ?? 10) * mag
    }

    /// The multiples of `step(lo, hi)` inside [lo, hi].
    public static func values(_ lo: Double, _ hi: Double, target: Int = 5) -> [Double] {
        guard lo.isFinite, hi.isFinite, hi >= lo else { return [] }
        let s = step(lo, hi, target: target)
        var out: [Double] = []
        var k = (lo / s - 1e-9).rounded(.up)
        while k * s <= hi + s * 1e-9 && out.count < 100 { out.append(k * s == 0 ? 0 : k * s); k += 1 }
        return out
    }

    /// [lo, hi] widened outwards to the nearest ticks, so the axis starts and ends on a label.
    public static func niceDomain(_ lo: Double, _ hi: Double, target: Int = 5) -> (Double, Double) {
        let s = step(lo, hi, target: target)
        return ((lo / s + 1e-9).rounded(.down) * s, (hi / s - 1e-9).rounded(.up) * s)
    }

    /// Decimals that step `s` needs (2.5e-3 needs 4).
    static func decimals(_ s: Double) -> Int {
        var d = 0
        while d < 12 && abs(s * pow(10, Double(d)) - (s * pow(10, Double(d))).rounded()) > 1e-6 * max(1, s * pow(10, Double(d))) { d += 1 }
        return d
    }

    /// Labels for `values` (ticks of one axis, spaced by `step`). With `si`, values are
    /// divided by the largest power of 1,000 not above the largest magnitude and suffixed
    /// (k, M, G, T): 0, 500k, 1M, 1.5M share one suffix per axis, with the decimals the step
    /// needs at that scale (0, 0.5M, 1.0M, 1.5M). Without, plain decimals, or "2e-5" style when
    /// the step is below 1e-3 (learning rates).
    public static func labels(_ values: [Double], si: Bool = false) -> [String] {
        guard !values.isEmpty else { return [] }
        let s = values.count > 1 ? abs(values[1] - values[0]) : max(abs(values[0]), 1)
        let big = values.map(abs).max() ?? 0
        if si {
            let suffixes = ["", "k", "M", "G", "T"]
            var e = 0
            while e < suffixes.count - 1 && big >= pow(1000, Double(e + 1)) { e += 1 }
            let scale = pow(1000, Double(e)), d = decimals(s / scale)
            return values.map { v in v == 0 ? "0" : String(format: "%.\(d)f", v / scale) + suffixes[e] }
        }
        if s < 1e-3 {
            return values.map { v in
                if v == 0 { return "0" }
                let e = Int(floor(log10(abs(v)) + 1e-9)), m = v / pow(10, Double(e))
                let md = decimals((s / pow(10, Double(e))))
                return String(format: "%.\(min(md, 3))f", m) + "e\(e)"
            }
        }
        let d = decimals(s)
        return values.map { String(format: "%.\(d)f", $0 == 0 ? 0 : $0) }
    }
}

/// TensorBoard's scalar smoothing: an exponential moving average with debiasing
/// (`last = w * last + (1 - w) * y`, shown as `last / (1 - w^n)` after n finite points), so the
/// curve starts at the first value instead of rising from 0; non-finite values pass through
/// and do not update the average.
public enum Smoothing {
    public static func ema(_ ys: [Double], weight w: Double) -> [Double] {
        var last = 0.0, n = 0.0
        return ys.map { y in
            guard y.isFinite else { return y }
            last = last * w + (1 - w) * y
            n += 1
            let debias = w == 1 ? 1 : 1 - pow(w, n)
            return last / debias
        }
    }

    /// The weight for a curve of `points` steps: 1 - 60 / points, kept in [0.6, 0.99]. That is
    /// 0.9 for the default 600-step run and 0.97 for 2,000 steps: the average's time constant,
    /// 1 / (1 - w), is a sixtieth of the run, so every run looks equally smooth at the same
    /// figure width. TensorBoard's slider applies one weight per logged point whatever the
    /// run's length (default 0.6, the floor here: short runs are barely smoothed).
    public static func weight(points: Int) -> Double {
        min(0.99, max(0.6, 1 - 60 / Double(max(points, 1))))
    }
}

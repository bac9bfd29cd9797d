import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// A labelled scatter panel with its Pareto front, for trade-offs where less is better on
/// both axes (validation loss against memory). Every point carries its label; the front (the
/// points no other point beats on both axes) is joined by a staircase and its points are
/// ringed. Labels are placed greedily (`placeLabels`): front points first, each at the first
/// of 8 positions around its point, then 8 farther ones with a leader line, that overlaps
/// no point, no label already placed and stays inside the plot; a label with no free
/// position goes to its first one (best effort: with dozens of points in one corner some may
/// still touch).
public struct SVGScatter {
    public struct Point {
        public var label: String
        public var x: Double
        public var y: Double
        public var color: String
        public var marker: SVG.Marker
        public init(label: String, x: Double, y: Double, color: String, marker: SVG.Marker = .circle) {
            self.label = label; self.x = x; self.y = y; self.color = color; self.marker = marker
        }
    }
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var points: [Point]
    public init(title: String, xLabel: String, yLabel: String, points: [Point]) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.points = points.filter { $0.x.isFinite && $0.y.isFinite }
    }

    /// Indices of the points on the lower-left Pareto front, by increasing x: a point is on
    /// it when no other point is at most as large on both axes and smaller on one.
    public static func paretoFront(_ p: [(x: Double, y: Double)]) -> [Int] {
        p.indices.filter { i in
            !p.indices.contains { j in j != i && p[j].x <= p[i].x && p[j].y <= p[i].y && (p[j].x < p[i].x || p[j].y < p[i].y) }
        }.sorted { p[$0].x < p[$1].x || (p[$0].x == p[$1].x && p[$0].y < p[$1].y) }
    }

    static let labelSize = 11.0

    /// Label boxes for `anchors` (screen points) of labels `texts`, in `priority` order,
    /// avoiding `obstacles` and each other inside `bounds`; each with the anchor's text
    /// position (x, baseline y, text-anchor) and whether it needs a leader line.
    static func placeLabels(anchors: [(Double, Double)], texts: [String], priority: [Int], bounds: SVG.Rect,
                            obstacles: [SVG.Rect], bold: Set<Int> = []) -> [(box: SVG.Rect, x: Double, y: Double, anchor: String, leader: Bool)?] {
        var out = [(box: SVG.Rect, x: Double, y: Double, anchor: String, leader: Bool)?](repeating: nil, count: anchors.count)
        var taken = obstacles
        let h = labelSize + 2
        for i in priority {
            let (px, py) = anchors[i], w = SVG.textWidth(texts[i], size: labelSize, bold: bold.contains(i))
            var candidates: [(SVG.Rect, Double, Double, String, Bool)] = []
            for (dist, leader) in [(9.0, false), (24.0, true), (40.0, true)] {
                let d = dist
                candidates += [
                    (SVG.Rect(x: px + d, y: py - h / 2, width: w, height: h), px + d, py + 4, "start", leader),
                    (SVG.Rect(x: px - d - w, y: py - h / 2, width: w, height: h), px - d, py + 4, "end", leader),
                    (SVG.Rect(x: px - w / 2, y: py - d - h, width: w, height: h), px, py - d - 3, "middle", leader),
                    (SVG.Rect(x: px - w / 2, y: py + d, width: w, height: h), px, py + d + h - 3, "middle", leader),
                    (SVG.Rect(x: px + d * 0.7, y: py - d * 0.7 - h, width: w, height: h), px + d * 0.7, py - d * 0.7 - 3, "start", leader),
                    (SVG.Rect(x: px + d * 0.7, y: py + d * 0.7, width: w, height: h), px + d * 0.7, py + d * 0.7 + h - 3, "start", leader),
                    (SVG.Rect(x: px - d * 0.7 - w, y: py - d * 0.7 - h, width: w, height: h), px - d * 0.7, py - d * 0.7 - 3, "end", leader),
                    (SVG.Rect(x: px - d * 0.7 - w, y: py + d * 0.7, width: w, height: h), px - d * 0.7, py + d * 0.7 + h - 3, "end", leader),
                ]
            }
            // The first free position; failing that, the inside one overlapping least.
            func overlap(_ r: SVG.Rect) -> Double {
                taken.reduce(0) { acc, t in
                    acc + max(0, min(r.maxX, t.maxX) - max(r.x, t.x)) * max(0, min(r.maxY, t.maxY) - max(r.y, t.y))
                }
            }
            let inside = candidates.filter { bounds.contains($0.0, tolerance: 0) }
            let fit = inside.first { c in !taken.contains { $0.intersects(c.0) } }
                ?? inside.min { overlap($0.0) < overlap($1.0) } ?? candidates[0]
            out[i] = (fit.0, fit.1, fit.2, fit.3, fit.4)
            taken.append(fit.0)
        }
        return out
    }

    /// The panel inside `frame`.
    public func draw(in frame: SVG.Rect, id: String) -> (svg: String, axes: SVGAxes) {
        let f = SVG.f
        let xs = points.map(\.x), ys = points.map(\.y)
        func padded(_ v: [Double], _ k: Double) -> (Double, Double) {
            let lo = v.min() ?? 0, hi = v.max() ?? 1, pad = max((hi - lo) * k, abs(hi) * 0.02, 1e-9)
            return (lo - pad, hi + pad)
        }
        let axes = SVGAxes(frame: frame, title: title, xLabel: xLabel, yLabel: yLabel, x: padded(xs, 0.12), y: padded(ys, 0.1))
        var s = axes.render(id: id)
        let front = Self.paretoFront(points.map { ($0.x, $0.y) })
        if front.count > 1 {
            // The staircase: from each front point right to the next one's x, then down.
            var d = "M\(f(axes.sx(points[front[0]].x))),\(f(axes.sy(points[front[0]].y)))"
            for k in front.dropFirst() { d += "H\(f(axes.sx(points[k].x)))V\(f(axes.sy(points[k].y)))" }
            s += "<path class=\"pareto-front\" d=\"\(d)\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.2\" stroke-dasharray=\"4,3\"/>\n"
        }
        let screen = points.map { (axes.sx($0.x), axes.sy($0.y)) }
        for k in front { s += "<circle cx=\"\(f(screen[k].0))\" cy=\"\(f(screen[k].1))\" r=\"8\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.2\"/>" }
        for (p, (x, y)) in zip(points, screen) { s += p.marker.svg(x: x, y: y, r: 5, fill: p.color, stroke: "#222") }
        s += "\n"
        let priority = front + points.indices.filter { !front.contains($0) }
        // Points (ringed ones wider) and the front's segments are obstacles for labels.
        var obstacles = screen.indices.map { k -> SVG.Rect in
            let r = front.contains(k) ? 9.0 : 6.0
            return SVG.Rect(x: screen[k].0 - r, y: screen[k].1 - r, width: 2 * r, height: 2 * r)
        }
        for (a, b) in zip(front, front.dropFirst()) {
            let (ax, ay) = screen[a], (bx, by) = screen[b]
            obstacles.append(SVG.Rect(x: min(ax, bx), y: ay - 1.5, width: abs(bx - ax), height: 3))
            obstacles.append(SVG.Rect(x: bx - 1.5, y: min(ay, by), width: 3, height: abs(by - ay)))
        }
        let placed = Self.placeLabels(anchors: screen, texts: points.map(\.label), priority: priority,
                                      bounds: axes.plot.insetBy(-2), obstacles: obstacles, bold: Set(front))
        for (i, pl) in placed.enumerated() {
            guard let pl else { continue }
            if pl.leader {
                let tx = min(max(screen[i].0, pl.box.x), pl.box.maxX), ty = min(max(screen[i].1, pl.box.y), pl.box.maxY)
                s += "<line x1=\"\(f(screen[i].0))\" y1=\"\(f(screen[i].1))\" x2=\"\(f(tx))\" y2=\"\(f(ty))\" stroke=\"#999\" stroke-width=\"0.8\"/>"
            }
            s += SVG.text(points[i].label, x: pl.x, y: pl.y, anchor: pl.anchor, size: Self.labelSize, weight: front.contains(i) ? "bold" : nil, cls: "point-label") + "\n"
        }
        return (s, axes)
    }
}

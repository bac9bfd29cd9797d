import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import Subspace
@testable import SubspaceTraining
@testable import SubspaceBench

/// The figures: ticks, smoothing, palette, Pareto front and label placement as units; every
/// figure parsed as XML and checked for layout (every text inside the canvas, no two texts
/// overlapping, legends clear of plot areas); and, where Debian's `rsvg-convert`
/// (librsvg2-bin) is installed, rendered to PNG under `$TMPDIR/subspace-figures/` for a
/// person to look at.
@Suite struct FigureTests {
    // MARK: - Units

    @Test func ticksAreOneTwoFiveWithCleanLabels() {
        #expect(Ticks.values(0, 4.1e6) == [0, 1e6, 2e6, 3e6, 4e6])
        #expect(Ticks.labels(Ticks.values(0, 4.1e6), si: true) == ["0", "1M", "2M", "3M", "4M"])
        #expect(Ticks.labels([0, 5e5, 1e6, 1.5e6], si: true) == ["0", "0.5M", "1.0M", "1.5M"])
        #expect(Ticks.labels([2000, 3000, 4000], si: true) == ["2k", "3k", "4k"])
        #expect(Ticks.labels([0.1, 0.2, 0.30000000000000004]) == ["0.1", "0.2", "0.3"])
        #expect(Ticks.labels([0, 1e-4, 2e-4, 3e-4]) == ["0", "1e-4", "2e-4", "3e-4"])
        #expect(Ticks.labels([4, 4.5, 5]) == ["4.0", "4.5", "5.0"])
        for (lo, hi) in [(0.0, 1.0), (3.2, 8.4), (0, 0.003), (257, 309), (1, 2000), (-5, 17), (0, 4_096_000)] {
            for target in 2...8 {
                let v = Ticks.values(lo, hi, target: target)
                #expect(!v.isEmpty && v.count <= target + 1, "\(lo)...\(hi) target \(target): \(v)")
                let step = Ticks.step(lo, hi, target: target)
                let m = step / pow(10, floor(log10(step)))
                #expect([1, 2, 5].contains { abs(m - $0) < 1e-9 }, "step \(step) is not 1, 2 or 5 x 10^k")
                #expect(v.allSatisfy { $0 >= lo - 1e-9 && $0 <= hi + 1e-9 })
            }
        }
    }

    @Test func smoothingIsTensorBoardsDebiasedEMA() {
        let s = Smoothing.ema([1, 2, .nan, 4], weight: 0.5)
        #expect(s[0] == 1, "debiased: starts at the first value")
        #expect(abs(s[1] - 1.25 / 0.75) < 1e-12)
        #expect(s[2].isNaN, "non-finite values pass through")
        #expect(abs(s[3] - (1.25 * 0.5 + 2) / 0.875) < 1e-12, "and do not update the average")
        #expect(Smoothing.ema([3, 3, 3, 3], weight: 0.97).allSatisfy { abs($0 - 3) < 1e-12 })
        #expect(abs(Smoothing.weight(points: 600) - 0.9) < 1e-12 && abs(Smoothing.weight(points: 2000) - 0.97) < 1e-12)
        #expect(Smoothing.weight(points: 20) == 0.6 && Smoothing.weight(points: 1_000_000) == 0.99)
    }

    static func hsv(_ hex: String) -> (h: Double, s: Double, v: Double) {
        let (r, g, b) = Palette.rgb(hex)
        let mx = max(r, g, b), mn = min(r, g, b), d = mx - mn
        var h = 0.0
        if d > 0 {
            if mx == r { h = (g - b) / d } else if mx == g { h = (b - r) / d + 2 } else { h = (r - g) / d + 4 }
            h = (h * 60 + 360).truncatingRemainder(dividingBy: 360)
        }
        return (h, mx == 0 ? 0 : d / mx, mx / 255)
    }

    /// CIELAB (D65) of a hex colour.
    static func lab(_ hex: String) -> (Double, Double, Double) {
        let (r8, g8, b8) = Palette.rgb(hex)
        func lin(_ c: Double) -> Double { let c = c / 255; return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4) }
        let r = lin(r8), g = lin(g8), b = lin(b8)
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, y = 0.2126 * r + 0.7152 * g + 0.0722 * b
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
        func f(_ t: Double) -> Double { t > 0.008856 ? pow(t, 1.0 / 3) : 7.787 * t + 16.0 / 116 }
        return (116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z)))
    }

    @Test func paletteStaysDistinctForTwentySeries() {
        let c = Palette.colors
        #expect(Set(c).count == 20)
        func dE(_ a: String, _ b: String) -> Double {
            let p = Self.lab(a), q = Self.lab(b)
            return ((p.0 - q.0) * (p.0 - q.0) + (p.1 - q.1) * (p.1 - q.1) + (p.2 - q.2) * (p.2 - q.2)).squareRoot()
        }
        // Every pair at least 25 CIELAB units apart (Tableau 10's closest pair: 27.7), and
        // every colour dark enough to read as a line on white (L* at most 75: Tableau's olive).
        for i in 0..<20 {
            #expect(Self.lab(c[i]).0 <= 75, "\(c[i]) too light")
            for j in (i + 1)..<20 { #expect(dE(c[i], c[j]) >= 25, "\(c[i]) and \(c[j]) too close: \(dE(c[i], c[j]))") }
        }
        // The second ten are dashed.
        #expect((0..<10).allSatisfy { Palette.dash($0) == nil } && (10..<20).allSatisfy { Palette.dash($0) != nil })
        // Validation markers: the same hue, darker.
        for i in 0..<20 where Self.hsv(c[i]).s > 0.05 {
            let a = Self.hsv(c[i]), b = Self.hsv(Palette.validation(i))
            #expect(abs(a.h - b.h) < 2 && b.v < a.v * 0.7, "validation shade of \(c[i])")
        }
    }

    @Test func paretoFrontAndLabels() {
        let xs: [Double] = [40, 24, 1.8, 0.1, 28, 23.8, 5.9], ys: [Double] = [4.5, 4.1, 4.14, 4.47, 4.19, 4.097, 4.119]
        let pts: [(x: Double, y: Double)] = zip(xs, ys).map { (x: $0, y: $1) }
        #expect(SVGScatter.paretoFront(pts) == [3, 2, 6, 5])
        // Crowded anchors: the placed labels overlap no anchor and no other label.
        let anchors: [(Double, Double)] = (0..<8).map { (k: Int) -> (Double, Double) in
            let x: Double = 200 + Double(k % 4) * 30, y: Double = 200 + Double(k / 4) * 20
            return (x, y)
        }
        let texts = (0..<8).map { "method-\($0)" }
        let obstacles = anchors.map { SVG.Rect(x: $0.0 - 6, y: $0.1 - 6, width: 12, height: 12) }
        let placed = SVGScatter.placeLabels(anchors: anchors, texts: texts, priority: Array(0..<8),
                                            bounds: .init(x: 0, y: 0, width: 600, height: 400), obstacles: obstacles).map { $0!.box }
        for i in placed.indices {
            #expect(!obstacles.contains { $0.intersects(placed[i]) })
            for j in placed.indices where j > i { #expect(!placed[i].intersects(placed[j])) }
        }
    }

    // MARK: - Figures, from synthetic runs

    static func run(_ seed: Int, steps: Int = 300, tokensPerStep: Int = 2048, evalEvery: Int = 50) -> [StepMetrics] {
        var g = UInt64(seed + 1) &* 0x9E3779B97F4A7C15
        func noise() -> Double { g ^= g << 13; g ^= g >> 7; g ^= g << 17; return Double(g % 10_000) / 10_000 - 0.5 }
        return (1...steps).map { s in
            let base = 4 + 4.3 * exp(-Double(s) / 60) + 0.05 * Double(seed)
            return StepMetrics(step: s, tokens: s * tokensPerStep, loss: base + 0.4 * noise(), lr: 3e-3 * Double(min(s, 30)) / 30,
                               tokens_per_s: 3500 + 600 * noise(), rss_bytes: 300 << 20 + seed << 20,
                               val_loss: s % evalEvery == 0 ? base + 0.3 : nil, step_ms: 580)
        }
    }

    static func result(_ cell: String, _ i: Int) -> Suite.Result {
        var r = Suite.Result(cell: cell, preset: "tiny", steps: 300, tokens: 614_400, final_val_loss: 4.1 + 0.03 * Double(i),
                             best_val_loss: nil, val_ppl: nil, tokens_per_s: 3000 + 50 * Double(i), step_ms: 600, optimizer_state_bytes: (i % 7) << 22,
                             peak_rss_bytes: (260 + 3 * i) << 20, flags: [])
        r.weights_bytes = 20 << 20; r.gradients_bytes = 20 << 20; r.activations_bytes = 180 << 20
        return r
    }

    /// Every figure the project draws, named: one run, three runs, runs whose batch differs
    /// (a loss-against-tokens panel), 20 runs with long names, and the suite figures of 20
    /// cells.
    static func figures() -> [(String, String)] {
        let names = (0..<20).map { i in i % 3 == 0 ? "galore-adafactor-r64-T200-seed\(i)" : "method-\(i)" }
        let runs = names.enumerated().map { ($0.element, run($0.offset)) }
        let results = names.enumerated().map { result($0.element, $0.offset) }
        let spread = Dictionary(uniqueKeysWithValues: names.map { ($0, 400.0) })
        var out: [(String, String)] = [
            ("run-one", RunFigure.render(runs: [runs[0]])),
            ("run-three", RunFigure.render(runs: Array(runs.prefix(3)))),
            ("run-mixed-batch", RunFigure.render(runs: [("b8", run(0)), ("b4", run(1, tokensPerStep: 1024))])),
            ("run-twenty", RunFigure.render(runs: runs)),
            ("suite-val-loss", SuiteFigures.validationLoss(title: "Validation loss", runs: runs, peers: [(names[0], run(5))])),
            ("suite-pareto", SuiteFigures.pareto(title: "Validation loss against memory", results: results)),
            ("suite-memory", SuiteFigures.memory(title: "Memory by kind", results: results)),
            ("suite-throughput", SuiteFigures.throughput(title: "Throughput", results: results, spread: spread)),
            ("suite-throughput-peers", SuiteFigures.throughput(title: "Throughput", results: Array(results.prefix(4)),
                                                               peers: Array(results.prefix(2)), spread: spread, peerSpread: spread)),
        ]
        // The committed suite, where this checkout has it.
        let suite = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("results/suite")
        let rs = Suite.Result.read(url: suite.appendingPathComponent("results.jsonl"))
        if !rs.isEmpty {
            let committed = rs.compactMap { r in (try? MetricsLog.read(url: suite.appendingPathComponent(r.cell).appendingPathComponent("metrics.jsonl"))).map { (r.cell, $0) } }
            out.append(("results-suite-loss", RunFigure.render(runs: committed)))
            out.append(("results-adamw-loss", RunFigure.render(runs: Array(committed.prefix(1)))))
            out.append(("results-suite-pareto", SuiteFigures.pareto(title: "Pareto", results: rs)))
        }
        return out
    }

    // MARK: - Layout checks on the parsed SVG

    /// An attribute's value (looked up by name: `attribute(forName:)` misses attributes of
    /// elements in the SVG namespace on Linux's Foundation).
    static func attr(_ e: XMLElement, _ n: String) -> String? {
        e.attributes?.first { $0.name == n || $0.localName == n }?.stringValue
    }

    /// The four corners of a text element's estimated box (DejaVu Sans widths; ascent 0.76
    /// em above the baseline, descent 0.24 em below), rotated as its transform says.
    static func corners(_ e: XMLElement) -> [(Double, Double)]? {
        func attr(_ n: String) -> String? { Self.attr(e, n) }
        let size = Double(attr("font-size") ?? "12") ?? 12
        let text = e.stringValue ?? ""
        guard !text.isEmpty else { return nil }
        let w = SVG.textWidth(text, size: size, bold: attr("font-weight") == "bold")
        var x = Double(attr("x") ?? "0") ?? 0, y = Double(attr("y") ?? "0") ?? 0, angle = 0.0
        if let t = attr("transform") {
            let nums = t.split(whereSeparator: { !"0123456789.-".contains($0) }).compactMap { Double($0) }
            if nums.count >= 3 { x += nums[0]; y += nums[1]; angle = nums[2] * .pi / 180 }
        }
        let x0: Double
        switch attr("text-anchor") { case "middle": x0 = -w / 2; case "end": x0 = -w; default: x0 = 0 }
        let local = [(x0, -0.76 * size), (x0 + w, -0.76 * size), (x0 + w, 0.24 * size), (x0, 0.24 * size)]
        return local.map { (px, py) in (x + px * cos(angle) - py * sin(angle), y + px * sin(angle) + py * cos(angle)) }
    }

    /// Convex polygons overlap unless an edge normal separates them (by more than `margin`).
    static func overlap(_ a: [(Double, Double)], _ b: [(Double, Double)], margin: Double = 0.5) -> Bool {
        for poly in [a, b] {
            for k in poly.indices {
                let p = poly[k], q = poly[(k + 1) % poly.count]
                let n = (-(q.1 - p.1), q.0 - p.0), len = (n.0 * n.0 + n.1 * n.1).squareRoot()
                guard len > 0 else { continue }
                let pa = a.map { ($0.0 * n.0 + $0.1 * n.1) / len }, pb = b.map { ($0.0 * n.0 + $0.1 * n.1) / len }
                if pa.max()! <= pb.min()! + margin || pb.max()! <= pa.min()! + margin { return false }
            }
        }
        return true
    }

    static func rect(_ e: XMLElement) -> SVG.Rect {
        func v(_ n: String) -> Double { Double(attr(e, n) ?? "0") ?? 0 }
        return .init(x: v("x"), y: v("y"), width: v("width"), height: v("height"))
    }

    static func elements(_ node: XMLNode, _ name: String) -> [XMLElement] {
        var out: [XMLElement] = []
        for c in node.children ?? [] {
            if let e = c as? XMLElement {
                if e.name == name { out.append(e) }
                out += elements(e, name)
            }
        }
        return out
    }

    /// Layout problems of one SVG document (empty when none).
    static func problems(_ svg: String) throws -> [String] {
        let doc = try XMLDocument(xmlString: svg, options: [])
        guard let root = doc.rootElement(), root.name == "svg" else { return ["no svg root"] }
        let vb = (attr(root, "viewBox") ?? "").split(separator: " ").compactMap { Double($0) }
        guard vb.count == 4 else { return ["no viewBox"] }
        let canvas = SVG.Rect(x: vb[0], y: vb[1], width: vb[2], height: vb[3])
        var out: [String] = []
        let texts = elements(root, "text").compactMap { e in corners(e).map { (e.stringValue ?? "", $0) } }
        for (t, c) in texts where !c.allSatisfy({ $0.0 >= canvas.x - 0.5 && $0.0 <= canvas.maxX + 0.5 && $0.1 >= canvas.y - 0.5 && $0.1 <= canvas.maxY + 0.5 }) {
            out.append("text '\(t)' leaves the canvas")
        }
        for i in texts.indices {
            for j in texts.indices where j > i && overlap(texts[i].1, texts[j].1) {
                out.append("texts '\(texts[i].0)' and '\(texts[j].0)' overlap")
            }
        }
        let rects = elements(root, "rect")
        let plots = rects.filter { attr($0, "class") == "plot-area" }.map(rect)
        let legends = rects.filter { attr($0, "class") == "legend-box" }.map(rect)
        if plots.isEmpty { out.append("no plot area") }
        for l in legends {
            if !canvas.contains(l) { out.append("legend box leaves the canvas") }
            for p in plots where p.intersects(l) { out.append("legend box \(l) overlaps plot area \(p)") }
        }
        for g in elements(root, "g") where attr(g, "class") == "legend" {
            guard let box = elements(g, "rect").first.map(rect) else { continue }
            for t in elements(g, "text") {
                if let c = corners(t), !c.allSatisfy({ box.contains(.init(x: $0.0, y: $0.1, width: 0, height: 0)) }) {
                    out.append("legend text '\(t.stringValue ?? "")' outside its box")
                }
            }
        }
        return out
    }

    @Test func everyFigureIsWellFormedAndLaidOut() throws {
        for (name, svg) in Self.figures() {
            let p = try Self.problems(svg)
            #expect(p.isEmpty, "\(name): \(p.prefix(8).joined(separator: "; "))")
        }
    }

    @Test func theCheckerCatchesClippingAndOverlap() throws {
        let bad = SVG.document(width: 100, height: 50, body: """
            <rect class="plot-area" x="0" y="0" width="60" height="40"/>
            <g class="legend"><rect class="legend-box" x="50" y="0" width="40" height="20"/><text x="52" y="14">a long legend label</text></g>
            <text x="10" y="20">one</text><text x="12" y="22">two</text>
            """)
        let p = try Self.problems(bad)
        #expect(p.contains { $0.contains("leaves the canvas") })
        #expect(p.contains { $0.contains("overlaps plot area") })
        #expect(p.contains { $0.contains("'one' and 'two' overlap") })
        #expect(p.contains { $0.contains("outside its box") })
    }

    // MARK: - PNG

    static let rsvgConvert: String? = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    @Test(.enabled(if: rsvgConvert != nil, "rsvg-convert not found: apt-get install librsvg2-bin to render the figures to PNG"))
    func rendersToPNG() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-figures")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, svg) in Self.figures() {
            let src = dir.appendingPathComponent("\(name).svg"), png = dir.appendingPathComponent("\(name).png")
            try svg.write(to: src, atomically: true, encoding: .utf8)
            try? FileManager.default.removeItem(at: png)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.rsvgConvert!)
            p.arguments = ["-o", png.path, src.path]
            let err = Pipe()
            p.standardError = err
            try p.run()
            p.waitUntilExit()
            let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(p.terminationStatus == 0 && msg.isEmpty, "\(name): rsvg-convert \(p.terminationStatus) \(msg)")
            let data = try Data(contentsOf: png)
            #expect(data.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "\(name).png is not a PNG")
            // IHDR: the width and height the SVG asked for.
            let w = data[16..<20].reduce(0) { $0 << 8 | Int($1) }, h = data[20..<24].reduce(0) { $0 << 8 | Int($1) }
            let doc = try XMLDocument(xmlString: svg, options: [])
            #expect(w == Int(doc.rootElement().flatMap { Self.attr($0, "width") } ?? "") &&
                    h == Int(doc.rootElement().flatMap { Self.attr($0, "height") } ?? ""), "\(name): \(w) x \(h)")
        }
    }
}

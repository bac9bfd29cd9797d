import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceOptim

/// The AVX-512 elementwise kernels of `Sources/CSupport` (swiglu.c, rope.c, adam.c,
/// blockquant.c) against the portable Swift loops they replace, forced with `avx512: false`:
/// every output bit for bit, on lengths that exercise the 16-lane tails (0, 1, 15, 16, 17,
/// 1000, and one that Parallel.ranges splits). The portable path is also checked against the
/// definitions in Double, so the two cannot agree on a wrong answer.
@Suite struct ElementwiseKernelTests {
    static let lengths = [0, 1, 15, 16, 17, 1000, 40_003]

    /// Normal values times `scale`, with extremes planted where they fit.
    static func values(_ n: Int, seed: UInt64, scale: Float = 3) -> [Float] {
        var rng = RandomStream(seed: seed)
        var a = (0..<n).map { _ in rng.normal() * scale }
        if n > 20 { a[3] = 100; a[7] = -100; a[11] = 0; a[12] = -0.0; a[19] = 1e-30 }
        return a
    }

    /// The number of positions whose bits differ (or the length difference).
    static func differing(_ a: [Float], _ b: [Float]) -> Int {
        a.count != b.count ? abs(a.count - b.count) : zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
    }

    // MARK: SwiGLU

    static func swiglu(_ n: Int, avx512: Bool) -> (h: [Float], dg: [Float], du: [Float]) {
        let g = values(n, seed: 1), u = values(n, seed: 2), dh = values(n, seed: 3)
        var h = [Float](repeating: 0, count: n), dg = g, du = u
        SwiGLU.forward(g: g, u: u, h: &h, count: n, avx512: avx512)
        // in place, as the model calls it (dg and du alias g and u)
        dg.withUnsafeMutableBufferPointer { gp in
            du.withUnsafeMutableBufferPointer { up in
                guard let gb = gp.baseAddress, let ub = up.baseAddress else { return }
                SwiGLU.backward(dh: dh, g: gb, u: ub, dg: gb, du: ub, count: n, avx512: avx512)
            }
        }
        return (h, dg, du)
    }

    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"), arguments: lengths)
    func swigluMatchesPortable(n: Int) {
        let a = Self.swiglu(n, avx512: true), b = Self.swiglu(n, avx512: false)
        #expect(Self.differing(a.h, b.h) == 0)
        #expect(Self.differing(a.dg, b.dg) == 0)
        #expect(Self.differing(a.du, b.du) == 0)
    }

    @Test(arguments: [17, 1000])
    func swigluPortableMatchesDefinition(n: Int) {
        let r = Self.swiglu(n, avx512: false)
        let g = Self.values(n, seed: 1), u = Self.values(n, seed: 2), dh = Self.values(n, seed: 3)
        for i in 0..<n {
            let gi = Double(g[i]), s = 1 / (1 + Foundation.exp(-gi))
            let h = gi * s * Double(u[i]), du = Double(dh[i]) * gi * s
            let dg = Double(dh[i]) * Double(u[i]) * s * (1 + gi * (1 - s))
            #expect(abs(Double(r.h[i]) - h) <= 1e-6 * (1 + abs(h)), "h[\(i)]")
            #expect(abs(Double(r.du[i]) - du) <= 1e-6 * (1 + abs(du)), "du[\(i)]")
            #expect(abs(Double(r.dg[i]) - dg) <= 1e-6 * (1 + abs(dg)), "dg[\(i)]")
        }
    }

    // MARK: RoPE

    /// Head sizes whose half is below, at and above 16 lanes (1, 15, 16, 17, 40).
    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"), arguments: [2, 30, 32, 34, 80])
    func ropeMatchesPortable(headDim: Int) {
        let rope = RotaryEmbedding(headDim: headDim, maxPositions: 64, theta: 10_000)
        let rows = 37, heads = 3
        for (first, inverse) in [(0, false), (5, false), (0, true)] {
            var a = Self.values(rows * heads * headDim, seed: UInt64(headDim)), b = a
            rope.apply(&a, rows: rows, heads: heads, seq: 19, firstPosition: first, inverse: inverse, avx512: true)
            rope.apply(&b, rows: rows, heads: heads, seq: 19, firstPosition: first, inverse: inverse, avx512: false)
            #expect(Self.differing(a, b) == 0, "first \(first) inverse \(inverse)")
        }
    }

    @Test func ropePortableMatchesDefinition() {
        let headDim = 34, rows = 5, heads = 2, half = headDim / 2
        let rope = RotaryEmbedding(headDim: headDim, maxPositions: 16, theta: 10_000)
        let x = Self.values(rows * heads * headDim, seed: 9)
        var y = x
        rope.apply(&y, rows: rows, heads: heads, seq: rows, firstPosition: 3, avx512: false)
        for r in 0..<rows {
            for h in 0..<heads {
                let o = r * heads * headDim + h * headDim
                for i in 0..<half {
                    let angle = Double(r + 3) * Double(Float(1 / Foundation.pow(10_000, Double(2 * i) / Double(headDim))))
                    let a = Double(x[o + i]), b = Double(x[o + i + half])
                    #expect(abs(Double(y[o + i]) - (a * cos(angle) - b * sin(angle))) <= 1e-5 * (1 + abs(a) + abs(b)))
                    #expect(abs(Double(y[o + i + half]) - (b * cos(angle) + a * sin(angle))) <= 1e-5 * (1 + abs(a) + abs(b)))
                }
            }
        }
        rope.apply(&y, rows: rows, heads: heads, seq: rows, firstPosition: 3, inverse: true, avx512: false)
        #expect(maxAbsDiff(y, x) <= 1e-5)
    }

    // MARK: Adam

    enum AdamSweep: CaseIterable { case torch, torchDecay, huggingFace, huggingFaceDecay, directionTorch, directionHF }

    /// Three steps of one sweep; returns p (or the direction), m and v.
    static func adam(_ sweep: AdamSweep, n: Int, avx512: Bool) -> [[Float]] {
        var p = values(n, seed: 4), m = [Float](repeating: 0, count: n), v = m, out = m
        let wd: Float = sweep == .torchDecay || sweep == .huggingFaceDecay ? 0.1 : 0
        for t in 1...3 {
            let g = values(n, seed: 10 + UInt64(t), scale: 0.01)
            let bc1 = 1 - Float(Foundation.pow(0.9, Double(t))), bc2 = 1 - Float(Foundation.pow(0.999, Double(t)))
            switch sweep {
            case .torch, .torchDecay:
                AdamW.kernel(
                    p: &p, g: g, m: &m, v: &v, vMax: nil, count: n, lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8,
                    weightDecay: wd, stepSize: 1e-2 / bc1, bc2Sqrt: bc2.squareRoot(), avx512: avx512)
            case .huggingFace, .huggingFaceDecay:
                AdamW.huggingFaceKernel(
                    p: &p, g: g, m: &m, v: &v, vMax: nil, count: n, lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-6,
                    weightDecay: wd, step: t, avx512: avx512)
            case .directionTorch, .directionHF:
                AdamMoments.direction(
                    g: g, m: &m, v: &v, out: &out, count: n, beta1: 0.9, beta2: 0.99, eps: 1e-8, step: t,
                    style: sweep == .directionTorch ? .torch : .huggingFace, avx512: avx512)
            }
        }
        return [sweep == .directionTorch || sweep == .directionHF ? out : p, m, v]
    }

    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"), arguments: AdamSweep.allCases, lengths)
    func adamMatchesPortable(sweep: AdamSweep, n: Int) {
        let a = Self.adam(sweep, n: n, avx512: true), b = Self.adam(sweep, n: n, avx512: false)
        for k in 0..<3 { #expect(Self.differing(a[k], b[k]) == 0, "\(sweep) output \(k)") }
    }

    /// One torch AdamW step from zero moments, in closed form: m = 0.1 g, v = 0.001 g^2, and
    /// p moves by lr * sign(g) (up to eps), after decay.
    @Test func adamPortableOneStepClosedForm() {
        let n = 37
        var p = Self.values(n, seed: 4), m = [Float](repeating: 0, count: n), v = m
        let p0 = p, g = Self.values(n, seed: 5)
        AdamW.kernel(
            p: &p, g: g, m: &m, v: &v, vMax: nil, count: n, lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8,
            weightDecay: 0.5, stepSize: 1e-2 / 0.1, bc2Sqrt: Float(0.001).squareRoot(), avx512: false)
        for i in 0..<n {
            #expect(abs(m[i] - 0.1 * g[i]) <= 1e-6 * abs(g[i]))
            let want = Double(p0[i]) * (1 - 5e-3) - 1e-2 * Double(g[i]) / (abs(Double(g[i])) + 1e-8)
            #expect(abs(Double(p[i]) - want) <= 1e-5, "p[\(i)]")
        }
    }

    // MARK: 8-bit block quantization

    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"), arguments: lengths)
    func blockQuantizationMatchesPortable(n: Int) {
        var x = Self.values(n, seed: 6)
        if n > 40 { x[30] = .nan; x[31] = .infinity; x[32] = -.infinity }
        for map in [DynamicQuantizationMap.signed, .unsigned] {
            let input = map.signed ? x : x.map { abs($0) }
            for blockSize in [16, 256, 2048] {
                let a = QuantizedState(zeros: [n], map: map, blockSize: blockSize)
                let b = QuantizedState(zeros: [n], map: map, blockSize: blockSize)
                let da = Tensor(zeros: [n]), db = Tensor(zeros: [n]), xt = Tensor(zeros: [n])
                for i in 0..<n { xt.data[i] = input[i] }
                for blk in 0..<a.blockCount {
                    let o = blk * blockSize
                    a.quantizeBlock(blk, from: xt.data + o, avx512: true)
                    b.quantizeBlock(blk, from: xt.data + o, avx512: false)
                    a.dequantizeBlock(blk, into: da.data + o, avx512: true)
                    b.dequantizeBlock(blk, into: db.data + o, avx512: false)
                }
                #expect((0..<n).filter { a.codes[$0] != b.codes[$0] }.isEmpty)
                #expect(Self.differing(
                    Array(UnsafeBufferPointer(start: a.absmax, count: a.blockCount)),
                    Array(UnsafeBufferPointer(start: b.absmax, count: b.blockCount))) == 0)
                #expect(Self.differing(da.array, db.array) == 0, "map signed \(map.signed) block \(blockSize)")
            }
        }
    }

    /// The vector code search against the binary search on every midpoint, its neighbours
    /// (ties go to the lower code), the code values, signed zeros, NaN, the clamped ends and
    /// random values, in one call of each length's tail.
    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"))
    func vectorCodeSearchMatchesBinarySearch() {
        for map in [DynamicQuantizationMap.signed, .unsigned] {
            var x: [Float] = [0, -0.0, .nan, 1e-40, -1e-40, 1, -1, 3.9, -3.9, 5, -5, .infinity, -.infinity]
            for mid in map.midpoints { x += [mid, mid.nextDown, mid.nextUp] }
            x += map.values
            x += Self.values(5000, seed: 7, scale: 0.3)
            var out = [UInt8](repeating: 0, count: x.count)
            map.codes(x, count: x.count, scale: 1, into: &out, avx512: true)
            for i in x.indices { #expect(out[i] == map.referenceCode(for: x[i]), "x = \(x[i])") }
        }
    }
    /// AdamW8bit's element update (adam.c's bitsandbytes loop) against its Swift loop: five
    /// steps with 8-bit and with float32 moments, non-finite gradients planted; the weights
    /// and the encoded states bit for bit.
    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"), arguments: [1, 17, 1000, 5003])
    func adamW8bitMatchesPortable(n: Int) throws {
        for minimum in [0, Int.max] {
            var runs: [(weights: [Float], state: [String: Tensor])] = []
            for vector in [true, false] {
                let opt = try AdamW8bit(learningRate: 1e-2, weightDecay: 0.1, quantization: try StateQuantization(blockSize: 64, minimumSize: minimum))
                opt.vectorKernels = vector
                let w = Tensor(zeros: [n])
                for (i, x) in Self.values(n, seed: 8).enumerated() { w.data[i] = x }
                let p = Parameter(name: "w", role: .mlp, value: w)
                for t in 0..<5 {
                    let g = Tensor(zeros: [n])
                    for (i, x) in Self.values(n, seed: 20 + UInt64(t), scale: 0.1).enumerated() { g.data[i] = x }
                    if n > 16 && t == 2 { g.data[3] = .nan; g.data[16] = .infinity }
                    opt.update(p, gradient: g, lrScale: 1)
                }
                runs.append((p.value.array, opt.exportState(for: p)))
            }
            #expect(Self.differing(runs[0].weights, runs[1].weights) == 0, "min8bit \(minimum)")
            #expect(runs[0].state.keys.sorted() == runs[1].state.keys.sorted())
            for (key, t) in runs[0].state { #expect(Self.differing(t.array, runs[1].state[key]?.array ?? []) == 0, "\(key)") }
        }
    }

    /// Softmax's maximum on 16 lanes against the SIMD8 loop, NaNs skipped.
    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"), arguments: [16, 17, 31, 1000])
    func maxMatchesPortable(n: Int) {
        var x = Self.values(n, seed: 12)
        x[n / 2] = .nan
        #expect(FastMath.max(x, n, avx512: true) == FastMath.max(x, n, avx512: false))
        x[n - 1] = 1e9
        #expect(FastMath.max(x, n, avx512: true) == 1e9 && FastMath.max(x, n, avx512: false) == 1e9)
    }

    // MARK: MLorc's non-negativity fix

    /// MLorc.rectify: the AVX-512 kernel against the portable loop bit for bit, and the
    /// portable loop against its definition (the mean magnitude of the negatives, in Double).
    @Test(arguments: lengths)
    func rectifyMatchesDefinitionAndPortable(n: Int) {
        var x = Self.values(n, seed: 13)
        if n > 30 { x[29] = .nan }
        let negatives = x.filter { $0 < 0 }
        let mean = negatives.isEmpty ? 0 : Float(negatives.reduce(0.0) { $0 - Double($1) } / Double(negatives.count))
        let portable = Tensor(shape: [n], values: x)
        #expect(MLorc.rectify(portable, avx512: false) == negatives.count)
        for (a, b) in zip(portable.array, x) {
            if b.isNaN { #expect(a.isNaN) } else if b < 0 { #expect(abs(a - mean) <= 1e-6 * mean) } else { #expect(a.bitPattern == b.bitPattern) }
        }
        if VectorISA.avx512 {
            let fast = Tensor(shape: [n], values: x)
            #expect(MLorc.rectify(fast, avx512: true) == negatives.count)
            #expect(Self.differing(fast.array, portable.array) == 0)
        }
    }
}

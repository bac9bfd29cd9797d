import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Finite-difference checks of every layer's backward pass against its forward pass.
/// Each layer's output is probed with a random weighting R, so the scalar is sum(out * R)
/// and dL/dout = R.
@Suite struct LayerGradientTests {
    let tol = 2e-2

    @Test func linear() {
        let n = 5, i = 7, o = 6
        let x = randomTensor([n, i], seed: 1), w = randomTensor([o, i], seed: 2), r = randomTensor([n, o], seed: 3)
        let y = Tensor(zeros: [n, o])
        func f() -> Double {
            Linear.forward(x: x.data, weight: w.data, y: y.data, rows: n, inFeatures: i, outFeatures: o)
            return probe(y.data, r)
        }
        let dx = Tensor(zeros: [n, i]), dw = Tensor(zeros: [o, i])
        Linear.backwardInput(dy: r.data, weight: w.data, dx: dx.data, rows: n, inFeatures: i, outFeatures: o)
        Linear.backwardWeight(dy: r.data, x: x.data, dWeight: dw.data, rows: n, inFeatures: i, outFeatures: o)
        let a = finiteDifference(x, analytic: dx, f), b = finiteDifference(w, analytic: dw, f)
        #expect(relativeError(a.analytic, a.numeric) < tol)
        #expect(relativeError(b.analytic, b.numeric) < tol)
    }

    @Test func embedding() {
        let v = 10, d = 4
        let tokens: [Int32] = [3, 1, 3, 9, 0]
        let table = randomTensor([v, d], seed: 4), r = randomTensor([tokens.count, d], seed: 5)
        let out = Tensor(zeros: [tokens.count, d])
        func f() -> Double {
            tokens.withUnsafeBufferPointer { Embedding.forward(tokens: $0.baseAddress!, table: table.data, out: out.data, count: tokens.count, dim: d) }
            return probe(out.data, r)
        }
        let dt = Tensor(zeros: [v, d])
        tokens.withUnsafeBufferPointer { Embedding.backward(tokens: $0.baseAddress!, dOut: r.data, dTable: dt.data, count: tokens.count, dim: d) }
        let c = finiteDifference(table, analytic: dt, samples: 40, f)
        #expect(relativeError(c.analytic, c.numeric) < tol)
    }

    @Test func rmsNorm() {
        let n = 4, d = 8
        let x = randomTensor([n, d], seed: 6), w = randomTensor([d], seed: 7), r = randomTensor([n, d], seed: 8)
        let y = Tensor(zeros: [n, d]), rstd = Tensor(zeros: [n])
        func f() -> Double {
            RMSNorm.forward(x: x.data, weight: w.data, y: y.data, rstd: rstd.data, rows: n, dim: d, eps: 1e-6)
            return probe(y.data, r)
        }
        _ = f()
        let dx = Tensor(zeros: [n, d]), dw = Tensor(zeros: [d])
        RMSNorm.backward(dy: r.data, x: x.data, weight: w.data, rstd: rstd.data, dx: dx.data, dWeight: dw.data, rows: n, dim: d, accumulate: false)
        let a = finiteDifference(x, analytic: dx, samples: 32, h: 1e-3, f), b = finiteDifference(w, analytic: dw, f)
        #expect(relativeError(a.analytic, a.numeric) < tol)
        #expect(relativeError(b.analytic, b.numeric) < tol)
    }

    @Test func rotaryEmbedding() {
        let seq = 5, heads = 2, hd = 8, n = 2 * seq
        let rope = RotaryEmbedding(headDim: hd, maxPositions: 16, theta: 10_000)
        let x = randomTensor([n, heads * hd], seed: 9), r = randomTensor([n, heads * hd], seed: 10)
        let y = Tensor(zeros: x.shape)
        func f() -> Double {
            y.assign(x)
            rope.apply(y.data, rows: n, heads: heads, seq: seq)
            return probe(y.data, r)
        }
        let dx = r.copy()
        rope.apply(dx.data, rows: n, heads: heads, seq: seq, inverse: true)
        let c = finiteDifference(x, analytic: dx, samples: 40, f)
        #expect(relativeError(c.analytic, c.numeric) < tol)
        // A rotation preserves norms.
        _ = f()
        #expect(abs(BLAS.nrm2(y.count, y.data) - BLAS.nrm2(x.count, x.data)) < 1e-4)
    }

    @Test(arguments: [(4, 4), (4, 2), (4, 1)])
    func attention(heads: Int, kvHeads: Int) {
        let b = 2, t = 70, hd = 4  // t > 64 exercises more than one causal block
        let att = CausalAttention(batch: b, seq: t, heads: heads, kvHeads: kvHeads, headDim: hd)
        let q = randomTensor([b * t, heads * hd], seed: 11), k = randomTensor([b * t, kvHeads * hd], seed: 12)
        let v = randomTensor([b * t, kvHeads * hd], seed: 13), r = randomTensor([b * t, heads * hd], seed: 14)
        let out = Tensor(zeros: q.shape), probs = Tensor(zeros: [att.probabilityCount])
        func f() -> Double {
            att.forward(q: q.data, k: k.data, v: v.data, out: out.data, probs: probs.data)
            return probe(out.data, r)
        }
        _ = f()
        // Causality: row i of each probability matrix is zero beyond i and sums to one.
        for i in [0, 5, 69] {
            let row = probs.data + i * t
            var s: Float = 0
            for j in 0..<t { s += row[j]; if j > i { #expect(row[j] == 0) } }
            #expect(abs(s - 1) < 1e-5)
        }
        let dq = Tensor(zeros: q.shape), dk = Tensor(zeros: k.shape), dv = Tensor(zeros: v.shape)
        att.backward(dOut: r.data, q: q.data, k: k.data, v: v.data, probs: probs.data, dq: dq.data, dk: dk.data, dv: dv.data)
        for (x, dx) in [(q, dq), (k, dk), (v, dv)] {
            let c = finiteDifference(x, analytic: dx, samples: 40, h: 1e-2, f)
            #expect(relativeError(c.analytic, c.numeric) < tol)
        }
    }

    @Test func swiGLU() {
        let n = 37  // not a multiple of the vector width
        let g = randomTensor([n], seed: 15, std: 2), u = randomTensor([n], seed: 16), r = randomTensor([n], seed: 17)
        let h = Tensor(zeros: [n])
        func f() -> Double { SwiGLU.forward(g: g.data, u: u.data, h: h.data, count: n); return probe(h.data, r) }
        _ = f()
        // Forward against the definition.
        for i in 0..<n {
            let s = 1 / (1 + Foundation.exp(-Double(g[i])))
            #expect(abs(Double(h[i]) - Double(g[i]) * s * Double(u[i])) < 1e-5)
        }
        let dg = Tensor(zeros: [n]), du = Tensor(zeros: [n])
        SwiGLU.backward(dh: r.data, g: g.data, u: u.data, dg: dg.data, du: du.data, count: n)
        let a = finiteDifference(g, analytic: dg, samples: n, h: 1e-3, f), b = finiteDifference(u, analytic: du, samples: n, h: 1e-3, f)
        #expect(relativeError(a.analytic, a.numeric) < tol)
        #expect(relativeError(b.analytic, b.numeric) < tol)
    }

    @Test func crossEntropy() {
        let n = 6, v = 13
        let logits = randomTensor([n, v], seed: 18, std: 3)
        let targets: [Int32] = [0, 12, 5, -100, 7, 7]
        func f() -> Double {
            let work = logits.copy()
            let r = targets.withUnsafeBufferPointer { CrossEntropy.forwardBackward(logits: work.data, targets: $0.baseAddress!, rows: n, vocab: v, gradScale: nil) }
            return r.sum / Double(r.count)
        }
        // Against log-softmax in Double.
        var ref = 0.0
        for i in 0..<n where targets[i] >= 0 {
            let row = (0..<v).map { Double(logits[i * v + $0]) }
            let m = row.max()!
            ref += log(row.map { Foundation.exp($0 - m) }.reduce(0, +)) + m - row[Int(targets[i])]
        }
        #expect(abs(f() - ref / 5) < 1e-5)
        let grad = logits.copy()
        let r = targets.withUnsafeBufferPointer { CrossEntropy.forwardBackward(logits: grad.data, targets: $0.baseAddress!, rows: n, vocab: v, gradScale: 1 / 5) }
        #expect(r.count == 5)
        for j in 0..<v { #expect(grad[3 * v + j] == 0) }  // ignored row
        let c = finiteDifference(logits, analytic: grad, samples: 40, h: 1e-2, f)
        #expect(relativeError(c.analytic, c.numeric) < tol)
    }

    @Test func fastExpMatchesLibm() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let e = Double(FastMath.exp(x)), ref = Foundation.exp(Double(x))
            worst = max(worst, abs(e - ref) / ref)
            x += 0.173
        }
        #expect(worst < 5e-7)
        #expect(FastMath.exp(-200) == 0)
        #expect(FastMath.exp(200) == .infinity)
    }
}

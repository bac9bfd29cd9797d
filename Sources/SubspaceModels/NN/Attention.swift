import Foundation
import SubspaceCore

/// Causal scaled dot-product attention with grouped-query support (Ainslie et al., 2023):
/// query head h reads key/value head `h / (heads / kvHeads)`.
///
/// Layout: q and the output are `[B*T, heads*hd]`, k and v are `[B*T, kvHeads*hd]`, exactly
/// as the projections produce them, so no transposes are needed: each head is a strided
/// T x hd matrix handed to `sgemm` with its row stride.
///
/// Causality is exploited by row blocks: block `[r0, r1)` of the score matrix only needs
/// columns `0..<r1`, which skips about 3/8 of the score and value products at T = 256.
///
/// Activations kept for backward: q, k, v (the model keeps them anyway as projection
/// outputs) and the probabilities P, `B * heads * T * T` floats (8 MiB per layer for `tiny`
/// at batch 8). Scratch: one T x T buffer per worker during backward.
public struct CausalAttention: Sendable {
    public let batch: Int, seq: Int, heads: Int, kvHeads: Int, headDim: Int
    /// Rows per causal block.
    let block: Int

    public init(batch: Int, seq: Int, heads: Int, kvHeads: Int, headDim: Int) {
        self.batch = batch; self.seq = seq; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        block = max(32, min(seq, 64))
    }

    var qWidth: Int { heads * headDim }
    var kvWidth: Int { kvHeads * headDim }
    var scale: Float { 1 / Float(headDim).squareRoot() }
    /// Floats in the probability buffer.
    public var probabilityCount: Int { batch * heads * seq * seq }

    /// Runs `body(b, g)` for every (batch, kv head) unit: concurrently over units when there
    /// are enough of them (each then calls BLAS serially), otherwise serially with parallel
    /// BLAS; `worker` indexes per-worker scratch. Units never share an output row of dk/dv, so there are no races.
    private func forEachUnit(_ body: (_ b: Int, _ g: Int, _ parallelBLAS: Bool, _ worker: Int) -> Void) {
        let units = batch * kvHeads
        if units >= Parallel.workers && Parallel.workers > 1 {
            let workers = Parallel.workers
            Parallel.perform(workers) { w in
                var u = w
                while u < units { body(u / kvHeads, u % kvHeads, false, w); u += workers }
            }
        } else {
            for u in 0..<units { body(u / kvHeads, u % kvHeads, true, 0) }
        }
    }

    /// out = softmax(mask(q k^T * scale)) v, saving the probabilities in `probs`.
    public func forward(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>
    ) {
        let T = seq, hd = headDim, group = heads / kvHeads
        forEachUnit { b, g, par, _ in
            let kb = k + b * T * kvWidth + g * hd, vb = v + b * T * kvWidth + g * hd
            for h in (g * group)..<((g + 1) * group) {
                let qb = q + b * T * qWidth + h * hd
                let P = probs + (b * heads + h) * T * T
                let ob = out + b * T * qWidth + h * hd
                var r0 = 0
                while r0 < T {
                    let r1 = min(T, r0 + block)
                    // S[r0..<r1, 0..<r1] = scale * q k^T
                    BLAS.gemm(
                        transB: true, m: r1 - r0, n: r1, k: hd, alpha: scale, a: qb + r0 * qWidth, lda: qWidth,
                        b: kb, ldb: kvWidth, c: P + r0 * T, ldc: T, parallel: par)
                    for i in r0..<r1 {
                        let row = P + i * T
                        let m = FastMath.max(row, i + 1)
                        let z = FastMath.expShiftedSum(row, i + 1, shift: m)
                        FastMath.scale(row, i + 1, 1 / z)
                        (row + i + 1).update(repeating: 0, count: T - i - 1)
                    }
                    // out[r0..<r1] = P[r0..<r1, 0..<r1] v[0..<r1]
                    BLAS.gemm(
                        m: r1 - r0, n: hd, k: r1, a: P + r0 * T, lda: T, b: vb, ldb: kvWidth,
                        c: ob + r0 * qWidth, ldc: qWidth, parallel: par)
                    r0 = r1
                }
            }
        }
    }

    /// Given dOut, writes dq and dk, dv (overwritten, not accumulated).
    public func backward(
        dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        probs: UnsafePointer<Float>, dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
        dv: UnsafeMutablePointer<Float>
    ) {
        let T = seq, hd = headDim, group = heads / kvHeads
        let scratch = Tensor(uninitialized: [Parallel.workers, T * T])
        // Zero dk, dv for every batch row (accumulated over heads of a group and row blocks).
        dk.update(repeating: 0, count: batch * T * kvWidth)
        dv.update(repeating: 0, count: batch * T * kvWidth)
        forEachUnit { b, g, par, slot in
            let dP = scratch.data + slot * T * T
            let kb = k + b * T * kvWidth + g * hd, vb = v + b * T * kvWidth + g * hd
            let dkb = dk + b * T * kvWidth + g * hd, dvb = dv + b * T * kvWidth + g * hd
            for h in (g * group)..<((g + 1) * group) {
                let qb = q + b * T * qWidth + h * hd
                let dqb = dq + b * T * qWidth + h * hd
                let dob = dOut + b * T * qWidth + h * hd
                let P = probs + (b * heads + h) * T * T
                var r0 = 0
                while r0 < T {
                    let r1 = min(T, r0 + block), rows = r1 - r0
                    // dv[0..<r1] += P[r0..<r1, 0..<r1]^T dO[r0..<r1]
                    BLAS.gemm(
                        transA: true, m: r1, n: hd, k: rows, a: P + r0 * T, lda: T, b: dob + r0 * qWidth,
                        ldb: qWidth, beta: 1, c: dvb, ldc: kvWidth, parallel: par)
                    // dP = dO v^T on the causal block
                    BLAS.gemm(
                        transB: true, m: rows, n: r1, k: hd, a: dob + r0 * qWidth, lda: qWidth, b: vb,
                        ldb: kvWidth, c: dP + r0 * T, ldc: T, parallel: par)
                    // dS = P * (dP - rowsum(dP * P)) * scale
                    for i in r0..<r1 {
                        let p = P + i * T, d = dP + i * T
                        var dot: Float = 0
                        for j in 0...i { dot += p[j] * d[j] }
                        for j in 0...i { d[j] = p[j] * (d[j] - dot) * scale }
                        if r1 > i + 1 { (d + i + 1).update(repeating: 0, count: r1 - i - 1) }
                    }
                    // dq[r0..<r1] = dS k[0..<r1]
                    BLAS.gemm(
                        m: rows, n: hd, k: r1, a: dP + r0 * T, lda: T, b: kb, ldb: kvWidth,
                        c: dqb + r0 * qWidth, ldc: qWidth, parallel: par)
                    // dk[0..<r1] += dS^T q[r0..<r1]
                    BLAS.gemm(
                        transA: true, m: r1, n: hd, k: rows, a: dP + r0 * T, lda: T, b: qb + r0 * qWidth,
                        ldb: qWidth, beta: 1, c: dkb, ldc: kvWidth, parallel: par)
                    r0 = r1
                }
            }
        }
    }
}

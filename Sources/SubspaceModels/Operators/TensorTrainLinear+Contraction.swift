import SubspaceCore

/// The two contraction orders of `TensorTrainLinear`, forward and backward, over the gated
/// cores G^_k.
///
/// **Sequential.** With P_k = rows m_1 ... m_(k-1) and R_k = n_(k+1) ... n_d, the state
/// before core k is S_k `[R_k, P_k, r_k, n_k]` (S_1 is x `[rows, n_1, R_1]` transposed to
/// `[R_1, rows n_1]`). One GEMM with the core's matrix A_k `[(r_k n_k), (m_k r_(k+1))]` gives
/// T_k `[R_k, P_k, m_k, r_(k+1)]` = `[n_(k+1), (R_(k+1), P_(k+1), r_(k+1))]`, and moving its
/// first axis last is S_(k+1). After core d, T_d is `[rows, m_1 ... m_d]` = y. Backward runs
/// the same steps in reverse (dS_k = dT_k A_k^T, the transposes undone) and dA_k = S_k^T dT_k.
///
/// **Dense.** Q_1 = G^_1 `[m_1, n_1, r_1]`; Q_k = Q_(k-1) `[M N, r_(k-1)]` times
/// G^_k `[r_(k-1), m_k n_k r_k]`, its axes reordered from `[M, N, m_k, n_k r_k]` to
/// `[M, m_k, N, n_k r_k]` (M, N the modes before k); Q_d = W. Backward: dQ_d = dW =
/// dy^T x, and per k the reorder undone, dG^_k = Q_(k-1)^T dT, dQ_(k-1) = dT G^_k^T.
extension TensorTrainLinear {
    /// Rows, inner and outer sizes of the sequential order's GEMM k (0-based).
    func step(_ k: Int, rows: Int) -> (rows: Int, inner: Int, outer: Int) {
        let p = rows * shape.outModes[..<k].reduce(1, *), rest = shape.inModes[(k + 1)...].reduce(1, *)
        return (rest * p, shape.ranks[k] * shape.inModes[k], shape.outModes[k] * shape.ranks[k + 1])
    }

    /// A_k for each gated core (`TensorTrainKernels.coreMatrix`).
    func coreMatrices(_ g: [Tensor]) -> [Tensor] {
        withExtendedLifetime(g) {
            (0..<shape.order).map { k in
                let s = shape.coreShape(k)
                let t = Tensor(uninitialized: [s[0] * s[2], s[1] * s[3]])
                TensorTrainKernels.coreMatrix(g[k].data, shape: s, into: t.data)
                return t
            }
        }
    }

    /// The states S_1 ... S_d (only S_d unless `all`).
    func states(_ x: UnsafePointer<Float>, rows: Int, mats: [Tensor], all: Bool) -> [Tensor] {
        let n0 = shape.inModes[0]
        var s = Tensor(uninitialized: [rows * inFeatures])
        TensorTrainKernels.transpose(x, rows: rows * n0, cols: inFeatures / n0, into: s.data)
        var out = [s]
        for k in 0..<(shape.order - 1) {
            let (m, inner, outer) = step(k, rows: rows)
            let t = Tensor(uninitialized: [m * outer])
            gemm(m: m, n: outer, k: inner, s, mats[k], into: t)
            s = transposed(t, rows: shape.inModes[k + 1], cols: t.count / shape.inModes[k + 1])
            if all { out.append(s) } else { out = [s] }
        }
        return out
    }

    /// dS_k = dT_k A_k^T.
    func inputGradientStep(_ k: Int, dt: Tensor, mats: [Tensor], rows: Int) -> Tensor {
        let (m, inner, outer) = step(k, rows: rows)
        let ds = Tensor(uninitialized: [m * inner])
        gemm(transB: true, m: m, n: inner, k: outer, dt, mats[k], into: ds)
        return ds
    }

    /// dT_(k-1) from dS_k: S_k is T_(k-1) `[n_k, X]` transposed, so transpose back.
    func untranspose(_ ds: Tensor, k: Int, rows: Int) -> Tensor {
        transposed(ds, rows: ds.count / shape.inModes[k], cols: shape.inModes[k])
    }

    /// dL/dG^_k by the sequential order.
    func sequentialCoreGradients(_ g: [Tensor], dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) -> [Tensor] {
        let mats = coreMatrices(g)
        let s = states(x, rows: rows, mats: mats, all: true)
        let dG = (0..<shape.order).map { Tensor(zeros: shape.coreShape($0)) }
        var dt = Tensor(uninitialized: [rows * outFeatures])
        dt.data.update(from: dy, count: rows * outFeatures)
        for k in stride(from: shape.order - 1, through: 0, by: -1) {
            let (m, inner, outer) = step(k, rows: rows)
            let da = Tensor(uninitialized: [inner * outer])
            gemm(transA: true, m: inner, n: outer, k: m, s[k], dt, into: da)
            addCoreMatrix(da, k: k, into: dG[k])
            if k > 0 { dt = untranspose(inputGradientStep(k, dt: dt, mats: mats, rows: rows), k: k, rows: rows) }
        }
        return dG
    }

    /// Q_1 ... Q_d of the dense order (Q_d is W `[out, in]`).
    func rebuild(_ g: [Tensor]) -> [Tensor] {
        var qs = [g[0]]
        for k in 1..<max(shape.order, 1) {
            let (mm, nn) = (shape.outModes[..<k].reduce(1, *), shape.inModes[..<k].reduce(1, *))
            let (r, mk, l) = (shape.ranks[k], shape.outModes[k], shape.inModes[k] * shape.ranks[k + 1])
            let t = Tensor(uninitialized: [mm * nn * mk * l])
            gemm(m: mm * nn, n: mk * l, k: r, qs[k - 1], g[k], into: t)
            qs.append(swappedMiddle(t, outer: mm, a: nn, b: mk, inner: l))
        }
        return qs
    }

    /// dL/dG^_k by the dense order.
    func denseCoreGradients(_ g: [Tensor], dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) -> [Tensor] {
        let qs = rebuild(g)
        var dq = Tensor(uninitialized: [outFeatures * inFeatures])
        BLAS.gemm(transA: true, m: outFeatures, n: inFeatures, k: rows, a: dy, lda: outFeatures, b: x, ldb: inFeatures, c: dq.data, ldc: inFeatures)
        var dG = [Tensor](repeating: dq, count: shape.order)
        for k in stride(from: shape.order - 1, through: 1, by: -1) {
            let (mm, nn) = (shape.outModes[..<k].reduce(1, *), shape.inModes[..<k].reduce(1, *))
            let (r, mk, l) = (shape.ranks[k], shape.outModes[k], shape.inModes[k] * shape.ranks[k + 1])
            let dt = swappedMiddle(dq, outer: mm, a: mk, b: nn, inner: l)
            dG[k] = Tensor(uninitialized: shape.coreShape(k))
            gemm(transA: true, m: r, n: mk * l, k: mm * nn, qs[k - 1], dt, into: dG[k])
            dq = Tensor(uninitialized: [mm * nn * r])
            gemm(transB: true, m: mm * nn, n: r, k: mk * l, dt, g[k], into: dq)
        }
        dG[0] = dq
        return dG
    }

    // MARK: - On tensors (arguments stay alive for the call, unlike a pointer read from a local)

    /// c = op(a) op(b), row-major, the leading dimensions those of the stored shapes.
    private func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, _ a: Tensor, _ b: Tensor, into c: Tensor) {
        BLAS.gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.data, lda: transA ? m : k, b: b.data, ldb: transB ? k : n, c: c.data, ldc: n)
    }

    private func transposed(_ t: Tensor, rows: Int, cols: Int) -> Tensor {
        let out = Tensor(uninitialized: [t.count])
        TensorTrainKernels.transpose(t.data, rows: rows, cols: cols, into: out.data)
        return out
    }

    private func swappedMiddle(_ t: Tensor, outer: Int, a: Int, b: Int, inner: Int) -> Tensor {
        let out = Tensor(uninitialized: [t.count])
        TensorTrainKernels.swapMiddle(t.data, outer: outer, a: a, b: b, inner: inner, into: out.data)
        return out
    }

    private func addCoreMatrix(_ da: Tensor, k: Int, into core: Tensor) {
        TensorTrainKernels.addCoreMatrix(da.data, shape: shape.coreShape(k), into: core.data)
    }
}

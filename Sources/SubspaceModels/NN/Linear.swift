import SubspaceCore

/// Bias-free linear layer `y = x W^T`, with W stored `[out, in]` as in PyTorch and
/// Hugging Face. Rows of x are tokens (N = batch * sequence).
///
/// Activations kept for backward: the input x (N * in floats), needed for dW.
///
/// `precision: .bf16` runs each product with its operands rounded to bfloat16 and fp32
/// accumulation (`BLAS.gemmBF16`); inputs, outputs and weights stay fp32 (master weights),
/// as under `torch.autocast("cpu", dtype=torch.bfloat16)`.
public enum Linear {
    /// `gemm` or `gemmBF16` by precision (same arguments).
    @inline(__always)
    static func product(
        _ precision: MatmulPrecision, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        switch precision {
        case .fp32: BLAS.gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        case .bf16: BLAS.gemmBF16(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }

    /// y[N, out] = x[N, in] W[out, in]^T, or y += ... when `accumulate`. One row (a
    /// decoding step) is a matrix-vector product (`BLAS.gemv`): same sums, other rounding.
    /// `weightBF16`: W already rounded to bf16 (used under `.bf16` only; the same values the
    /// product would round W to, so the same result).
    public static func forward(
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
        rows n: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false, precision: MatmulPrecision = .fp32,
        weightBF16: UnsafePointer<UInt16>? = nil
    ) {
        if n == 1 {
            BLAS.gemv(m: outFeatures, n: inFeatures, a: weight, lda: inFeatures, x: x, beta: accumulate ? 1 : 0, y: y)
            return
        }
        if precision == .bf16, let w = weightBF16 {
            BF16.withCopy(of: x, count: n * inFeatures) { xb in
                BLAS.gemmBF16(transB: true, m: n, n: outFeatures, k: inFeatures, a: xb, lda: inFeatures,
                              b: w, ldb: inFeatures, beta: accumulate ? 1 : 0, c: y, ldc: outFeatures)
            }
            return
        }
        product(
            precision, transB: true, m: n, n: outFeatures, k: inFeatures, a: x, lda: inFeatures,
            b: weight, ldb: inFeatures, beta: accumulate ? 1 : 0, c: y, ldc: outFeatures)
    }

    /// dx[N, in] (+)= dy[N, out] W[out, in]. Pass `accumulateInput` to add into dx.
    /// `weightBF16` as in `forward`.
    public static func backwardInput(
        dy: UnsafePointer<Float>, weight: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
        rows n: Int, inFeatures: Int, outFeatures: Int, accumulateInput: Bool = false, precision: MatmulPrecision = .fp32,
        weightBF16: UnsafePointer<UInt16>? = nil
    ) {
        if precision == .bf16, let w = weightBF16 {
            BF16.withCopy(of: dy, count: n * outFeatures) { dyb in
                BLAS.gemmBF16(m: n, n: inFeatures, k: outFeatures, a: dyb, lda: outFeatures,
                              b: w, ldb: inFeatures, beta: accumulateInput ? 1 : 0, c: dx, ldc: inFeatures)
            }
            return
        }
        product(
            precision, m: n, n: inFeatures, k: outFeatures, a: dy, lda: outFeatures,
            b: weight, ldb: inFeatures, beta: accumulateInput ? 1 : 0, c: dx, ldc: inFeatures)
    }

    /// dW[out, in] += dy[N, out]^T x[N, in] (gradients accumulate across micro-batches).
    public static func backwardWeight(
        dy: UnsafePointer<Float>, x: UnsafePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
        rows n: Int, inFeatures: Int, outFeatures: Int, precision: MatmulPrecision = .fp32
    ) {
        product(
            precision, transA: true, m: outFeatures, n: inFeatures, k: n, a: dy, lda: outFeatures,
            b: x, ldb: inFeatures, beta: 1, c: dWeight, ldc: inFeatures)
    }
}

/// Newton–Schulz orthogonalization as used by Muon (Jordan et al., 2024, `zeropower_via_newtonschulz5`).
///
/// Approximates U V^T for G = U S V^T with the quintic iteration
/// X <- a X + (b A + c A^2) X, A = X X^T, with (a, b, c) = (3.4445, -4.7750, 2.0315): the
/// coefficients maximise the slope at zero, so singular values land in roughly
/// [0.7, 1.2] after 5 steps instead of exactly 1, which Muon's authors found does not hurt.
/// X starts as G / (||G||_F + eps) so every singular value is at most 1; wide orientation
/// (rows <= columns) keeps A small, so tall inputs are transposed and transposed back.
/// Muon runs this in bfloat16; we run it in float32.
public enum NewtonSchulz {
    public static let coefficients: (a: Float, b: Float, c: Float) = (3.4445, -4.7750, 2.0315)

    public static func orthogonalize(_ g: Tensor, steps: Int = 5, eps: Float = 1e-7) -> Tensor {
        precondition(g.shape.count == 2, "Newton–Schulz needs a matrix")
        let tall = g.shape[0] > g.shape[1]
        var x = tall ? g.transposed() : g.copy()
        let norm = BLAS.nrm2(x.count, x.data)
        FastMath.scale(x.data, x.count, 1 / (norm + eps))
        let (a, b, c) = coefficients
        let r = x.shape[0], cols = x.shape[1]
        let A = Tensor(zeros: [r, r]), B = Tensor(zeros: [r, r])
        for _ in 0..<steps {
            // A = X X^T
            BLAS.gemm(transB: true, m: r, n: r, k: cols, a: x.data, lda: cols, b: x.data, ldb: cols, c: A.data, ldc: r)
            // B = b A + c A A
            B.assign(A)
            BLAS.gemm(m: r, n: r, k: r, alpha: c, a: A.data, lda: r, b: A.data, ldb: r, beta: b, c: B.data, ldc: r)
            // X = a X + B X
            let next = x.copy()
            BLAS.gemm(m: r, n: cols, k: r, alpha: 1, a: B.data, lda: r, b: x.data, ldb: cols, beta: a, c: next.data, ldc: cols)
            x = next
        }
        return tall ? x.transposed() : x
    }
}

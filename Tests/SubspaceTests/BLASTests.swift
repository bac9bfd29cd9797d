import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// `BLAS.gemm` splits large products over the workers in three ways (rows of C, columns of
/// C, the inner dimension with summed partials); each must equal the plain product.
@Suite struct BLASTests {
    /// Double-precision reference of `alpha * op(A) op(B) + beta * C` (row-major).
    func reference(_ ta: Bool, _ tb: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], b: [Float], beta: Float, c: [Float]) -> [Float] {
        gemmReference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: ta ? m : k, b: b, ldb: tb ? k : n, beta: beta, c: c).value.map { Float($0) }
    }

    @Test(arguments: [
        (300, 40, 200),   // rows of C
        (40, 300, 200),   // columns of C
        (12, 10, 40_000), // the inner dimension (k >= 8 max(m, n))
        (3, 2, 400_001),  // inner split with an odd k
    ])
    func splitProductsMatchReference(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var rng = RandomStream(seed: UInt64(m * 31 + n))
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = (0..<(m * k)).map { _ in Float(rng.normal()) }
            let b = (0..<(k * n)).map { _ in Float(rng.normal()) }
            let c0 = (0..<(m * n)).map { _ in Float(rng.normal()) }
            var c = c0
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        BLAS.gemm(
                            transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: ap.baseAddress!, lda: ta ? m : k,
                            b: bp.baseAddress!, ldb: tb ? k : n, beta: 0.75, c: cp.baseAddress!, ldc: n)
                    }
                }
            }
            let want = reference(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, b: b, beta: 0.75, c: c0)
            var worst: Float = 0
            for i in 0..<(m * n) { worst = max(worst, abs(c[i] - want[i]) / (1 + abs(want[i]))) }
            #expect(worst < 2e-4 * Float(k).squareRoot() / 10, "ta \(ta) tb \(tb) shape \(shape): \(worst)")
        }
    }
}

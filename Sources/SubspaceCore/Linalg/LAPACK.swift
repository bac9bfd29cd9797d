// The only file that imports LAPACK. Thin SVD and QR for the optimizers; a Cholesky solve for
// Perfusion's inverse-covariance metric.
#if canImport(CLAPACKE)
import CLAPACKE
#endif

/// Errors from the dense factorizations.
public enum LinalgError: Error, CustomStringConvertible, Equatable {
    case nonFinite(String)
    case noConvergence(String)
    case invalidArgument(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case .nonFinite(let s): return "non-finite input to \(s)"
        case .noConvergence(let s): return "\(s) did not converge"
        case .invalidArgument(let s): return "invalid argument: \(s)"
        case .unsupported(let s): return "\(s) is not available on this platform"
        }
    }
}

/// Dense factorizations through LAPACKE (row-major).
public enum Linalg {
    /// The thin singular value decomposition `A = U diag(S) V^T` of an m x n matrix, with
    /// k = min(m, n): U is m x k, S has k values in descending order, Vt is k x n.
    ///
    /// Uses the divide-and-conquer driver `sgesdd` (fast); if it reports no convergence
    /// (it does on some ill-conditioned gradients, GaLore issue 58) it falls back to the
    /// QR-iteration driver `sgesvd`. Non-finite input is rejected before LAPACK sees it.
    public static func svd(_ a: Tensor) throws -> (u: Tensor, s: [Float], vt: Tensor) {
        guard a.shape.count == 2 else { throw LinalgError.invalidArgument("svd needs a matrix, got \(a.shape)") }
        let m = a.shape[0], n = a.shape[1], k = min(m, n)
        guard k > 0 else { throw LinalgError.invalidArgument("svd of an empty matrix \(a.shape)") }
        for i in 0..<a.count where !a.data[i].isFinite { throw LinalgError.nonFinite("svd") }
        #if canImport(CLAPACKE)
        BLAS.configure()  // LAPACK runs BLAS kernels: the kernel choice and thread pin first
        let u = Tensor(zeros: [m, k]), vt = Tensor(zeros: [k, n])
        var s = [Float](repeating: 0, count: k)
        var work = a.copy()
        var info = s.withUnsafeMutableBufferPointer { sp in
            LAPACKE_sgesdd(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "S")), Int32(m), Int32(n), work.data, Int32(n), sp.baseAddress, u.data, Int32(k), vt.data, Int32(n))
        }
        if info > 0 {
            work = a.copy()
            var superb = [Float](repeating: 0, count: max(1, k - 1))
            info = s.withUnsafeMutableBufferPointer { sp in
                superb.withUnsafeMutableBufferPointer { wp in
                    LAPACKE_sgesvd(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "S")), Int8(UInt8(ascii: "S")), Int32(m), Int32(n), work.data, Int32(n), sp.baseAddress, u.data, Int32(k), vt.data, Int32(n), wp.baseAddress)
                }
            }
        }
        withExtendedLifetime(work) {}  // the LAPACK calls above read `work` through a raw pointer
        if info > 0 { throw LinalgError.noConvergence("svd (sgesdd and sgesvd)") }
        if info < 0 { throw LinalgError.invalidArgument("LAPACK svd argument \(-info)") }
        return (u, s, vt)
        #else
        throw LinalgError.unsupported("svd")
        #endif
    }

    /// The `count` largest eigenvalues of a symmetric n x n matrix (read from its upper
    /// triangle) and their orthonormal eigenvectors, largest first: `vectors` is n x count,
    /// column j the eigenvector of `values[j]`.
    ///
    /// `ssyevr` (tridiagonal reduction, then the MRRR algorithm for the selected indices
    /// only), so asking for r of n eigenvectors costs the reduction plus O(n r) per vector
    /// rather than a full decomposition. Non-finite input is rejected before LAPACK sees it.
    public static func topEigenvectors(symmetric a: Tensor, count: Int) throws -> (values: [Float], vectors: Tensor) {
        guard a.shape.count == 2, a.shape[0] == a.shape[1] else {
            throw LinalgError.invalidArgument("eigenvectors need a square matrix, got \(a.shape)")
        }
        let n = a.shape[0]
        guard count > 0, count <= n else { throw LinalgError.invalidArgument("eigenvector count \(count) for an \(n)x\(n) matrix") }
        for i in 0..<a.count where !a.data[i].isFinite { throw LinalgError.nonFinite("symmetric eigensolver") }
        #if canImport(CLAPACKE)
        BLAS.configure()
        let work = a.copy()
        let z = Tensor(zeros: [n, count])
        var w = [Float](repeating: 0, count: n)
        var support = [Int32](repeating: 0, count: 2 * count)
        var found: Int32 = 0
        let info = w.withUnsafeMutableBufferPointer { wp in
            support.withUnsafeMutableBufferPointer { sp in
                LAPACKE_ssyevr(
                    LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "I")), Int8(UInt8(ascii: "U")), Int32(n),
                    work.data, Int32(n), 0, 0, Int32(n - count + 1), Int32(n), 0, &found, wp.baseAddress, z.data,
                    Int32(count), sp.baseAddress)
            }
        }
        withExtendedLifetime(work) {}
        if info > 0 { throw LinalgError.noConvergence("ssyevr") }
        if info < 0 { throw LinalgError.invalidArgument("LAPACK ssyevr argument \(-info)") }
        guard found == Int32(count) else { throw LinalgError.noConvergence("ssyevr found \(found) of \(count) eigenvalues") }
        // ssyevr returns ascending order: reverse the columns.
        let out = Tensor(uninitialized: [n, count])
        for i in 0..<n {
            for j in 0..<count { out.data[i * count + j] = z.data[i * count + (count - 1 - j)] }
        }
        return (Array(w[0..<count].reversed()), out)
        #else
        throw LinalgError.unsupported("symmetric eigensolver")
        #endif
    }

    /// The thin QR factorization `A = Q R` of an m x n matrix (k = min(m, n)): Q is m x k
    /// with orthonormal columns, R is k x n upper triangular. `sgeqrf` then `sorgqr`.
    public static func qr(_ a: Tensor) throws -> (q: Tensor, r: Tensor) {
        guard a.shape.count == 2 else { throw LinalgError.invalidArgument("qr needs a matrix, got \(a.shape)") }
        let m = a.shape[0], n = a.shape[1], k = min(m, n)
        guard k > 0 else { throw LinalgError.invalidArgument("qr of an empty matrix \(a.shape)") }
        for i in 0..<a.count where !a.data[i].isFinite { throw LinalgError.nonFinite("qr") }
        #if canImport(CLAPACKE)
        BLAS.configure()
        let work = a.copy()
        var tau = [Float](repeating: 0, count: k)
        var info = tau.withUnsafeMutableBufferPointer { tp in
            LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, Int32(m), Int32(n), work.data, Int32(n), tp.baseAddress)
        }
        if info != 0 { throw LinalgError.invalidArgument("sgeqrf info \(info)") }
        let r = Tensor(zeros: [k, n])
        for i in 0..<k { for j in i..<n { r.data[i * n + j] = work.data[i * n + j] } }
        // Q: first k columns of the reflectors, expanded in place.
        let q = Tensor(zeros: [m, k])
        for i in 0..<m { for j in 0..<k { q.data[i * k + j] = work.data[i * n + j] } }
        info = tau.withUnsafeMutableBufferPointer { tp in
            LAPACKE_sorgqr(LAPACK_ROW_MAJOR, Int32(m), Int32(k), Int32(k), q.data, Int32(k), tp.baseAddress)
        }
        if info != 0 { throw LinalgError.invalidArgument("sorgqr info \(info)") }
        return (q, r)
        #else
        throw LinalgError.unsupported("qr")
        #endif
    }

    /// Solves `A x = b` for a symmetric positive definite n x n matrix A (read from its upper
    /// triangle) and a right-hand side b of n values, by Cholesky factorization `A = Uᵀ U`
    /// and two triangular solves (`sposv`): no inverse is formed. Throws
    /// `invalidArgument` when A is not positive definite (LAPACK's info > 0: a leading minor
    /// is not positive) and `nonFinite` for NaN or infinite input.
    public static func choleskySolve(symmetric a: Tensor, _ b: Tensor) throws -> Tensor {
        guard a.shape.count == 2, a.shape[0] == a.shape[1], a.shape[0] > 0 else {
            throw LinalgError.invalidArgument("a Cholesky solve needs a square matrix, got \(a.shape)")
        }
        let n = a.shape[0]
        guard b.count == n else { throw LinalgError.invalidArgument("right-hand side of \(b.count) values for a \(n) x \(n) matrix") }
        for i in 0..<a.count where !a.data[i].isFinite { throw LinalgError.nonFinite("Cholesky solve") }
        for i in 0..<n where !b.data[i].isFinite { throw LinalgError.nonFinite("Cholesky solve") }
        #if canImport(CLAPACKE)
        BLAS.configure()
        let factor = a.copy(), x = b.copy()  // x: b as an n x 1 row-major matrix, overwritten by the solution
        let info = LAPACKE_sposv(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "U")), Int32(n), 1, factor.data, Int32(n), x.data, 1)
        if info > 0 { throw LinalgError.invalidArgument("the matrix is not positive definite (leading minor \(info))") }
        if info < 0 { throw LinalgError.invalidArgument("sposv info \(info)") }
        return x
        #else
        throw LinalgError.unsupported("Cholesky solve")
        #endif
    }
}

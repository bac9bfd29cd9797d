/// Randomized truncated SVD (Halko, Martinsson & Tropp, 2011, Algorithms 4.4 and 5.1).
///
/// For an m x n matrix A and target rank r: draw a Gaussian test matrix Omega (n x (r + p)),
/// form Y = A Omega, orthonormalise, apply `powerIterations` rounds of
/// Q <- qr(A qr(A^T Q)) to sharpen the spectrum, then take the exact SVD of the small matrix
/// B = Q^T A. Defaults: oversampling p = 10 and 2 power iterations, which the paper shows is
/// enough for gradient-like spectra; MLorc uses the same scheme.
extension Linalg {
    public static func randomizedSVD(
        _ a: Tensor, rank: Int, oversampling: Int = 10, powerIterations: Int = 2, rng: inout RandomStream
    ) throws -> (u: Tensor, s: [Float], vt: Tensor) {
        guard a.shape.count == 2 else { throw LinalgError.invalidArgument("randomizedSVD needs a matrix") }
        let m = a.shape[0], n = a.shape[1]
        guard rank > 0, rank <= min(m, n) else {
            throw LinalgError.invalidArgument("rank \(rank) must be in 1...\(min(m, n))")
        }
        let l = min(min(m, n), rank + max(0, oversampling))
        let omega = Tensor(uninitialized: [n, l])
        rng.fillNormal(omega)
        var q = try qr(a.matmul(omega)).q  // m x l
        for _ in 0..<max(0, powerIterations) {
            let z = try qr(a.matmul(q, transposeSelf: true)).q  // n x l
            q = try qr(a.matmul(z)).q
        }
        let b = q.matmul(a, transposeSelf: true)  // l x n
        let small = try svd(b)  // ub: l x l, s: l, vt: l x n
        let u = q.matmul(small.u)  // m x l
        // Truncate to rank.
        let uOut = Tensor(uninitialized: [m, rank]), vtOut = Tensor(uninitialized: [rank, n])
        for i in 0..<m { for j in 0..<rank { uOut.data[i * rank + j] = u.data[i * l + j] } }
        vtOut.data.update(from: small.vt.data, count: rank * n)
        return (uOut, Array(small.s.prefix(rank)), vtOut)
    }
}

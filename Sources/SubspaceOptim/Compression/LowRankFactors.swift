import SubspaceCore
import SubspaceModels

/// A matrix stored as rank-r factors `A ≈ U diag(S) Vᵀ`: U is rows x r, S has r values, Vt
/// is r x columns. MLorc keeps each compressed moment in this form between steps.
///
/// Memory: r·(rows + columns + 1) floats.
public struct LowRankFactors {
    public var u: Tensor
    public var s: Tensor
    public var vt: Tensor

    /// Zero factors (the reconstruction is the zero matrix).
    public init(rows: Int, columns: Int, rank: Int) {
        u = Tensor(zeros: [rows, rank]); s = Tensor(zeros: [rank]); vt = Tensor(zeros: [rank, columns])
    }

    public init(u: Tensor, s: Tensor, vt: Tensor) { self.u = u; self.s = s; self.vt = vt }

    public var rank: Int { s.count }
    public var rows: Int { u.shape[0] }
    public var columns: Int { vt.shape[1] }
    public var byteCount: Int { u.byteCount + s.byteCount + vt.byteCount }

    /// Writes U diag(S) Vt into `out` (rows·columns elements, any shape).
    public func reconstruct(into out: Tensor) {
        precondition(out.count == rows * columns, "reconstruct: \(out.shape) for \(rows) x \(columns) factors")
        let r = rank, m = rows, n = columns
        let us = Tensor(uninitialized: [m, r])
        let ud = u.data, sd = s.data, usd = us.data
        for i in 0..<m { for j in 0..<r { usd[i * r + j] = ud[i * r + j] * sd[j] } }
        withExtendedLifetime((us, vt)) {
            BLAS.gemm(m: m, n: n, k: r, a: us.data, lda: r, b: vt.data, ldb: n, c: out.data, ldc: n)
        }
    }

    /// The rank-`rank` randomized SVD of `a` viewed as a rows x columns matrix
    /// (`Linalg.randomizedSVD`: Halko et al.'s range finder with `oversampling` extra columns
    /// and `powerIterations` subspace iterations). If LAPACK fails on it, the exact truncated
    /// SVD is tried; `nil` when both fail.
    public static func compress(
        _ a: Tensor, rows: Int, columns: Int, rank: Int, oversampling: Int, powerIterations: Int,
        rng: inout RandomStream
    ) -> LowRankFactors? {
        let matrix = a.shape == [rows, columns] ? a : a.reshaped([rows, columns])
        if let f = try? Linalg.randomizedSVD(
            matrix, rank: rank, oversampling: oversampling, powerIterations: powerIterations, rng: &rng) {
            return LowRankFactors(u: f.u, s: Tensor(shape: [rank], values: f.s), vt: f.vt)
        }
        guard let f = try? Linalg.svd(matrix) else { return nil }
        return truncate(u: f.u, s: f.s, vt: f.vt, rank: rank)
    }

    /// The leading `rank` triplets of a thin SVD (U rows x k, S k values, Vt k x columns).
    public static func truncate(u: Tensor, s: [Float], vt: Tensor, rank: Int) -> LowRankFactors {
        let m = u.shape[0], k = u.shape[1], n = vt.shape[1]
        precondition(rank <= k, "truncate: rank \(rank) of a \(k)-term SVD")
        let uo = Tensor(uninitialized: [m, rank])
        for i in 0..<m { for j in 0..<rank { uo.data[i * rank + j] = u.data[i * k + j] } }
        let vo = Tensor(uninitialized: [rank, n])
        vo.data.update(from: vt.data, count: rank * n)
        return LowRankFactors(u: uo, s: Tensor(shape: [rank], values: Array(s.prefix(rank))), vt: vo)
    }

    /// Checkpoint tensors under `prefix` + `_u`, `_s`, `_vt`.
    public func encode(prefix: String, into out: inout [String: Tensor]) {
        out[prefix + "_u"] = u; out[prefix + "_s"] = s; out[prefix + "_vt"] = vt
    }

    /// The inverse of `encode`, checking the shapes.
    public static func decode(
        _ t: [String: Tensor], prefix: String, rows: Int, columns: Int, rank: Int, parameter: Parameter
    ) throws -> LowRankFactors {
        LowRankFactors(
            u: try OptimizerStateError.tensor(t, prefix + "_u", shape: [rows, rank], parameter: parameter),
            s: try OptimizerStateError.tensor(t, prefix + "_s", shape: [rank], parameter: parameter),
            vt: try OptimizerStateError.tensor(t, prefix + "_vt", shape: [rank, columns], parameter: parameter))
    }

    /// Checkpoint keys for `prefix`.
    public static func keys(prefix: String) -> [String] { [prefix + "_u", prefix + "_s", prefix + "_vt"] }
}

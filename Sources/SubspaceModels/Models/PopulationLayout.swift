import SubspaceCore

/// The members of an evolution-strategies population evaluated in one stacked forward pass
/// (EGGROLL: Sarkar et al., 2025, "Evolution Strategies at the Hyperscale", arXiv
/// 2511.16652, section 3; reference `HyperscaleES`, `noiser/eggroll.py`, `do_mm`).
///
/// The batch is the members' common batch repeated `members` times, member-major: member i
/// owns rows `i * rowsPerMember ..< (i + 1) * rowsPerMember` of every activation. Member i
/// runs the weights theta + delta_i, where each delta is given per parameter name:
///
/// - a matrix W [m, n] (a dense slot, the embedding table, the LM head) takes a rank-r
///   delta `scale_i * a_i b_i^T` (a_i [m, r], b_i [n, r]); a slot computes
///   `Y = X W^T` once for all rows (one GEMM, as inference), then adds, on member i's rows
///   only, `scale_i (X_i b_i) a_i^T`: O(rows r (m + n)) more work and no m x n buffer. The
///   embedding's delta is gathered by token: row t of the table moves by
///   `scale_i a_i[t] b_i^T`.
/// - a vector (a norm gain g) takes a dense delta `scale_i z_i`: member i's rows are
///   normalised with the gain `g + scale_i z_i`.
///
/// Parameters with no delta are shared by every member unchanged. The per-member work is
/// split over the cores by member (and by rows within a member when there are fewer members
/// than cores); the shared GEMM splits as any other. The model reads the layout during
/// `LlamaModel.populationLoss` only.
public final class PopulationLayout {
    /// Member i's rank-r delta of a matrix: `scale * a b^T`, a [out, r], b [in, r].
    public struct LowRank {
        public let a: Tensor, b: Tensor, scale: Float
        public init(a: Tensor, b: Tensor, scale: Float) {
            precondition(a.shape.count == 2 && b.shape.count == 2 && a.shape[1] == b.shape[1], "low-rank factor shapes")
            self.a = a; self.b = b; self.scale = scale
        }
    }

    /// Member i's dense delta of a vector: `scale * z`.
    public struct Dense {
        public let z: Tensor, scale: Float
        public init(z: Tensor, scale: Float) { self.z = z; self.scale = scale }
    }

    public let members: Int
    /// Per parameter name, one delta per member.
    public private(set) var lowRank: [String: [LowRank]] = [:]
    public private(set) var dense: [String: [Dense]] = [:]
    /// Rows of each member's block, set by the model for the pass.
    var rowsPerMember = 0

    public init(members: Int) {
        precondition(members >= 1, "a population layout needs a member")
        self.members = members
    }

    /// Sets the matrix `name`'s deltas, one per member.
    public func setLowRank(_ name: String, _ deltas: [LowRank]) {
        precondition(deltas.count == members, "one delta per member")
        lowRank[name] = deltas
    }

    /// Sets the vector `name`'s deltas, one per member.
    public func setDense(_ name: String, _ deltas: [Dense]) {
        precondition(deltas.count == members, "one delta per member")
        dense[name] = deltas
    }

    /// The member blocks meeting rows `rows`, each cut into pieces so that at least
    /// `Parallel.workers` pieces exist: (member, row range) pairs.
    private func pieces(_ rows: Range<Int>) -> [(Int, Range<Int>)] {
        let per = rowsPerMember
        var segments: [(Int, Range<Int>)] = []
        var r = rows.lowerBound
        while r < rows.upperBound {
            let i = r / per, hi = min(rows.upperBound, (i + 1) * per)
            segments.append((i, r..<hi))
            r = hi
        }
        let split = max(1, (Parallel.workers + segments.count - 1) / segments.count)
        guard split > 1 else { return segments }
        return segments.flatMap { (i, range) -> [(Int, Range<Int>)] in
            let step = max(16, (range.count + split - 1) / split)
            return stride(from: range.lowerBound, to: range.upperBound, by: step).map { (i, $0..<min(range.upperBound, $0 + step)) }
        }
    }

    /// `y[r] += scale_i (x[r] b_i) a_i^T` for the rows `rows` (global row indices; `x` and
    /// `y` point at row `rows.lowerBound`) of the matrix `name` [out, in]; nothing when the
    /// matrix has no delta.
    func addLowRank(
        _ name: String, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Range<Int>, inFeatures: Int, outFeatures: Int
    ) {
        guard let deltas = lowRank[name], !rows.isEmpty else { return }
        let parts = pieces(rows)
        Parallel.perform(parts.count) { p in
            let (i, range) = parts[p]
            let d = deltas[i], r = d.a.shape[1], count = range.count, off = range.lowerBound - rows.lowerBound
            precondition(d.a.shape[0] == outFeatures && d.b.shape[0] == inFeatures, "\(name): delta shape")
            let t = UnsafeMutablePointer<Float>.allocate(capacity: count * r)
            defer { t.deallocate() }
            if r == 1 {  // rank 1 (the default): a matrix-vector product and row updates, no GEMM packing
                BLAS.gemv(m: count, n: inFeatures, a: x + off * inFeatures, lda: inFeatures, x: d.b.data, y: t, parallel: false)
                for i in 0..<count { BLAS.axpy(outFeatures, d.scale * t[i], d.a.data, y + (off + i) * outFeatures) }
                return
            }
            BLAS.gemm(m: count, n: r, k: inFeatures, a: x + off * inFeatures, lda: inFeatures, b: d.b.data, ldb: r, c: t, ldc: r, parallel: false)
            BLAS.gemm(
                transB: true, m: count, n: outFeatures, k: r, alpha: d.scale, a: t, lda: r, b: d.a.data, ldb: r,
                beta: 1, c: y + off * outFeatures, ldc: outFeatures, parallel: false)
        }
    }

    /// The embedding's delta gathered by token: `out[j] += scale_i a_i[token_j] b_i^T`.
    func addEmbedding(_ name: String, tokens: UnsafePointer<Int32>, out: UnsafeMutablePointer<Float>, count: Int, dim: Int) {
        guard let deltas = lowRank[name] else { return }
        let parts = pieces(0..<count)
        Parallel.perform(parts.count) { p in
            let (i, range) = parts[p]
            let d = deltas[i], r = d.a.shape[1]
            for j in range {
                let arow = d.a.data + Int(tokens[j]) * r, o = out + j * dim
                for q in 0..<r {
                    let c = d.scale * arow[q]
                    for e in 0..<dim { o[e] += c * d.b.data[e * r + q] }
                }
            }
        }
    }

    /// RMSNorm of every row with member i's gain `weight + scale_i z_i` on its rows
    /// (`RMSNorm.forward` with the shared gain when `name` has no delta).
    func rmsNorm(
        _ name: String, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, rows n: Int, dim: Int, eps: Float
    ) {
        guard let deltas = dense[name] else {
            return RMSNorm.forward(x: x, weight: weight, y: y, rstd: rstd, rows: n, dim: dim, eps: eps)
        }
        let gain = UnsafeMutablePointer<Float>.allocate(capacity: dim)
        defer { gain.deallocate() }
        for i in 0..<members {
            let lo = i * rowsPerMember, d = deltas[i]
            for e in 0..<dim { gain[e] = weight[e] + d.scale * d.z.data[e] }
            RMSNorm.forward(x: x + lo * dim, weight: gain, y: y + lo * dim, rstd: rstd + lo, rows: rowsPerMember, dim: dim, eps: eps)
        }
    }
}

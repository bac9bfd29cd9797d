import SubspaceCore

/// The shape of a tensor-train matrix (TT-matrix, TTM; Oseledets 2011, "Tensor-train
/// decomposition"): a weight `W[m, n]` with m = m_1 ... m_d (output modes) and n = n_1 ... n_d
/// (input modes), held as d cores `G_k[r_(k-1), m_k, n_k, r_k]` with r_0 = r_d = 1:
///
///     W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] G_2[:, i_2, j_2, :] ... G_d[:, i_d, j_d, :]
///
/// (row-major multi-indices, i_1 and j_1 the slowest). It also prices the two contraction
/// orders `TensorTrainLinear` runs, so the cheaper one is chosen for each shape and batch.
///
/// **Modes.** Each side is split into d factors as equal as possible (`balancedFactors`: the
/// split whose largest factor is smallest, then whose smallest is largest), in increasing
/// order, so that the cores are as small as the shape allows (a core's size is
/// r^2 m_k n_k, minimised for a fixed product when the m_k n_k are equal). A side that has
/// fewer than d prime factors cannot be split into d modes of at least 2 and is refused. The
/// paper's six-encoder model uses mirrored orders ([12, 8, 8] against [8, 8, 12]); with
/// TT-matrix cores pairing m_k with n_k, equal orders keep every core's m_k n_k close.
///
/// **Ranks.** An internal rank is capped by what the unfolding of W at that cut can hold,
/// r_k <= min(m_1 n_1 ... m_k n_k, m_(k+1) n_(k+1) ... m_d n_d); a larger rank would add
/// parameters and no expressiveness.
public struct TensorTrainShape: Equatable, Sendable, CustomStringConvertible {
    public let outModes: [Int]
    public let inModes: [Int]
    /// r_0 ... r_d (d + 1 entries, the first and last 1).
    public let ranks: [Int]

    public var order: Int { outModes.count }
    public var outFeatures: Int { outModes.reduce(1, *) }
    public var inFeatures: Int { inModes.reduce(1, *) }
    /// The internal ranks r_1 ... r_(d-1), the lengths of the gates.
    public var internalRanks: [Int] { Array(ranks.dropFirst().dropLast()) }

    /// The shape of core k (0-based): `[r_k, m_k, n_k, r_(k+1)]`.
    public func coreShape(_ k: Int) -> [Int] { [ranks[k], outModes[k], inModes[k], ranks[k + 1]] }

    public var description: String {
        "TT-matrix out \(outModes) x in \(inModes), ranks \(ranks)"
    }

    /// Explicit modes and internal ranks.
    public init(outModes: [Int], inModes: [Int], internalRanks: [Int]) {
        precondition(outModes.count == inModes.count && internalRanks.count == outModes.count - 1, "TT shape: d modes per side and d - 1 ranks")
        self.outModes = outModes; self.inModes = inModes; ranks = [1] + internalRanks + [1]
    }

    /// Modes from `balancedFactors` and every internal rank min(`maxRank`, the cut's limit).
    /// - Throws: `ConfigurationError` when a side cannot be split into `order` modes of at
    ///   least 2, or for an order below 1 or a rank below 1.
    public init(outFeatures: Int, inFeatures: Int, order: Int, maxRank: Int, slot: String = "a slot") throws {
        guard order >= 1 else { throw ConfigurationError("a tensor train needs at least 1 mode (got \(order))") }
        guard maxRank >= 1 else { throw ConfigurationError("the TT rank must be at least 1 (got \(maxRank))") }
        func split(_ n: Int, _ side: String) throws -> [Int] {
            guard let f = Self.balancedFactors(n, into: order) else {
                throw ConfigurationError("\(slot): its \(side) size \(n) cannot be factorised into \(order) modes of at least 2 (lower --tt-modes)")
            }
            return f
        }
        let m = try split(outFeatures, "output"), n = try split(inFeatures, "input")
        self.init(outModes: m, inModes: n, maxRank: maxRank)
    }

    /// Explicit modes (d per side) and every internal rank min(`maxRank`, the cut's limit).
    public init(outModes m: [Int], inModes n: [Int], maxRank: Int) {
        let order = m.count
        var r: [Int] = []
        for k in 1..<max(order, 1) {
            let left = (0..<k).reduce(1) { $0 * m[$1] * n[$1] }, right = (k..<order).reduce(1) { $0 * m[$1] * n[$1] }
            r.append(min(maxRank, left, right))
        }
        self.init(outModes: m, inModes: n, internalRanks: r)
    }

    /// `n` as `d` factors of at least 2 in increasing order, the largest as small as possible
    /// (ties: the smallest as large as possible); nil when `n` has fewer than d prime factors.
    public static func balancedFactors(_ n: Int, into d: Int) -> [Int]? {
        guard d >= 1, n >= 1 else { return nil }
        if d == 1 { return [n] }
        var best: [Int]? = nil
        func better(_ a: [Int], _ b: [Int]) -> Bool {
            a.last! != b.last! ? a.last! < b.last! : a.first! > b.first!
        }
        // Non-decreasing factor lists: each factor at least the previous one.
        func search(_ rest: Int, _ k: Int, _ lower: Int, _ acc: [Int]) {
            if k == 1 {
                guard rest >= lower else { return }
                let c = acc + [rest]
                if best == nil || better(c, best!) { best = c }
                return
            }
            var f = lower
            while f * f <= rest {
                if rest % f == 0 { search(rest / f, k - 1, f, acc + [f]) }
                f += 1
            }
        }
        search(n, d, 2, [])
        return best
    }

    /// Core parameters with these internal ranks (the gates not counted, as the reference's
    /// `compute_size`): sum_k r_(k-1) m_k n_k r_k; 0 when a rank is 0 (W is then zero).
    public func coreParameters(internalRanks r: [Int]) -> Int {
        let full = [1] + r + [1]
        if r.contains(0) { return 0 }
        return (0..<order).reduce(0) { $0 + full[$1] * outModes[$1] * inModes[$1] * full[$1 + 1] }
    }

    // MARK: - Contraction costs

    /// FLOPs (2 per multiply-add) of the k-th GEMM (0-based) of the sequential order over
    /// `rows` input rows: `[R_k P_k, r_k n_k] x [r_k n_k, m_k r_(k+1)]` with
    /// P_k = rows m_1 ... m_(k-1) and R_k = n_(k+1) ... n_d.
    func sequentialStepFlops(_ k: Int, rows: Int) -> Double {
        let p = Double(rows) * Double(outModes[..<k].reduce(1, *))
        let rest = Double(inModes[(k + 1)...].reduce(1, *))
        return 2 * rest * p * Double(ranks[k] * inModes[k]) * Double(outModes[k] * ranks[k + 1])
    }

    /// FLOPs of rebuilding the dense W from the cores: the GEMMs
    /// `[M N, r_k] x [r_k, m_k n_k r_(k+1)]` for k >= 1 (M, N the modes before k).
    var rebuildFlops: Double {
        var total = 0.0
        for k in 1..<max(order, 1) {
            let mn = Double(outModes[..<k].reduce(1, *) * inModes[..<k].reduce(1, *))
            total += 2 * mn * Double(ranks[k]) * Double(outModes[k] * inModes[k] * ranks[k + 1])
        }
        return total
    }

    /// FLOPs of a pass over `rows` rows in `order`: forward only (`training` false), or
    /// forward, input gradient and parameter gradients as `TensorTrainLinear` computes them
    /// (it keeps nothing between the calls, so each recomputes what it needs).
    public func flops(_ contraction: TensorTrainContraction, rows: Int, training: Bool) -> Double {
        let dense = 2 * Double(rows) * Double(outFeatures) * Double(inFeatures)
        switch contraction {
        case .sequential:
            let steps = (0..<order).map { sequentialStepFlops($0, rows: rows) }
            let pass = steps.reduce(0, +)
            // input gradient: one pass back; parameter gradients: the forward chain again, the
            // backward chain without its first GEMM, and one S^T dT per core.
            return training ? pass + pass + (pass + (pass - steps[0]) + pass) : pass
        case .dense:
            // forward: rebuild + x W^T; input gradient: rebuild + dy W; parameter gradients:
            // rebuild + dy^T x + the rebuild's backward (two GEMMs per rebuild GEMM).
            return training ? 3 * rebuildFlops + 3 * dense + 2 * rebuildFlops : rebuildFlops + dense
        }
    }

    /// The cheaper order for `rows` rows (the sequential one on a tie).
    public func cheaperContraction(rows: Int, training: Bool) -> TensorTrainContraction {
        flops(.dense, rows: rows, training: training) < flops(.sequential, rows: rows, training: training) ? .dense : .sequential
    }
}

/// How a TT-matrix operator contracts its input with its cores.
public enum TensorTrainContraction: String, Codable, Sendable, CaseIterable {
    /// The input through the cores one by one (one GEMM and one transpose per core); no
    /// `[out, in]` matrix is ever formed. Cheapest for few rows (sampling, small batches).
    case sequential
    /// Rebuild the dense W from the cores, then one GEMM with the input. Cheapest when many
    /// rows share the rebuild (training batches) and the ranks are high.
    case dense
}

import SubspaceCore

/// A tensor-train matrix with a learnable gate on each internal rank (CoMERA, Yang et al.,
/// NeurIPS 2024): the linear slots (`TensorTrainLinear`) and the TTM embedding
/// (`TensorTrainEmbedding`). What the objective (`ComeraObjective`), the live report
/// (`TensorTrainSummary`) and the pruning rule need, written once:
///
///     G^_k = G_k diag(g^_k) (k < d),  g^_k[b] = g_k[b] if rank b of cut k is active, else 0.
///
/// Whether a rank is active is the conformer's rule (`isActive(gate:rank:)`): |g| at or above
/// the threshold for the slots, and that *and* never pruned before for the embedding.
public protocol TensorTrainGated: AnyObject {
    var shape: TensorTrainShape { get }
    /// G_1 ... G_d, `[r_(k-1), m_k, n_k, r_k]`.
    var cores: [Parameter] { get }
    /// g_1 ... g_(d-1), `[r_k]`.
    var gates: [Parameter] { get }
    /// Whether rank `b` of internal cut `k` (0-based) takes part in the map.
    func isActive(gate k: Int, rank b: Int) -> Bool
    /// What the same matrix would hold densely (out x in; the real vocabulary x dim for the
    /// embedding): the numerator of the compression ratio.
    var denseParameterCount: Int { get }
}

extension TensorTrainGated {
    /// The surviving internal ranks r^_1 ... r^_(d-1).
    public var activeRanks: [Int] {
        gates.indices.map { k in (0..<gates[k].count).reduce(0) { $0 + (isActive(gate: k, rank: $1) ? 1 : 0) } }
    }

    /// Core parameters over the surviving ranks (`TensorTrainShape.coreParameters`).
    public var activeParameterCount: Int { shape.coreParameters(internalRanks: activeRanks) }

    /// Dense parameters per surviving core parameter (infinite when a cut has no rank left).
    public var compressionRatio: Double { Double(denseParameterCount) / Double(activeParameterCount) }

    /// G^_1 ... G^_d as new tensors (the last core is not gated).
    func gatedCores() -> [Tensor] {
        (0..<shape.order).map { k in
            let c = cores[k].value.copy()
            guard k < gates.count else { return c }
            let r = shape.ranks[k + 1]
            let g = (0..<r).map { b -> Float in isActive(gate: k, rank: b) ? gates[k].value.data[b] : 0 }
            for i in stride(from: 0, to: c.count, by: r) {
                for b in 0..<r { c.data[i + b] *= g[b] }
            }
            return c
        }
    }

    /// From dL/dG^_k to the cores and gates: dG_k += dG^_k diag(g^_k),
    /// dg_k[b] += [b active] sum over (a, i, j) of dG^_k[a, i, j, b] G_k[a, i, j, b].
    /// Frozen tensors are skipped.
    func addParameterGradients(gated dG: [Tensor]) {
        withExtendedLifetime(dG) {
            for k in 0..<shape.order {
                let src = dG[k].data, n = dG[k].count
                guard k < gates.count else {
                    if cores[k].requiresGrad { let d = cores[k].gradient().data; for i in 0..<n { d[i] += src[i] } }
                    continue
                }
                let gv = gates[k].value.data, r = shape.ranks[k + 1], core = cores[k].value.data
                let active = (0..<r).map { isActive(gate: k, rank: $0) }
                var dgate = [Float](repeating: 0, count: r)
                let dcore = cores[k].requiresGrad ? cores[k].gradient().data : nil
                for i in stride(from: 0, to: n, by: r) {
                    for b in 0..<r where active[b] {
                        dcore?[i + b] += src[i + b] * gv[b]
                        dgate[b] += src[i + b] * core[i + b]
                    }
                }
                if gates[k].requiresGrad { let d = gates[k].gradient().data; for b in 0..<r { d[b] += dgate[b] } }
            }
        }
    }
}

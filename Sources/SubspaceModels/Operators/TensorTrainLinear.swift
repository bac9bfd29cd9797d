import Foundation
import SubspaceCore

/// CoMERA's tensor-train linear layer (Yang et al., NeurIPS 2024, "CoMERA: Computing- and
/// Memory-Efficient Training via Rank-Adaptive Tensor Optimization", arXiv 2405.14377; code
/// `ziyangjoy/CoMERA`, `tensor_layers_CoMERA/low_rank_tensors.py`): the slot's weight
/// `W[m, n]` is a TT-matrix (`TensorTrainShape`) whose internal ranks carry learnable
/// diagonal gates,
///
///     W = G_1 diag(g^_1) G_2 diag(g^_2) ... diag(g^_(d-1)) G_d,   y = x W^T,
///     g^_k[b] = g_k[b] if |g_k[b]| >= threshold, else 0,
///
/// so a gate below the threshold removes its rank slice: it contributes exactly zero to W
/// and its gate and rank slice get zero gradient (the mask is a constant of the pass). The
/// reference zeroes gates <= threshold, negative ones included (`threshold(D, 1e-2, 0)`);
/// here the magnitude counts, so a gate the penalty pushes through zero is pruned, not a
/// negative weight.
///
/// **Initialisation** (the reference's `build_factors_Gaussian` for linear layers): core
/// entries N(0, 1) / sqrt(r_k) * s^(1/d) with s = sqrt(1 / (in + out)), gates one, so each
/// entry of W has variance s^2 (the products over the internal ranks cancel the 1/r_k).
///
/// **Contraction** (`TensorTrainContraction`): either the input through the cores one by one
/// (`sequential`; one GEMM `[rows', r_k n_k] x [r_k n_k, m_k r_(k+1)]` and one transpose per
/// core, never an `[out, in]` matrix) or the dense W rebuilt from the cores and one GEMM
/// (`dense`). `contraction` nil picks the one with fewer FLOPs for the shape and the number
/// of rows of each call (`TensorTrainShape.flops`): sampling one token at a time runs the
/// sequential order, training batches of thousands of rows usually the dense one. The
/// operator keeps nothing between forward and backward (both recompute what they need from
/// the input), so it has no activations of its own; the sequential order's intermediates
/// (up to rows * m_1 r_1 n / n_1 floats) are transient.
///
/// Names are the reference's `ParameterList`s under the slot's path:
/// `<path>.tensor.factors.<k>` `[r_k, m_k, n_k, r_(k+1)]` and
/// `<path>.tensor.rank_parameters.<k>` `[r_(k+1)]` (k from 0).
public final class TensorTrainLinear: LinearOperator, DenseMappable, TensorTrainGated {
    public let shape: TensorTrainShape
    /// G_1 ... G_d.
    public let cores: [Parameter]
    /// g_1 ... g_(d-1).
    public let gates: [Parameter]
    /// Gates whose magnitude is below this are pruned.
    public let threshold: Float
    /// A fixed contraction order, or nil to pick the cheaper one per call.
    public var contraction: TensorTrainContraction?

    public var inFeatures: Int { shape.inFeatures }
    public var outFeatures: Int { shape.outFeatures }
    public var parameters: [Parameter] { cores + gates }

    public init(shape: TensorTrainShape, cores: [Parameter], gates: [Parameter], threshold: Float, contraction: TensorTrainContraction? = nil) {
        precondition(cores.count == shape.order && gates.count == shape.order - 1, "TT: d cores and d - 1 gates")
        for k in 0..<shape.order { precondition(cores[k].shape == shape.coreShape(k), "TT core \(k): \(cores[k].shape), expected \(shape.coreShape(k))") }
        for k in 0..<gates.count { precondition(gates[k].shape == [shape.ranks[k + 1]], "TT gate \(k): \(gates[k].shape)") }
        self.shape = shape; self.cores = cores; self.gates = gates; self.threshold = threshold; self.contraction = contraction
    }

    // MARK: - Ranks and size

    /// Whether a gate value survives (|g| >= threshold).
    @inline(__always) func isActive(_ v: Float) -> Bool { abs(v) >= threshold }

    /// Rank b of cut k is active while its gate's magnitude is at least the threshold; a
    /// pruned rank comes back if the optimizer moves its gate back up (the reference's slots).
    public func isActive(gate k: Int, rank b: Int) -> Bool { isActive(gates[k].value.data[b]) }

    public var denseParameterCount: Int { outFeatures * inFeatures }

    /// The order a call over `rows` rows runs.
    func order(rows: Int, training: Bool) -> TensorTrainContraction {
        contraction ?? shape.cheaperContraction(rows: rows, training: training)
    }

    // MARK: - LinearOperator

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode) {
        if rows == 0 { return }
        let g = gatedCores()
        switch order(rows: rows, training: mode == .training) {
        case .dense:
            let w = rebuild(g).last!
            withExtendedLifetime(w) {
                BLAS.gemm(transB: true, m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures, b: w.data, ldb: inFeatures,
                          beta: accumulate ? 1 : 0, c: y, ldc: outFeatures)
            }
        case .sequential:
            let mats = coreMatrices(g)
            let s = states(x, rows: rows, mats: mats, all: false).last!
            let d = shape.order - 1
            withExtendedLifetime((s, mats)) {
                BLAS.gemm(m: rows * shape.outModes[..<d].reduce(1, *), n: shape.outModes[d], k: shape.ranks[d] * shape.inModes[d],
                          a: s.data, lda: shape.ranks[d] * shape.inModes[d], b: mats[d].data, ldb: shape.outModes[d],
                          beta: accumulate ? 1 : 0, c: y, ldc: shape.outModes[d])
            }
        }
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        if rows == 0 { return }
        let g = gatedCores()
        switch order(rows: rows, training: true) {
        case .dense:
            let w = rebuild(g).last!
            withExtendedLifetime(w) {
                BLAS.gemm(m: rows, n: inFeatures, k: outFeatures, a: dy, lda: outFeatures, b: w.data, ldb: inFeatures,
                          beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures)
            }
        case .sequential:
            let mats = coreMatrices(g)
            var dt = Tensor(uninitialized: [rows * outFeatures])
            dt.data.update(from: dy, count: rows * outFeatures)
            for k in stride(from: shape.order - 1, through: 0, by: -1) {
                let ds = inputGradientStep(k, dt: dt, mats: mats, rows: rows)
                if k > 0 {
                    dt = untranspose(ds, k: k, rows: rows)
                } else {
                    withExtendedLifetime(ds) {
                        TensorTrainKernels.transpose(ds.data, rows: inFeatures / shape.inModes[0], cols: rows * shape.inModes[0], into: dx, accumulate: accumulate)
                    }
                }
            }
        }
    }

    public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        if rows == 0 || !(cores.contains(where: \.requiresGrad) || gates.contains(where: \.requiresGrad)) { return }
        let g = gatedCores()
        let dG: [Tensor]
        switch order(rows: rows, training: true) {
        case .dense: dG = denseCoreGradients(g, dy: dy, x: x, rows: rows)
        case .sequential: dG = sequentialCoreGradients(g, dy: dy, x: x, rows: rows)
        }
        addParameterGradients(gated: dG)
    }

    /// The dense W, y = x W^T (adapters merged, the gates applied).
    public func denseWeight() -> Tensor {
        let w = rebuild(gatedCores()).last!
        return w.reshaped([outFeatures, inFeatures])
    }
}

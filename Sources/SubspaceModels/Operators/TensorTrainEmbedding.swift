import Foundation
import SubspaceCore

/// CoMERA's tensorized embedding (Yang et al., NeurIPS 2024, arXiv 2405.14377, section 3 and
/// its "fast TTM embedding lookup"; code `ziyangjoy/CoMERA`, `tensor_layers_CoMERA`'s TTM
/// embedding): the table E `[V, d]` is a TT-matrix (`TensorTrainShape`, the vocabulary on
/// the row side, V' = m_1 ... m_D >= V, the dimension on the column side, d = n_1 ... n_D)
/// with gated internal ranks, as the slots (`TensorTrainGated`):
///
///     E[t, (j_1..j_D)] = G^_1[0, i_1, j_1, :] G^_2[:, i_2, j_2, :] ... G^_D[:, i_D, j_D, 0],
///     (i_1, ..., i_D) the digits of token t in the mixed radix (m_1, ..., m_D), i_1 the slowest.
///
/// **Lookup.** Row t contracts only the slices `G^_k[:, i_k, :, :]` of its digits: A_1 =
/// G^_1[0, i_1] `[n_1, r_1]`, A_k = A_(k-1) `[n_1..n_(k-1), r_(k-1)]` times the slice
/// `[r_(k-1), n_k r_k]` (one GEMM per core, the slice read in place with leading dimension
/// m_k n_k r_k), and A_D `[d, 1]` is the row. The `[V, d]` table is never formed. A batch's
/// repeated tokens are contracted once (the paper's de-duplicated lookup): each distinct
/// token's row is computed, then copied to its positions. Backward sums dL/d(row) over a
/// token's positions, then runs the chain back once per distinct token (dS_k = A_(k-1)^T dA_k
/// into the slice's gradient, dA_(k-1) = dA_k S_k^T), recomputing the A_k: the embedding keeps
/// nothing but the token ids, which the model holds anyway.
///
/// **Padding.** A vocabulary that does not factor into D modes of similar size is padded up
/// to the first V' >= V that does (`ComeraSettings.Embedding`); rows V ... V' - 1 exist in the
/// cores' index space but are never looked up, never exported, and cost no parameter (the
/// cores' size depends on the modes, not on which rows are used).
///
/// **Pruning is permanent** here, unlike the slots: the reference removes an embedding rank
/// for good once its gate falls under the threshold. `masks` (frozen tensors, 1 per live
/// rank, saved with the checkpoint) record it: each training forward first sets the mask of
/// every rank whose gate is under the threshold to 0, and a rank is active only while its
/// mask is 1 and its gate at least the threshold. So a pruned rank contributes exactly zero
/// and gets no gradient from then on, even if an optimizer's momentum carries its gate back.
///
/// Names: `model.embed_tokens.tensor.factors.<k>` `[r_k, m_k, n_k, r_(k+1)]`,
/// `....rank_parameters.<k>` and `....rank_masks.<k>` `[r_(k+1)]`.
public final class TensorTrainEmbedding: TensorTrainGated {
    public let shape: TensorTrainShape
    /// V, the rows that exist (the vocabulary); `shape.outFeatures` is the padded V'.
    public let vocab: Int
    public let cores: [Parameter]
    public let gates: [Parameter]
    /// 1 for a live rank, 0 for a rank pruned for good.
    public let masks: [Parameter]
    public let threshold: Float

    public static let prefix = "model.embed_tokens.tensor."

    public var dim: Int { shape.inFeatures }
    public var parameters: [Parameter] { cores + gates + masks }
    public var denseParameterCount: Int { vocab * dim }

    public init(shape: TensorTrainShape, vocab: Int, cores: [Parameter], gates: [Parameter], masks: [Parameter], threshold: Float) {
        precondition(vocab <= shape.outFeatures, "TTM embedding: \(vocab) rows, modes cover \(shape.outFeatures)")
        precondition(cores.count == shape.order && gates.count == shape.order - 1 && masks.count == gates.count, "TTM: d cores, d - 1 gates and masks")
        for k in 0..<shape.order { precondition(cores[k].shape == shape.coreShape(k), "TTM core \(k): \(cores[k].shape)") }
        for k in 0..<gates.count { precondition(gates[k].shape == [shape.ranks[k + 1]] && masks[k].shape == gates[k].shape, "TTM gate \(k)") }
        self.shape = shape; self.vocab = vocab; self.cores = cores; self.gates = gates; self.masks = masks; self.threshold = threshold
    }

    public func isActive(gate k: Int, rank b: Int) -> Bool {
        masks[k].value.data[b] != 0 && abs(gates[k].value.data[b]) >= threshold
    }

    /// Prunes for good every rank whose gate is under the threshold (mask 0).
    public func prune() {
        for k in gates.indices {
            for b in 0..<gates[k].count where !(abs(gates[k].value.data[b]) >= threshold) { masks[k].value.data[b] = 0 }
        }
    }

    // MARK: - The chain of one token

    /// Floats of A_k (0-based k): n_1 ... n_(k+1) r_(k+1).
    private func partialCount(_ k: Int) -> Int { shape.inModes[...k].reduce(1, *) * shape.ranks[k + 1] }

    /// Where each A_k starts in the scratch, and the scratch's size.
    private var partialOffsets: (offsets: [Int], total: Int) {
        var o: [Int] = [], t = 0
        for k in 0..<shape.order { o.append(t); t += partialCount(k) }
        return (o, t)
    }

    /// The mixed-radix digits of token t, i_1 first.
    func digits(_ t: Int) -> [Int] {
        var d = [Int](repeating: 0, count: shape.order), rest = t
        for k in stride(from: shape.order - 1, through: 0, by: -1) { d[k] = rest % shape.outModes[k]; rest /= shape.outModes[k] }
        return d
    }

    /// The slice `G^_k[:, i, :, :]` as `[r_k, n_k r_(k+1)]` with its leading dimension.
    private func slice(_ g: Tensor, _ k: Int, _ i: Int) -> (UnsafeMutablePointer<Float>, ld: Int, cols: Int) {
        let cols = shape.inModes[k] * shape.ranks[k + 1]
        return (g.data + i * cols, shape.outModes[k] * cols, cols)
    }

    /// A_1 ... A_D of token `t` into `a` (at `offsets`); A_D is the row.
    private func chain(_ t: Int, _ g: [Tensor], into a: UnsafeMutablePointer<Float>, offsets: [Int]) {
        let i = digits(t)
        let (s0, _, c0) = slice(g[0], 0, i[0])
        (a + offsets[0]).update(from: s0, count: c0)
        for k in 1..<shape.order {
            let (s, ld, cols) = slice(g[k], k, i[k])
            let rows = shape.inModes[..<k].reduce(1, *)
            BLAS.gemm(m: rows, n: cols, k: shape.ranks[k], a: a + offsets[k - 1], lda: shape.ranks[k], b: s, ldb: ld, c: a + offsets[k], ldc: cols, parallel: false)
        }
    }

    /// The distinct tokens in order of first appearance, and each position's index among them.
    static func deduplicate(_ tokens: UnsafePointer<Int32>, count n: Int) -> (unique: [Int], index: [Int]) {
        var seen: [Int32: Int] = [:], unique: [Int] = [], index = [Int](repeating: 0, count: n)
        for p in 0..<n {
            if let u = seen[tokens[p]] { index[p] = u; continue }
            seen[tokens[p]] = unique.count; index[p] = unique.count; unique.append(Int(tokens[p]))
        }
        return (unique, index)
    }

    // MARK: - Forward and backward

    /// Row `tokens[p]` of E into row p of `out` `[n, d]`. A training forward first prunes.
    public func forward(tokens: UnsafePointer<Int32>, out: UnsafeMutablePointer<Float>, count n: Int, mode: ForwardMode) {
        if mode == .training { prune() }
        if n == 0 { return }
        let g = gatedCores(), (unique, index) = Self.deduplicate(tokens, count: n)
        let (offsets, total) = partialOffsets, d = dim
        let rows = Tensor(uninitialized: [unique.count * d]), scratch = Tensor(uninitialized: [total])
        withExtendedLifetime(g) {
            for (u, t) in unique.enumerated() {
                chain(t, g, into: scratch.data, offsets: offsets)
                (rows.data + u * d).update(from: scratch.data + offsets[shape.order - 1], count: d)
            }
        }
        for p in 0..<n { (out + p * d).update(from: rows.data + index[p] * d, count: d) }
    }

    /// Adds dL/dE's share of each token's row `dOut[p]` to the cores and gates.
    public func backward(tokens: UnsafePointer<Int32>, dOut: UnsafePointer<Float>, count n: Int) {
        if n == 0 || !(cores.contains(where: \.requiresGrad) || gates.contains(where: \.requiresGrad)) { return }
        let g = gatedCores(), (unique, index) = Self.deduplicate(tokens, count: n)
        let (offsets, total) = partialOffsets, d = dim
        let dRows = Tensor(zeros: [unique.count * d])
        for p in 0..<n {
            let dst = dRows.data + index[p] * d, src = dOut + p * d
            for j in 0..<d { dst[j] += src[j] }
        }
        let dG = (0..<shape.order).map { Tensor(zeros: shape.coreShape($0)) }
        let widest = (0..<shape.order).map(partialCount).max()!
        let a = Tensor(uninitialized: [total]), dA = Tensor(uninitialized: [widest]), dPrev = Tensor(uninitialized: [widest])
        withExtendedLifetime((g, dG)) {
            for (u, t) in unique.enumerated() {
                chain(t, g, into: a.data, offsets: offsets)
                let i = digits(t)
                dA.data.update(from: dRows.data + u * d, count: d)
                for k in stride(from: shape.order - 1, through: 1, by: -1) {
                    let (s, ld, cols) = slice(g[k], k, i[k]), (ds, _, _) = slice(dG[k], k, i[k])
                    let rows = shape.inModes[..<k].reduce(1, *), r = shape.ranks[k]
                    BLAS.gemm(transA: true, m: r, n: cols, k: rows, a: a.data + offsets[k - 1], lda: r, b: dA.data, ldb: cols, beta: 1, c: ds, ldc: ld, parallel: false)
                    BLAS.gemm(transB: true, m: rows, n: r, k: cols, a: dA.data, lda: cols, b: s, ldb: ld, c: dPrev.data, ldc: r, parallel: false)
                    dA.data.update(from: dPrev.data, count: rows * r)
                }
                let (ds0, _, c0) = slice(dG[0], 0, i[0])
                for j in 0..<c0 { ds0[j] += dA.data[j] }
            }
        }
        addParameterGradients(gated: dG)
    }

    /// The dense table `[V, d]` (rows of the real vocabulary only): what `merge` exports.
    public func denseTable() -> Tensor {
        let ids = (0..<vocab).map { Int32($0) }
        let out = Tensor(uninitialized: [vocab, dim])
        ids.withUnsafeBufferPointer { forward(tokens: $0.baseAddress!, out: out.data, count: vocab, mode: .inference) }
        return out
    }
}

extension TensorTrainEmbedding {
    /// The TTM embedding a model gets, shaped by `ComeraSettings.Embedding` once the
    /// vocabulary and dimension are known (`LlamaArchitecture`).
    public struct Kind: Sendable, Equatable {
        public let settings: ComeraSettings.Embedding
        /// The gates' pruning threshold (the slots', `ComeraSettings.threshold`).
        public let threshold: Float
        public init(settings: ComeraSettings.Embedding, threshold: Float) { self.settings = settings; self.threshold = threshold }

        /// Cores, gates, then masks (frozen); empty when the shape is impossible (`make` refuses it).
        public func parameterSpecs(vocab: Int, dim: Int, trainable: Bool) -> [ParameterSpec] {
            guard let s = try? settings.shape(vocab: vocab, dim: dim) else { return [] }
            let p = TensorTrainEmbedding.prefix
            let cores = (0..<s.order).map { ParameterSpec(name: p + "factors.\($0)", role: .embedding, shape: s.coreShape($0), trainable: trainable) }
            let gates = s.internalRanks.enumerated().map { ParameterSpec(name: p + "rank_parameters.\($0.offset)", role: .embedding, shape: [$0.element], trainable: trainable) }
            let masks = s.internalRanks.enumerated().map { ParameterSpec(name: p + "rank_masks.\($0.offset)", role: .embedding, shape: [$0.element], trainable: false) }
            return cores + gates + masks
        }

        /// Cores from N(0, 1) / sqrt(r_k) * s^(1/D) with s the model's `initStd`, so that each
        /// entry of E has variance s^2, the dense embedding's N(0, initStd^2) (the products over
        /// the internal ranks cancel the 1/r_k, as for the slots); gates and masks one.
        public func make(vocab: Int, dim: Int, trainable: Bool, initializer: ParameterInitializer) throws -> TensorTrainEmbedding {
            let s = try settings.shape(vocab: vocab, dim: dim)
            let specs = parameterSpecs(vocab: vocab, dim: dim, trainable: trainable), d = s.order, r = d - 1
            let scale = Float(pow(Double(initializer.std), 1 / Double(d)))
            let cores = (0..<d).map { k in initializer.normal(specs[k], std: scale / Float(s.ranks[k + 1]).squareRoot()) }
            let gates = specs[d..<(d + r)].map { initializer.constant($0, 1) }
            let masks = specs[(d + r)...].map { initializer.constant($0, 1) }
            return TensorTrainEmbedding(shape: s, vocab: vocab, cores: cores, gates: Array(gates), masks: Array(masks), threshold: threshold)
        }
    }
}

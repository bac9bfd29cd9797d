import SubspaceCore

/// An operator whose weight is a product of two trainable factors, `s B A`, that can be
/// rebalanced without changing the function it computes (Glentis et al. 2025, "Scalable
/// Parameter and Memory Efficient Pretraining for LLM", arXiv 2505.22922, weight
/// refactorization; `merge_and_reinit` in `OptimAI-Lab/Memory_Efficient_Pretraining`).
///
/// With the SVD B A = U_r S_r V_r^T (rank r at most), refactorization sets
///
///     B <- U_r S_r^(1/2),   A <- S_r^(1/2) V_r^T,
///
/// so B A, and with the scaling s outside it the whole map, is unchanged (to float
/// rounding), while the factors become balanced: B^T B = A A^T = S_r. The paper's Lemma
/// 4.1 gives the exponent 1/2 the best conditioning of the loss in the factors. Training
/// moves the factors off balance again, so it is repeated every cycle; the optimizer state
/// of the factors (expressed in the old coordinates) is the caller's to reset or keep
/// (the reference rebuilds the optimizer right after, which resets it).
///
/// A zero singular value leaves the matching row of A and column of B zero, as in the
/// reference: refactorizing a product with B = 0 (SLTrain's and LoRA's initial state)
/// zeroes both factors, a saddle that training cannot leave, so refactorize only after
/// training has moved the factors (the paper's schedule: every cycle of updates).
///
/// The reference forms the m x n product and takes its full SVD; Subspace computes the same
/// factors from thin QRs of B and A^T and the SVD of an r x r core (`ScaledFactors`), which
/// needs no m x n buffer.
public protocol Refactorizable: LinearOperator {
    /// Rebalances the factors; throws (changing nothing it cannot undo) if a factor is not
    /// finite or LAPACK fails.
    func refactorize() throws
}

extension LlamaModel {
    /// The slots whose operators can be refactorized, in slot order.
    public var refactorizableOperators: [any Refactorizable] { slots.compactMap { $0.op as? any Refactorizable } }

    /// Refactorizes every such operator (`Refactorizable.refactorize()`); returns how many.
    @discardableResult
    public func refactorizeOperators() throws -> Int {
        let ops = refactorizableOperators
        for op in ops { try op.refactorize() }
        return ops.count
    }
}

import SubspaceCore

/// The size of a model's tensor-train slots over their surviving ranks: what CoMERA's
/// progress line and `metrics.jsonl` report (`tt_params`, `tt_compression`, `tt_ranks`).
public struct TensorTrainSummary: Equatable, Sendable {
    /// TT slots (the TTM embedding counts as one).
    public var slots = 0
    /// Core parameters over the surviving ranks (`TensorTrainLinear.activeParameterCount`).
    public var parameters = 0
    /// out * in summed over the TT slots (V x d for the embedding): what dense ones would hold.
    public var denseParameters = 0
    /// Surviving internal ranks, summed over slots and cuts.
    public var activeRanks = 0
    /// Internal ranks as built, summed likewise.
    public var ranks = 0

    /// Dense parameters per surviving TT parameter.
    public var compression: Double { Double(denseParameters) / Double(parameters) }
}

extension LlamaModel {
    /// The TT slots' operators, in slot order.
    public var tensorTrainOperators: [TensorTrainLinear] { slots.compactMap { $0.op as? TensorTrainLinear } }

    /// Every gated tensor train: the TT slots, then the TTM embedding if there is one.
    public var tensorTrains: [any TensorTrainGated] {
        tensorTrainOperators + (tensorEmbedding.map { [$0] } ?? [])
    }

    /// The summary of the TT slots and embedding, nil when the model has none.
    public var tensorTrainSummary: TensorTrainSummary? {
        let ops = tensorTrains
        guard !ops.isEmpty else { return nil }
        var s = TensorTrainSummary()
        for op in ops {
            let active = op.activeRanks
            s.slots += 1
            s.parameters += op.shape.coreParameters(internalRanks: active)
            s.denseParameters += op.denseParameterCount
            s.activeRanks += active.reduce(0, +)
            s.ranks += op.shape.internalRanks.reduce(0, +)
        }
        return s
    }
}

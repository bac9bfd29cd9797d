import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// Data-parallel training: what a run needs to be split over N ranks, and how a global
/// batch is split.
///
/// `RunConfig.batch` is the global batch (what `run_config.json` records, and what a resume
/// under any N continues); each rank reads a contiguous share of batch / N sequences of
/// every global micro-batch, rank r the sequences r B ..< (r + 1) B. So N ranks at B
/// sequences each read, step by step, exactly the sequences one process reads at N B, and
/// with gradients averaged (`GradientReducer`) they take the same steps, up to the rounding
/// of the reduction order.
public enum DataParallel {
    /// Refuses a run that cannot be split over `ranks` ranks, in one line naming why.
    ///
    /// - zeroth-order rules (`--trainer mezo` ...) have no gradient to average: their step
    ///   is a scalar per perturbation, and splitting it is a different algorithm;
    /// - MKOR reads activation statistics per rank, which would differ between ranks and
    ///   let the weights drift apart;
    /// - the global batch must split evenly.
    public static func check(_ c: RunConfig, ranks: Int) throws {
        guard ranks >= 1 else { throw ConfigurationError("--ranks must be at least 1, got \(ranks)") }
        guard ranks > 1 else { return }
        if c.resolvedStepRule != .backprop {
            throw ConfigurationError("--trainer \(c.resolvedStepRule.rawValue) cannot run data-parallel (\(ranks) ranks): only backprop averages gradients over ranks; run it as one process")
        }
        if c.optimizer.hasPrefix("mkor") {
            throw ConfigurationError("--optimizer \(c.optimizer) cannot run data-parallel (\(ranks) ranks): its factors read each rank's own activations; run it as one process")
        }
        if c.batch % ranks != 0 {
            throw ConfigurationError("the global batch of \(c.batch) sequences does not split over \(ranks) ranks; use a multiple of \(ranks)")
        }
    }

    /// Rank `rank`'s share of a global batch: rows rank B ..< (rank + 1) B, B = batch / ranks.
    public static func shard(_ b: TokenBatch, rank: Int, of ranks: Int) -> TokenBatch {
        guard ranks > 1 else { return b }
        precondition(b.batch % ranks == 0 && rank >= 0 && rank < ranks, "batch \(b.batch) does not split over \(ranks) ranks")
        let rows = b.batch / ranks, n = rows * b.seq, lo = rank * n
        return TokenBatch(tokens: Array(b.tokens[lo..<(lo + n)]), targets: Array(b.targets[lo..<(lo + n)]), batch: rows, seq: b.seq)
    }

    /// Payload bytes a full-gradient step all-reduces: every trainable float once (plus the
    /// loss, 4 bytes). A ring all-reduce moves 2 (N - 1) / N times this over each rank's link.
    public static func gradientBytes(_ model: LlamaModel) -> Int {
        model.parameters.filter(\.requiresGrad).reduce(0) { $0 + $1.count } * MemoryLayout<Float>.stride
    }
}

import SubspaceModels
import SubspaceOptim

/// What one optimizer step of data-parallel training communicates, planned from the
/// parameters' shapes (`subspace memory --ranks N`); the measured counterpart is
/// `StepMetrics.comm_bytes` (this rank's all-reduced gradient bytes, in `metrics.jsonl`).
///
/// - `allreduceBytes`: the payload every rank all-reduces per step, every trainable
///   gradient once (what `GradientReducer` sends today, for every method);
/// - `ringBytesPerRank`: what a ring all-reduce (reduce-scatter then all-gather; Patarasuk
///   and Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations")
///   sends over each rank's link: 2 (N - 1) / N times the payload, the bandwidth optimum;
/// - `projectedBytes`: the payload if the GaLore family all-reduced its projected gradients
///   instead (Zhao et al. 2024: R = P^T G is linear in G, so the mean of the ranks' R is the
///   R of the mean gradient): r x max(m, n) per projected m x n matrix (GaLore projects the
///   shorter side) plus every other gradient, and each refresh's projector, min(m, n) x r,
///   broadcast once per `updateGap` steps (amortised here). A plan, not yet what the
///   engine sends.
public struct CommunicationPlan: Codable, Sendable, Equatable {
    public var ranks: Int
    public var allreduceBytes: Int
    public var ringBytesPerRank: Int
    /// nil unless a projection rank is given.
    public var projectedBytes: Int?

    /// - Parameters:
    ///   - specs: the trainable tensors;
    ///   - bytesPerElement: 4 for fp32 gradients (this engine), 2 for bf16;
    ///   - projection: the GaLore family's rank and update gap, for `projectedBytes`.
    public init(specs: [ParameterSpec], bytesPerElement: Int, ranks: Int, projection: (rank: Int, updateGap: Int)? = nil) {
        self.ranks = ranks
        let elements = specs.reduce(0) { $0 + $1.count }
        allreduceBytes = elements * bytesPerElement
        ringBytesPerRank = ranks > 1 ? 2 * (ranks - 1) * allreduceBytes / ranks : 0
        projectedBytes = projection.map { p in
            specs.reduce(0) { sum, s in
                guard ParameterSelector.hiddenMatrices.matches(s) else { return sum + s.count }
                let short = min(s.shape[0], s.shape[1]), long = max(s.shape[0], s.shape[1])
                let r = min(p.rank, short)
                return sum + r * long + (short * r + p.updateGap - 1) / max(p.updateGap, 1)
            } * bytesPerElement
        }
    }

    /// Seconds the ring all-reduce of one step takes at `bytesPerSecond` per link (latency
    /// ignored): the communication term of a scaling model.
    public func ringSeconds(bytesPerSecond: Double) -> Double { Double(ringBytesPerRank) / bytesPerSecond }
}

import SubspaceModels
import SubspaceOptim

/// What one optimizer step of data-parallel training communicates, planned from the
/// parameters' shapes (`subspace memory --ranks N`); the measured counterpart is
/// `StepMetrics.comm_bytes` (the payload of this rank's collectives, in `metrics.jsonl`), and
/// `DataParallelTests` checks that the two agree in both modes.
///
/// - `allreduceBytes`: the payload every rank all-reduces per step in the `full` mode, every
///   trainable gradient once;
/// - `ringBytesPerRank`: what a ring all-reduce (reduce-scatter then all-gather; Patarasuk
///   and Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations")
///   sends over each rank's link: 2 (N - 1) / N times the `full` payload, the bandwidth optimum;
/// - the `projected` mode (`DataParallelCommunication`, set when the optimizer has a
///   `GradientProjecting` rule): `projectedBytes` on a step between refreshes, R for each
///   projected matrix (GaLore's std rule: r x max(m, n), r/min(m, n) of the gradient) plus every
///   other gradient; `projectedRefreshBytes` on a refresh step (steps 0, T, 2T, ... of the
///   parameters' count), the whole gradient plus the broadcast P (min(m, n) x r) of every SVD
///   projector (a seeded projector sends R then too); `projectedMeanBytes`, the mean over T
///   steps, ((T - 1) projected + refresh) / T per matrix.
public struct CommunicationPlan: Codable, Sendable, Equatable {
    public var ranks: Int
    public var allreduceBytes: Int
    public var ringBytesPerRank: Int
    /// nil unless the optimizer projects some gradients.
    public var projectedBytes: Int?
    public var projectedRefreshBytes: Int?
    public var projectedMeanBytes: Int?

    /// - Parameters:
    ///   - specs: the trainable tensors;
    ///   - bytesPerElement: 4 for fp32 gradients (this engine), 2 for bf16;
    ///   - optimizer: the run's optimizer, whose projecting rules give the projected mode's shapes.
    public init(specs: [ParameterSpec], bytesPerElement: Int, ranks: Int, optimizer: RoutedOptimizer? = nil) {
        self.ranks = ranks
        let elements = specs.reduce(0) { $0 + $1.count }
        allreduceBytes = elements * bytesPerElement
        ringBytesPerRank = ranks > 1 ? 2 * (ranks - 1) * allreduceBytes / ranks : 0
        guard let optimizer, optimizer.projectsGradients else { return }
        var between = 0, refresh = 0, mean = 0.0
        for s in specs {
            guard let shapes = optimizer.projectingRule(for: s)?.projectedShapes(for: s) else {
                between += s.count; refresh += s.count; mean += Double(s.count)
                continue
            }
            let r = shapes.projected.reduce(1, *)
            let onRefresh = shapes.basis.map { s.count + $0.reduce(1, *) } ?? r
            let t = Double(shapes.updateGap)
            between += r; refresh += onRefresh
            mean += (Double(r) * (t - 1) + Double(onRefresh)) / t
        }
        projectedBytes = between * bytesPerElement
        projectedRefreshBytes = refresh * bytesPerElement
        projectedMeanBytes = Int((mean * Double(bytesPerElement)).rounded())
    }

    /// Seconds the ring all-reduce of one step takes at `bytesPerSecond` per link (latency
    /// ignored): the communication term of a scaling model.
    public func ringSeconds(bytesPerSecond: Double) -> Double { Double(ringBytesPerRank) / bytesPerSecond }
}

import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// Averages gradients over the ranks of a data-parallel job, so that every rank steps with
/// the gradient one process would have computed on the whole global batch.
///
/// Each rank's gradient is that of its own mean loss over its B sequences; the global
/// batch's mean loss is the mean of the N ranks' (every sequence has the same number of
/// targets), so its gradient is the sum over ranks divided by N: an all-reduce sum, then a
/// scale by 1/N (exact for N a power of two).
///
/// Two schedules (both used by `BackpropStep`):
/// - `start(_:)` from the backward hook, as each parameter's gradient becomes complete on
///   the step's last micro-batch: a non-blocking all-reduce per parameter (the bucket is
///   the parameter), progressed while backward goes on, and `finish()` waits for all of
///   them before clipping and the optimizer step (PyTorch DDP's overlap, Li et al. 2020,
///   "PyTorch Distributed: Experiences on Accelerating Data Parallel Training");
/// - the per-layer update: `start(_:)` in the hook too, and `finishOldest()` hands back the
///   parameter whose all-reduce has had the next parameter's backward to run in, for its
///   step (at most two gradients held at once); `reduce(_:)` is the blocking form, for
///   gradients handed over at once (compressed accumulation).
///
/// **Projected mode** (`projecting` set; `DataParallelCommunication.projected`): a parameter
/// whose rule is `GradientProjecting` sends what the rule's `payload` asks for. Between
/// refreshes that is R = Pᵀ G: the rule projects this rank's gradient, which is freed at once,
/// and the mean R is handed back with the parameter (`Reduced.projected`) for
/// `update(_:projectedGradient:lrScale:)`. On a refresh step the full gradient is averaged,
/// then the step's refreshing parameters take turns, the i-th of the step on rank i mod N:
/// that rank computes the basis from the mean gradient and broadcasts it, every rank
/// installs it, and the rule's ordinary update takes it, so P is bit-identical on every
/// rank. `finish()` computes every owned basis before the first broadcast, so the ranks run
/// their SVDs side by side; `finishOldest()` (per-layer) handles one parameter at a time.
///
/// `bytes` counts the payload of this rank's collectives (4 bytes per float): the
/// all-reduced gradients (or R) and the broadcast bases. A ring all-reduce moves
/// 2 (N - 1) / N times its payload over each rank's link.
public final class GradientReducer {
    public let communicator: any Communicator
    /// The optimizer whose `GradientProjecting` rules receive projected gradients (projected
    /// mode); nil: every gradient is averaged whole.
    public var projecting: RoutedOptimizer?

    /// A parameter whose average is complete: its gradient is the mean, or, when `projected`
    /// is set, the gradient was freed and `projected` holds the mean R for `rule`.
    public struct Reduced {
        public let parameter: Parameter
        public let projected: (rule: GradientProjecting, gradient: Tensor)?
    }

    private enum Kind { case full, projected(GradientProjecting), refresh(GradientProjecting) }
    private struct Pending { let request: CommunicatorRequest; let buffer: Tensor; let parameter: Parameter; let kind: Kind }
    private var pending: [Pending] = []
    /// Refreshing parameters handled so far this step (the next one's basis is rank count % N's).
    private var refreshes = 0
    /// The first error raised inside a backward hook (hooks cannot throw); `finish` rethrows it.
    private var hookError: Error?
    /// Payload bytes all-reduced or broadcast so far.
    public private(set) var bytes = 0

    public init(communicator: any Communicator) { self.communicator = communicator }

    /// Starts averaging `p`'s gradient, or its projection (no-op for a parameter without one).
    public func start(_ p: Parameter) {
        guard hookError == nil, p.requiresGrad, let g = p.grad else { return }
        do {
            var buffer = g, kind = Kind.full
            if let rule = projecting?.projectingRule(for: p) {
                switch rule.payload(for: p) {
                case .full: break
                case .projected:
                    buffer = rule.projectGradient(p, gradient: g)
                    p.releaseGradient()
                    kind = .projected(rule)
                case .refresh: kind = .refresh(rule)
                }
            }
            pending.append(Pending(request: try communicator.startAllreduceSum(buffer.data, count: buffer.count), buffer: buffer, parameter: p, kind: kind))
            bytes += buffer.count * MemoryLayout<Float>.stride
            // Give the transport a chance to move the oldest bucket while backward continues.
            if let first = pending.first { _ = try first.request.poll() }
        } catch { hookError = error }
    }

    /// Waits for every started average, scales by 1/N, shares the refresh bases (see the
    /// type's notes) and returns the projected gradients for their rules to step (empty in
    /// full mode); rethrows a hook's error.
    @discardableResult
    public func finish() throws -> [Reduced] {
        defer { pending.removeAll(); refreshes = 0 }
        if let e = hookError { hookError = nil; throw e }
        var out: [Reduced] = [], due: [(Pending, owner: Int)] = []
        for e in pending {
            try e.request.wait()
            scale(e.buffer)
            switch e.kind {
            case .full: break
            case .projected(let rule): out.append(Reduced(parameter: e.parameter, projected: (rule, e.buffer)))
            case .refresh:
                due.append((e, refreshes % communicator.size))
                refreshes += 1
            }
        }
        // Each rank computes its own bases first, then they are broadcast in order.
        let own = due.map { e, owner in owner == communicator.rank ? basis(e) : nil }
        for ((e, owner), b) in zip(due, own) { try share(e, basis: b, owner: owner) }
        return out
    }

    /// All-reduces started and not yet handed back.
    public var pendingCount: Int { pending.count }

    /// Waits for the oldest started average, scales it by 1/N (sharing its refresh basis if
    /// it has one) and returns it (nil when none is pending, or after an error, which
    /// `finish` rethrows).
    public func finishOldest() -> Reduced? {
        guard hookError == nil, !pending.isEmpty else { return nil }
        let e = pending.removeFirst()
        do {
            try e.request.wait()
            scale(e.buffer)
            switch e.kind {
            case .full: return Reduced(parameter: e.parameter, projected: nil)
            case .projected(let rule): return Reduced(parameter: e.parameter, projected: (rule, e.buffer))
            case .refresh:
                let owner = refreshes % communicator.size
                refreshes += 1
                try share(e, basis: owner == communicator.rank ? basis(e) : nil, owner: owner)
                return Reduced(parameter: e.parameter, projected: nil)
            }
        } catch { hookError = error; return nil }
    }

    /// Averages `p`'s gradient now (blocking), for a micro-batch handed to a compressed
    /// accumulator. In projected mode a projecting rule's micro-batches stay on this rank:
    /// their projected sum is sent with the step's last micro-batch. Errors are kept for `finish`.
    public func reduce(_ p: Parameter) {
        guard hookError == nil, p.requiresGrad, let g = p.grad, projecting?.projectingRule(for: p) == nil else { return }
        do {
            try communicator.allreduceSum(g.data, count: g.count)
            bytes += g.count * MemoryLayout<Float>.stride
            scale(g)
        } catch { hookError = error }
    }

    /// The mean over ranks of a per-rank scalar (the step's loss).
    public func average(_ value: Float) throws -> Float { try communicator.average(value) }

    /// The basis a refreshing entry's rule computes from the mean gradient.
    private func basis(_ e: Pending) -> Tensor? {
        guard case .refresh(let rule) = e.kind else { return nil }
        return rule.refreshBasis(e.parameter, gradient: e.buffer)
    }

    /// Broadcasts `owner`'s basis of a refreshing entry (`basis` on the owner) and installs it.
    private func share(_ e: Pending, basis: Tensor?, owner: Int) throws {
        guard case .refresh(let rule) = e.kind, case .refresh(let shape) = rule.payload(for: e.parameter) else { return }
        let b = basis ?? Tensor(zeros: shape)
        try communicator.broadcast(b, root: owner)
        bytes += b.count * MemoryLayout<Float>.stride
        rule.installBasis(e.parameter, b)
    }

    private func scale(_ g: Tensor) {
        let n = communicator.size
        guard n > 1 else { return }
        let s = 1 / Float(n)
        let p = g.data
        for i in 0..<g.count { p[i] *= s }
    }
}

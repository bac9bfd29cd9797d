import SubspaceCore
import SubspaceModels

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
/// `bytes` counts the payload all-reduced by this rank (4 bytes per float); a ring
/// all-reduce moves 2 (N - 1) / N times that over each rank's link.
public final class GradientReducer {
    public let communicator: any Communicator
    private var pending: [(request: CommunicatorRequest, grad: Tensor, parameter: Parameter)] = []
    /// The first error raised inside a backward hook (hooks cannot throw); `finish` rethrows it.
    private var hookError: Error?
    /// Payload bytes all-reduced so far.
    public private(set) var bytes = 0

    public init(communicator: any Communicator) { self.communicator = communicator }

    /// Starts averaging `p`'s gradient (no-op for a parameter without one).
    public func start(_ p: Parameter) {
        guard hookError == nil, p.requiresGrad, let g = p.grad else { return }
        do {
            pending.append((try communicator.startAllreduceSum(g.data, count: g.count), g, p))
            bytes += g.count * MemoryLayout<Float>.stride
            // Give the transport a chance to move the oldest bucket while backward continues.
            if let first = pending.first { _ = try first.request.poll() }
        } catch { hookError = error }
    }

    /// Waits for every started all-reduce and scales by 1/N; rethrows a hook's error.
    public func finish() throws {
        defer { pending.removeAll() }
        if let e = hookError { hookError = nil; throw e }
        for (r, g, _) in pending {
            try r.wait()
            scale(g)
        }
    }

    /// All-reduces started and not yet handed back.
    public var pendingCount: Int { pending.count }

    /// Waits for the oldest started all-reduce, scales it by 1/N and returns its parameter
    /// (nil when none is pending, or after an error, which `finish` rethrows).
    public func finishOldest() -> Parameter? {
        guard hookError == nil, !pending.isEmpty else { return nil }
        let (r, g, p) = pending.removeFirst()
        do { try r.wait() } catch { hookError = error; return nil }
        scale(g)
        return p
    }

    /// Averages `p`'s gradient now (blocking). Errors are kept for `finish`.
    public func reduce(_ p: Parameter) {
        guard hookError == nil, p.requiresGrad, let g = p.grad else { return }
        do {
            try communicator.allreduceSum(g.data, count: g.count)
            bytes += g.count * MemoryLayout<Float>.stride
            scale(g)
        } catch { hookError = error }
    }

    /// The mean over ranks of a per-rank scalar (the step's loss).
    public func average(_ value: Float) throws -> Float { try communicator.average(value) }

    private func scale(_ g: Tensor) {
        let n = communicator.size
        guard n > 1 else { return }
        let s = 1 / Float(n)
        let p = g.data
        for i in 0..<g.count { p[i] *= s }
    }
}

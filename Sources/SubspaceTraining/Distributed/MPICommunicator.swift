import Foundation
import CMPI

/// `Communicator` over Open MPI (`MPI_COMM_WORLD`), through the `CMPI` shim.
///
/// Made once per process by `Distributed.start` when `mpirun` launched it; `MPI_Init` runs
/// in `init` (thread level FUNNELED: the training loop's thread makes every call) and
/// errors return codes (`MPI_ERRORS_RETURN`), which become `DistributedError`s. A rank that
/// dies is noticed by `mpirun`, which ends the others.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    init() throws {
        guard cmpi_init() == 0 else { throw DistributedError("MPI could not start (MPI_Init failed)") }
        rank = Int(cmpi_rank())
        size = Int(cmpi_size())
    }

    private func check(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw DistributedError("\(what) failed on rank \(rank) (MPI error \(rc))") }
    }

    public func allreduceSum(_ data: UnsafeMutablePointer<Float>, count: Int) throws {
        try check(cmpi_allreduce_sum_float(data, count), "all-reduce")
    }

    public func startAllreduceSum(_ data: UnsafeMutablePointer<Float>, count: Int) throws -> CommunicatorRequest {
        let r = Request(owner: self)
        try check(cmpi_iallreduce_sum_float(data, count, &r.handle), "non-blocking all-reduce")
        return r
    }

    public func broadcast(_ data: UnsafeMutableRawPointer, count: Int, root: Int) throws {
        try check(cmpi_broadcast_bytes(data, count, Int32(root)), "broadcast")
    }

    public func barrier() throws { try check(cmpi_barrier(), "barrier") }

    public func abort(code: Int32) -> Never {
        cmpi_abort(code)
        exit(code)
    }

    /// Finalises MPI at a normal end (after the last collective of every rank).
    public func finish() { if cmpi_is_active() != 0 { _ = cmpi_finalize() } }

    final class Request: CommunicatorRequest {
        let owner: MPICommunicator
        var handle: cmpi_request? = nil
        var finished = false
        init(owner: MPICommunicator) { self.owner = owner }

        func wait() throws {
            guard !finished else { return }
            try owner.check(cmpi_wait(&handle), "all-reduce wait")
            finished = true
        }

        func poll() throws -> Bool {
            guard !finished else { return true }
            var done: Int32 = 0
            try owner.check(cmpi_test(&handle, &done), "all-reduce test")
            finished = done != 0
            return finished
        }
    }
}

import Foundation
import SubspaceCore

/// The collective operations data-parallel training needs, over the ranks of one job.
///
/// Two implementations: `SingleProcess` (one rank; every operation is the identity, so the
/// training code has one path) and `MPICommunicator` (Open MPI through the `CMPI` shim, for
/// processes started by `mpirun`). `Communicator.fromEnvironment()` picks one.
///
/// Every call is made from one thread (the training loop's); `allreduceSum` and `broadcast`
/// are in place. A failed MPI call throws `DistributedError` (the caller then aborts the job).
public protocol Communicator: AnyObject {
    /// This process's rank, 0 ..< size.
    var rank: Int { get }
    /// Ranks in the job.
    var size: Int { get }
    /// Sums `count` floats at `data` over every rank, in place; returns when done.
    func allreduceSum(_ data: UnsafeMutablePointer<Float>, count: Int) throws
    /// Starts the same sum without waiting: the buffer must not be touched until the
    /// request is waited on.
    func startAllreduceSum(_ data: UnsafeMutablePointer<Float>, count: Int) throws -> CommunicatorRequest
    /// Copies rank `root`'s `count` bytes at `data` to every rank.
    func broadcast(_ data: UnsafeMutableRawPointer, count: Int, root: Int) throws
    /// Returns once every rank has called it.
    func barrier() throws
    /// Ends every process of the job with `code` (never returns).
    func abort(code: Int32) -> Never
}

/// An outstanding non-blocking collective: `wait()` exactly once.
public protocol CommunicatorRequest: AnyObject {
    /// Blocks until the operation has finished.
    func wait() throws
    /// Lets the transport progress the operation; true once it has finished.
    func poll() throws -> Bool
}

/// A failed collective (an MPI error code), or a job that cannot run as asked.
public struct DistributedError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Communicator {
    /// Whether this rank writes the run's files and prints its progress (rank 0).
    public var isRoot: Bool { rank == 0 }

    /// The mean over ranks of one value per rank (each rank gets the same result).
    public func average(_ value: Float) throws -> Float {
        var v = value
        try allreduceSum(&v, count: 1)
        return size == 1 ? v : v / Float(size)
    }

    /// Whether any rank passed true.
    public func any(_ flag: Bool) throws -> Bool {
        var v: Float = flag ? 1 : 0
        try allreduceSum(&v, count: 1)
        return v > 0
    }

    /// Rank `root`'s values of `tensor` on every rank.
    public func broadcast(_ tensor: Tensor, root: Int = 0) throws {
        try broadcast(UnsafeMutableRawPointer(tensor.data), count: tensor.count * MemoryLayout<Float>.stride, root: root)
    }
}

/// One process: the whole job. Sums and broadcasts leave the data as it is.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ data: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func startAllreduceSum(_ data: UnsafeMutablePointer<Float>, count: Int) throws -> CommunicatorRequest { Done() }
    public func broadcast(_ data: UnsafeMutableRawPointer, count: Int, root: Int) throws {}
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }

    final class Done: CommunicatorRequest {
        func wait() throws {}
        func poll() throws -> Bool { true }
    }
}

/// How this process was started, read from the environment `mpirun` sets (Open MPI's
/// `OMPI_COMM_WORLD_SIZE`, `_RANK`, `_LOCAL_SIZE`), without initialising MPI: a plain
/// `subspace train` never calls `MPI_Init` (a singleton start is slow and, as root, fails).
public struct LaunchEnvironment: Sendable, Equatable {
    /// Ranks in the job (1 without mpirun).
    public var size: Int
    /// This process's rank.
    public var rank: Int
    /// Ranks on this machine (they share its cores).
    public var localSize: Int

    public init(size: Int = 1, rank: Int = 0, localSize: Int = 1) {
        self.size = size; self.rank = rank; self.localSize = localSize
    }

    /// The current process's launch.
    public static let current = LaunchEnvironment(environment: ProcessInfo.processInfo.environment)

    public init(environment env: [String: String]) {
        func int(_ key: String) -> Int? { env[key].flatMap { Int($0) } }
        size = max(1, int("OMPI_COMM_WORLD_SIZE") ?? int("PMIX_SIZE") ?? 1)
        rank = min(max(0, int("OMPI_COMM_WORLD_RANK") ?? int("PMIX_RANK") ?? 0), size - 1)
        localSize = max(1, min(size, int("OMPI_COMM_WORLD_LOCAL_SIZE") ?? size))
    }

    /// Whether the process was started as one of several ranks.
    public var isDistributed: Bool { size > 1 }

    /// Worker threads per rank so that ranks x threads = the machine's cores (at least one);
    /// `SUBSPACE_THREADS` still wins when set.
    public func threadsPerRank(cores: Int = ProcessInfo.processInfo.activeProcessorCount) -> Int {
        max(1, cores / localSize)
    }
}

/// The job this process belongs to.
public enum Distributed {
    /// The communicator `start` returned (nil before; the error path reads it to abort the
    /// whole job rather than leave the other ranks waiting).
    nonisolated(unsafe) public private(set) static var active: (any Communicator)?

    /// The communicator of this process: MPI when `mpirun` started it as one of several
    /// ranks (MPI is initialised here, once), otherwise one process.
    public static func start(_ launch: LaunchEnvironment = .current) throws -> any Communicator {
        if let active { return active }
        let c: any Communicator = launch.isDistributed ? try MPICommunicator() : SingleProcess()
        active = c
        return c
    }

    /// Ends the job after an error on this rank: rank 0 at once; another rank after a short
    /// pause, so that when every rank fails alike (a bad flag) rank 0's message is the one
    /// line printed before the job ends. Then every process of the job is stopped
    /// (`MPI_Abort`) or, before MPI started, this one exits (mpirun stops the rest).
    public static func fail(printing line: String, status: Int32, write: (String) -> Void) -> Never {
        let launch = LaunchEnvironment.current
        if launch.isDistributed && launch.rank != 0 { Thread.sleep(forTimeInterval: 2) }
        write(line)
        if let active, active.size > 1 { active.abort(code: status) }
        exit(status)
    }
}

import Foundation

/// Splits loops over the machine's cores.
///
/// Subspace runs OpenBLAS single-threaded and does all parallelism itself (see `BLAS`), so
/// the matrix products and the elementwise kernels share one pool of `workers` threads and
/// never oversubscribe the cores. Set `SUBSPACE_THREADS` to override the default, which is
/// the number of active processors.
public enum Parallel {
    /// Worker count used by every parallel kernel.
    nonisolated(unsafe) public static var workers: Int = {
        if let s = ProcessInfo.processInfo.environment["SUBSPACE_THREADS"], let n = Int(s), n > 0 {
            return n
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Runs `body(chunk)` for `chunk` in `0..<chunks`, concurrently when `chunks > 1`.
    @inline(__always)
    public static func perform(_ chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 1 { body(0); return }
        DispatchQueue.concurrentPerform(iterations: chunks, execute: body)
    }

    /// Splits `0..<count` into at most `workers` contiguous ranges of at least `grain`
    /// elements and runs `body` on each, concurrently.
    @inline(__always)
    public static func ranges(_ count: Int, grain: Int = 4096, _ body: (Range<Int>) -> Void) {
        let chunks = min(workers, max(1, count / max(grain, 1)))
        if chunks <= 1 { body(0..<count); return }
        let per = (count + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per, hi = min(count, lo + per)
            if lo < hi { body(lo..<hi) }
        }
    }
}

// The only file that imports BLAS. Everything dense goes through `BLAS.gemm`.
#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

/// Matrix products through `cblas_sgemm`, row-major.
///
/// OpenBLAS is pinned to one thread (`BLAS.configure()`), and large products are split by
/// `gemm` into one row block per worker, each a single-threaded `sgemm` call. That keeps
/// every core busy without OpenBLAS's own spinning threads competing with our elementwise
/// kernels, which is what "oversubscription" costs on a 2-core machine.
public enum BLAS {
    /// Pins OpenBLAS to one thread and makes sure it runs the best kernel this CPU has
    /// (`backend`). Runs once, before the first BLAS or LAPACK call: `gemm`, `axpy`, `nrm2`,
    /// `dot` and every `Linalg` entry point call it, and it is thread-safe (a `static let`).
    public static func configure() {
        _ = backend
    }

    /// The BLAS in use and the kernel it runs, chosen once (see `BLASBackend.select`).
    public static let backend: BLASBackend = {
        #if !canImport(Accelerate)
        openblas_set_num_threads(1)
        #endif
        return BLASBackend.select(cpu: .current)
    }()

    /// `C = alpha * op(A) * op(B) + beta * C` with row-major storage.
    ///
    /// - Parameters:
    ///   - transA, transB: whether to use the transpose of A or B.
    ///   - m, n, k: op(A) is m x k, op(B) is k x n, C is m x n.
    ///   - lda, ldb, ldc: row strides (leading dimensions) of the stored matrices.
    ///   - parallel: split the rows of C across `Parallel.workers` (default). Pass false
    ///     when the caller already runs inside a parallel loop.
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true
    ) {
        if m == 0 || n == 0 { return }
        configure()
        split(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
              beta: beta, c: c, ldc: ldc, parallel: parallel, kernel: call)
    }

    /// One single-threaded product `C = alpha op(A) op(B) + beta C` on one block (row-major;
    /// arguments in `gemm`'s order): `cblas_sgemm`, or the bf16 kernel of `gemmBF16`.
    typealias Kernel<T> = (
        _ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<T>, _ lda: Int,
        _ b: UnsafePointer<T>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) -> Void

    /// Splits a product across `Parallel.workers` and runs `kernel` on each block: the policy
    /// of `gemm`, shared by the fp32 and the bf16 products (operands of element type `T`, fp32
    /// results).
    static func split<T>(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<T>, lda: Int,
        b: UnsafePointer<T>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool,
        kernel call: Kernel<T>
    ) {
        let workers = Parallel.workers
        // Small products are not worth a thread hand-off (~2 MFLOP).
        if !parallel || workers == 1 || m * n * k < 1 << 21 {
            call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        // A long inner dimension with a small C (the LM head's input gradient: k = vocab):
        // splitting C would make every worker pack the whole of one operand, so split k
        // instead, each worker forming a partial product, and add the partials. Only where k
        // dominates strongly: at k = 8 max(m, n) (tiny's 256 x 256 weight gradients over 2,048
        // tokens) the row split was faster (`subspace bench --preset tiny`).
        if k >= 16 * max(m, n) {
            let per = (k + workers - 1) / workers
            let partials = UnsafeMutablePointer<Float>.allocate(capacity: (workers - 1) * m * n)
            defer { partials.deallocate() }
            Parallel.perform(workers) { w in
                let lo = w * per, hi = min(k, lo + per)
                let cw = w == 0 ? c : partials + (w - 1) * m * n
                let ldw = w == 0 ? ldc : n
                if lo >= hi {
                    if w > 0 { cw.update(repeating: 0, count: m * n) }
                    return
                }
                let aBlock = transA ? a + lo * lda : a + lo
                let bBlock = transB ? b + lo : b + lo * ldb
                call(transA, transB, m, n, hi - lo, alpha, aBlock, lda, bBlock, ldb, w == 0 ? beta : 0, cw, ldw)
            }
            Parallel.ranges(m, grain: 1) { rows in
                for w in 1..<workers {
                    let src = partials + (w - 1) * m * n
                    for i in rows { axpy(n, 1, src + i * n, c + i * ldc) }
                }
            }
            return
        }
        // Split the longer side of C so each worker gets a well-shaped block.
        if m >= n {
            let per = (m + workers - 1) / workers
            Parallel.perform(workers) { w in
                let lo = w * per, hi = min(m, lo + per)
                if lo >= hi { return }
                let aBlock = transA ? a + lo : a + lo * lda
                call(transA, transB, hi - lo, n, k, alpha, aBlock, lda, b, ldb, beta, c + lo * ldc, ldc)
            }
        } else {
            let per = (n + workers - 1) / workers
            Parallel.perform(workers) { w in
                let lo = w * per, hi = min(n, lo + per)
                if lo >= hi { return }
                let bBlock = transB ? b + lo * ldb : b + lo
                call(transA, transB, m, hi - lo, k, alpha, a, lda, bBlock, ldb, beta, c + lo, ldc)
            }
        }
    }

    @inline(__always)
    private static func call(
        _ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `y = alpha * A x + beta * y` with A `m x n` row-major (row stride `lda`): one token
    /// through a `[out, in]` weight, the decoding step of `LlamaModel.extend`. `sgemm` with
    /// one row packs the whole weight before using it once; `sgemv` streams it once, which
    /// is what a memory-bound single-token product needs. Large products split the rows of
    /// A across `Parallel.workers` (at least 128 KiB of A each).
    public static func gemv(
        m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>,
        beta: Float = 0, y: UnsafeMutablePointer<Float>, parallel: Bool = true
    ) {
        if m == 0 { return }
        configure()
        let chunks = parallel ? min(Parallel.workers, max(1, m * n / (1 << 15))) : 1
        if chunks <= 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
            return
        }
        let per = (m + chunks - 1) / chunks
        Parallel.perform(chunks) { w in
            let lo = w * per, hi = min(m, lo + per)
            if lo >= hi { return }
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(hi - lo), Int32(n), alpha, a + lo * lda, Int32(lda), x, 1, beta, y + lo, 1)
        }
    }

    /// `y = alpha * x + y` over `n` elements.
    public static func axpy(_ n: Int, _ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        configure()
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }

    /// Euclidean norm of `n` elements.
    public static func nrm2(_ n: Int, _ x: UnsafePointer<Float>) -> Float {
        configure()
        return cblas_snrm2(Int32(n), x, 1)
    }

    /// Dot product of `n` elements.
    public static func dot(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Float {
        configure()
        return cblas_sdot(Int32(n), x, 1, y, 1)
    }
}

extension Tensor {
    /// Matrix product `op(self) * op(other)` as a new tensor (2-D operands).
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) -> Tensor {
        precondition(shape.count == 2 && other.shape.count == 2, "matmul needs matrices")
        let m = transposeSelf ? shape[1] : shape[0]
        let k = transposeSelf ? shape[0] : shape[1]
        let k2 = transposeOther ? other.shape[1] : other.shape[0]
        let n = transposeOther ? other.shape[0] : other.shape[1]
        precondition(k == k2, "matmul: \(shape) x \(other.shape)")
        let out = Tensor(zeros: [m, n])
        BLAS.gemm(
            transA: transposeSelf, transB: transposeOther, m: m, n: n, k: k,
            a: data, lda: shape[1], b: other.data, ldb: other.shape[1], c: out.data, ldc: n)
        return out
    }
}

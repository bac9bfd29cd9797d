// The bf16 matrix product: operands rounded to bfloat16, products accumulated in fp32. The
// kernel is oneDNN's matmul (Sources/CSupport/bf16.c, loaded at run time); the split across
// workers is `BLAS.gemm`'s.
import CSupport
import Foundation

/// The element type of the matrix products of the linear layers (`--precision`).
public enum MatmulPrecision: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// fp32 operands and accumulation (`cblas_sgemm`): exact parity with the references.
    case fp32
    /// Operands rounded to bfloat16 (8-bit mantissa), fp32 accumulation and fp32 results, as
    /// `torch.autocast("cpu", dtype=torch.bfloat16)` runs `nn.Linear`.
    case bf16

    public var description: String { rawValue }

    /// Parses `fp32` or `bf16` (the flag's spelling).
    public init(parsing text: String) throws {
        guard let p = MatmulPrecision(rawValue: text.lowercased()) else {
            throw ConfigurationError("--precision must be fp32 or bf16, got '\(text)'")
        }
        self = p
    }

    /// Throws unless this machine runs the products in this precision at full speed: bf16
    /// needs oneDNN (`libdnnl2`, installed by `scripts/setup.sh`) and a CPU with AVX512-BF16 or
    /// AMX. Without them bf16 would be emulated, slower than fp32, so it is refused instead.
    public func checkSupported() throws {
        guard self == .bf16, let reason = BLAS.bf16Unavailable else { return }
        throw ConfigurationError("--precision bf16 is not available here: \(reason); use --precision fp32")
    }
}

extension BLAS {
    /// Whether bf16 products run natively here (oneDNN loaded, AVX512-BF16 or AMX usable).
    public static var hasBF16: Bool { bf16Unavailable == nil }

    /// Why bf16 products cannot run here, or nil when they can.
    public static let bf16Unavailable: String? = {
        let cpu = CPU.current
        guard cpu.usable.contains(.avx512bf16) || cpu.usable.contains(.amxBF16) else {
            let name = cpu.brand.isEmpty ? "this CPU" : cpu.brand
            return "\(name) has neither AVX512-BF16 nor AMX-BF16"
        }
        // oneDNN 2.6 requests AMX tile permission itself; asking first is harmless and covers
        // builds that do not (the request is idempotent).
        if cpu.usable.contains(.amxTile) { _ = subspace_request_amx_permission() }
        guard subspace_bf16_gemm_available() != 0 else {
            return "oneDNN (libdnnl.so.2) is not installed or does not use this CPU's bf16 instructions (run scripts/setup.sh)"
        }
        return nil
    }()

    /// oneDNN's kernel name for the last bf16 product built ("brg:avx512_core_bf16", ...).
    public static var bf16Implementation: String { String(cString: subspace_bf16_gemm_implementation()) }

    /// `C = alpha * op(A) op(B) + beta * C` (row-major, `gemm`'s arguments) with A and B
    /// rounded to bfloat16 and fp32 accumulation. The fp32 operands are converted into
    /// scratch (round to nearest even, `BF16.convert`), then the product is split across
    /// workers like `gemm`, each block one single-threaded oneDNN matmul.
    ///
    /// ## Why oneDNN
    /// - Debian's OpenBLAS 0.3.21 has no `cblas_sbgemm` (built without BUILD_BFLOAT16).
    /// - oneDNN 2.6.3 (Debian's libdnnl-dev) runs its `brg:avx512_core_bf16` kernel on the
    ///   2-core Zen 5 EPYC (AVX512-BF16, no AMX) and its AMX kernel on Sapphire/Emerald
    ///   Rapids, asking Linux for tile permission itself. Measured there under a shared load
    ///   (`bench/bf16_gemm_shapes.c`, results/bf16/gemm_shapes.txt; `subspace info`): 111 GFLOP/s
    ///   at 1024^3 against sgemm's 49 in the same minute, 82-179 at tiny's and llama60m's
    ///   training shapes against 43-58, relative error 2e-3 (bf16's mantissa). It is an apt
    ///   package, installed by `scripts/setup.sh` like OpenBLAS, and loaded with `dlopen`:
    ///   without it the package still builds and bf16 is refused with a reason.
    /// - oneMKL (`cblas_gemm_bf16bf16f32`, PyPI `mkl-devel`) is a pip wheel of several hundred
    ///   MB outside the system package manager, and its dispatch keys on Intel CPUs; it was
    ///   not measured.
    ///
    /// Threads: the split over workers (each block one single-threaded oneDNN call) was as
    /// fast as one call on 2 OpenMP threads (same file: within noise, either way per shape),
    /// and keeps OpenMP's spinning threads from competing with the elementwise kernels.
    ///
    /// Requires `hasBF16` (callers check with `MatmulPrecision.checkSupported`).
    public static func gemmBF16(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true
    ) {
        if m == 0 || n == 0 { return }
        precondition(hasBF16, "bf16 product without bf16 support (check MatmulPrecision.checkSupported first)")
        // The stored extents of A and B (whole rows of the stride, the last one to its end).
        func extent(_ rows: Int, _ cols: Int, _ ld: Int) -> Int { rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols }
        let aCount = transA ? extent(k, m, lda) : extent(m, k, lda)
        let bCount = transB ? extent(n, k, ldb) : extent(k, n, ldb)
        let (scratch, capacity) = BF16.scratch.take(aCount + bCount)
        defer { BF16.scratch.give(scratch, capacity: capacity) }
        BF16.convert(a, to: scratch, count: aCount, parallel: parallel)
        BF16.convert(b, to: scratch + aCount, count: bCount, parallel: parallel)
        gemmBF16(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: UnsafePointer(scratch), lda: lda,
                 b: UnsafePointer(scratch + aCount), ldb: ldb, beta: beta, c: c, ldc: ldc, parallel: parallel)
    }

    /// The same product with operands already in bf16 (raw `UInt16` bit patterns).
    public static func gemmBF16(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<UInt16>, lda: Int,
        b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true
    ) {
        if m == 0 || n == 0 { return }
        split(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
              beta: beta, c: c, ldc: ldc, parallel: parallel) { ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            if k == 0 {  // oneDNN rejects an empty inner dimension; C = beta C
                for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
                return
            }
            let status = subspace_bf16_gemm(
                ta ? 1 : 0, tb ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc), 1)
            precondition(status == 0, "oneDNN bf16 matmul failed (\(status)) for \(m)x\(n)x\(k)")
        }
    }
}

/// bfloat16 conversions (bit patterns as `UInt16`).
public enum BF16 {
    /// Operand buffers kept between products. Allocating them per product cost a fresh
    /// mapping and a page fault per 4 KiB on every call: 15-20% of a `tiny` bf16 step went to
    /// the kernel's page-fault path (`perf record`, before this pool).
    static let scratch = ScratchPool()

    /// A few reusable buffers, taken and given back around each product (thread-safe). At
    /// most `keep` are kept, the largest; a product that finds none large enough allocates.
    final class ScratchPool: @unchecked Sendable {
        private var free: [(UnsafeMutablePointer<UInt16>, Int)] = []
        private let lock = NSLock()
        private let keep = 2

        func take(_ count: Int) -> (UnsafeMutablePointer<UInt16>, Int) {
            lock.lock()
            if let i = free.indices.filter({ free[$0].1 >= count }).min(by: { free[$0].1 < free[$1].1 }) {
                let b = free.remove(at: i)
                lock.unlock()
                return b
            }
            lock.unlock()
            let capacity = max(count, 1)
            return (UnsafeMutablePointer<UInt16>.allocate(capacity: capacity), capacity)
        }

        func give(_ p: UnsafeMutablePointer<UInt16>, capacity: Int) {
            lock.lock()
            free.append((p, capacity))
            free.sort { $0.1 > $1.1 }
            let dropped = free.count > keep ? Array(free[keep...]) : []
            free.removeLast(dropped.count)
            lock.unlock()
            for (q, _) in dropped { q.deallocate() }
        }
    }

    /// Runs `body` with `x[0 ..< count]` rounded to bf16 in a pooled buffer (given back after):
    /// an operand that several products share, converted once.
    public static func withCopy<R>(of x: UnsafePointer<Float>, count: Int, _ body: (UnsafePointer<UInt16>) throws -> R) rethrows -> R {
        let (buffer, capacity) = scratch.take(count)
        defer { scratch.give(buffer, capacity: capacity) }
        convert(x, to: buffer, count: count)
        return try body(UnsafePointer(buffer))
    }

    /// Runs `body` with a pooled buffer of `count` bf16 values (given back after).
    public static func withBuffer<R>(count: Int, _ body: (UnsafeMutablePointer<UInt16>) throws -> R) rethrows -> R {
        let (buffer, capacity) = scratch.take(count)
        defer { scratch.give(buffer, capacity: capacity) }
        return try body(buffer)
    }

    /// Rounds each of `rows` rows of `columns` floats to bf16 in place: row i's bf16 values
    /// fill the first half of its own bytes (bf16 row stride 2 * columns), so rows convert
    /// independently, in parallel, each through a small buffer.
    public static func compressRows(_ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        Parallel.ranges(rows, grain: max(1, (1 << 16) / max(columns, 1))) { r in
            let tmp = UnsafeMutablePointer<UInt16>.allocate(capacity: columns)
            defer { tmp.deallocate() }
            for i in r {
                let row = x + i * columns
                subspace_f32_to_bf16(row, tmp, columns, native ? 1 : 0)
                UnsafeMutableRawPointer(row).copyMemory(from: tmp, byteCount: 2 * columns)
            }
        }
    }

    /// Whether the CPU converts natively (AVX512-BF16's VCVTNE2PS2BF16).
    public static let native = CPU.current.usable.contains(.avx512bf16)

    /// `y = bf16(x)` over `count` elements, rounding to nearest even (NaN stays NaN). With
    /// AVX512-BF16, 32 elements per instruction, subnormal inputs flushed to zero (the
    /// instruction's rule; bf16 subnormals are below 1.2e-38 and matter to no product here).
    /// Large arrays are split across workers. `native: false` forces the portable scalar
    /// loop (tests compare the two).
    public static func convert(
        _ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<UInt16>, count: Int, parallel: Bool = true, native: Bool = BF16.native
    ) {
        let flag: Int32 = native && BF16.native ? 1 : 0
        if !parallel || count < 1 << 16 {
            subspace_f32_to_bf16(x, y, count, flag)
            return
        }
        Parallel.ranges(count, grain: 1 << 15) { r in
            subspace_f32_to_bf16(x + r.lowerBound, y + r.lowerBound, r.count, flag)
        }
    }

    /// One value rounded to bf16 and back (round to nearest even): what a product sees.
    public static func round(_ x: Float) -> Float {
        var v = x, h: UInt16 = 0, back: Float = 0
        subspace_f32_to_bf16(&v, &h, 1, 0)
        subspace_bf16_to_f32(&h, &back, 1)
        return back
    }
}

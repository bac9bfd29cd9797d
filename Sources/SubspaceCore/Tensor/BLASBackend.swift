// Which BLAS this process runs, which kernel it uses, and the one place that changes the kernel.
// Symbols are resolved at run time (dlsym): a BLAS without them (a single-target OpenBLAS,
// Accelerate) still links, and `BLASBackend` then says the kernel cannot be changed.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The BLAS library and kernel behind every product, as `BLAS.backend` chose them.
///
/// ## Why the kernel is chosen here, and how
///
/// OpenBLAS as Debian ships it (0.3.21, a DYNAMIC_ARCH build) carries kernels for every x86
/// family and picks one when it loads, by CPU model tables. Those tables lag the hardware: on
/// an Intel Xeon of family 6 model 207 (Emerald Rapids: AVX-512, AVX512-BF16, AMX) 0.3.21 falls
/// back to its generic SSE3 `Prescott` kernel, and sgemm 1024^3 ran at 35 GFLOP/s against 195
/// with the `SkylakeX` kernel (training at 0.27x PyTorch). On a 2-core AMD EPYC of family 26
/// (Zen 5: AVX-512, AVX512-BF16, no AMX) it happens to pick `Cooperlake`. Measured on that EPYC,
/// sgemm GFLOP/s at 1024^3 / 2048^3, one thread (a C loop switching kernels in-process, back
/// to back) and through `BLAS.gemm` on 2 workers (`OPENBLAS_CORETYPE=K subspace info`; the
/// host is shared, so figures move by tens of percent with its load):
///
/// | kernel | 1 thread | 2 workers |
/// |---|---|---|
/// | Prescott (generic SSE3) | 33 / 32 | 73-80 / 79-91 |
/// | Sandybridge (AVX) | - | 66 / 81 (loaded host) |
/// | Haswell (AVX2) | 87 / 80 | 225 / 247 |
/// | Zen (AVX2) | 77 / 95 | 66 / 85 (loaded host; Haswell 84 / 84 in the same minute) |
/// | SkylakeX (AVX-512) | 142-153 / 152-159 | 418 / 465 |
/// | Cooperlake (AVX-512 + bf16 kernels) | 147 / 160 | 383 / 459 |
///
/// Training follows: `subspace bench --preset tiny --optimizer adamw --steps 20 --batch 8`
/// ran at 4,244-4,373 tokens/s on the autodetected Cooperlake, 4,155-4,322 when started on
/// Prescott and switched to SkylakeX (`SUBSPACE_BLAS_SIMULATE_GENERIC=1`), 2,495-2,513 with
/// `OPENBLAS_CORETYPE=Haswell` and 1,041-1,225 with `OPENBLAS_CORETYPE=Prescott`. Debian's
/// 0.3.21 exports no `cblas_sbgemm` (built without BUILD_BFLOAT16), so there is no bf16 rate
/// to measure with it; Cooperlake's fp32 kernels are SkylakeX's.
///
/// Two mechanisms were weighed:
/// - **Our own CPU detection retargeting OpenBLAS** (chosen). A DYNAMIC_ARCH OpenBLAS exports
///   `gotoblas_dynamic_quit` (clears the kernel table pointer) and `gotoblas_dynamic_init`
///   (reads `OPENBLAS_CORETYPE`, else autodetects, then initialises the table's blocking
///   parameters). Setting the variable for the duration of quit + init, then restoring the
///   environment, switches the kernel in-process before the first product; only OpenBLAS's
///   own entry points are used, never its struct layout. Detection is by features from
///   `cpuid`/XCR0 (`CPU.level`), not by model numbers, so a CPU newer than any table still
///   gets the widest kernel its instructions allow: AVX-512 F/BW/VL/DQ -> `SkylakeX`
///   (`Cooperlake` first when the CPU has AVX512-BF16 and the BLAS exports `cblas_sbgemm`: the
///   same fp32 kernels plus bf16 ones), AVX2 + FMA -> `Haswell` (`Zen` first on AMD; equal here
///   within noise), AVX -> `Sandybridge`. It costs no package and works with the OpenBLAS every
///   Debian and Ubuntu release ships, on Intel and AMD alike.
/// - **A BLAS that knows current CPUs.** Debian 12's BLIS (libblis4 0.9.0) detects this
///   Zen 5 as `generic`: 42 GFLOP/s at 1024^3 on one thread, no better than OpenBLAS's
///   Prescott fallback. A newer OpenBLAS is not in Debian 12 (it would be built from source,
///   and its tables would lag the next CPU in turn). oneMKL (PyPI wheels, as PyTorch uses) is
///   not an apt package, and its fast paths key on Intel CPUs; oneDNN (libdnnl-dev 2.6) is a
///   deep-learning primitive library, not a BLAS, so products and LAPACK would need a second
///   code path. None was worth a dependency over retargeting the BLAS every Debian and Ubuntu
///   release already ships.
///
/// Policy: an explicit `OPENBLAS_CORETYPE` set by the user or an administrator is respected
/// (it may be set to avoid a kernel bug) and reported; the BLAS's own choice is replaced only
/// when it is weaker than the CPU allows; a kernel without AVX2 on a CPU with AVX2 is
/// *generic* and gets a `warning` whichever way it was chosen.
public struct BLASBackend: Sendable {
    /// How the kernel came to be the one in use.
    public enum Choice: Sendable, Equatable {
        /// The BLAS's own detection was kept (it was already the best for this CPU).
        case autodetected
        /// We replaced the BLAS's choice `from` with a wider kernel.
        case retargeted(from: String)
        /// `OPENBLAS_CORETYPE` named the kernel; respected.
        case environment(String)
        /// The BLAS cannot switch kernels (a single-target build, Accelerate).
        case fixed
    }

    /// Library and build, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64".
    public let library: String
    /// The kernel in use (OpenBLAS's core name, e.g. "SkylakeX"); nil where the BLAS does not say.
    public let kernel: String?
    /// The instruction set of `kernel`, nil where the name is not one we know.
    public let kernelLevel: CPU.Level?
    public let choice: Choice
    /// Whether the kernel can be switched in-process (a DYNAMIC_ARCH OpenBLAS).
    public let switchable: Bool
    /// The kernel this CPU's features call for (nil where the BLAS cannot switch).
    public let preferred: String?
    /// A kernel without AVX2 while the CPU has AVX2 and FMA.
    public let isGeneric: Bool
    /// Started from `Prescott` on purpose (`SUBSPACE_BLAS_SIMULATE_GENERIC=1`, tests only).
    public let simulated: Bool
    /// Whether the BLAS has a bf16 x bf16 -> fp32 product (`cblas_sbgemm`).
    public var hasBF16GEMM: Bool { Symbols.sbgemm != nil }

    /// One sentence for a `warning:` line when the kernel is generic, or when
    /// `OPENBLAS_CORETYPE` holds the products below what the CPU offers; else nil.
    public var warning: String? {
        if !isGeneric, case .environment(let v) = choice, let kernel, let preferred,
           let lv = kernelLevel, let pl = Self.level(ofKernel: preferred), lv < pl {
            return "OPENBLAS_CORETYPE=\(v) holds matrix products to the \(kernel) kernel (\(lv)) on a CPU with \(CPU.current.level); "
                + "unset it to let Subspace use \(preferred), unless it was set to avoid a BLAS bug"
        }
        guard isGeneric, let kernel else { return nil }
        let cpu = CPU.current
        var s = "the BLAS runs its generic \(kernel) kernel (no AVX2) on a CPU with \(cpu.level): matrix products are several times slower"
        switch choice {
        case .environment(let v): s += "; OPENBLAS_CORETYPE=\(v) chose it (unset it to let Subspace pick \(preferred ?? "a wider kernel"))"
        case .fixed: s += "; this BLAS cannot switch kernels (install Debian's libopenblas0-pthread, a DYNAMIC_ARCH build)"
        default: s += "; switching to \(preferred ?? "a wider kernel") failed"
        }
        return s
    }

    /// `kernel` with its instruction set and how it was chosen, for `info`.
    public var kernelDescription: String {
        var s = kernel ?? "unknown"
        s += " (" + (kernelLevel.map { "\($0)" } ?? "instruction set not known")
        switch choice {
        case .autodetected: s += "; the BLAS's own choice"
        case .retargeted(let from): s += "; switched from \(from)\(simulated ? ", simulated" : "")"
        case .environment(let v): s += "; set by OPENBLAS_CORETYPE=\(v)"
        case .fixed: s += "; this BLAS cannot switch kernels"
        }
        if let preferred, let kernel, preferred.lowercased() != kernel.lowercased(),
           let lv = kernelLevel, let pl = Self.level(ofKernel: preferred), lv < pl {
            s += "; this CPU's best: \(preferred)"
        }
        return s + ")"
    }

    /// OpenBLAS core names by instruction set (0.3.21's `corename` table plus later additions).
    /// Names not listed (a future OpenBLAS's) are "not known" and never called generic.
    static func level(ofKernel name: String) -> CPU.Level? {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return .avx512
        case "haswell", "zen": return .avx2
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return .avx
        case "unknown", "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn",
             "dunnington", "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano", "bobcat":
            return .generic
        default: return nil
        }
    }

    /// Kernels to try for a CPU, widest first; the first that takes is kept.
    static func candidates(for cpu: CPU, bf16GEMM: Bool) -> [String] {
        var out: [String] = []
        if cpu.level >= .avx512 {
            if cpu.usable.contains(.avx512bf16) && bf16GEMM { out.append("Cooperlake") }
            out.append("SkylakeX")
        }
        if cpu.level >= .avx2 { out += cpu.isAMD ? ["Zen", "Haswell"] : ["Haswell", "Zen"] }
        if cpu.level >= .avx { out.append("Sandybridge") }
        return out
    }

    /// Reads the BLAS, and replaces its kernel when the CPU allows a wider one (see the type's
    /// documentation for the policy and the measurements behind it). Called once, by
    /// `BLAS.backend`, before any product.
    static func select(cpu: CPU, environment: [String: String] = ProcessInfo.processInfo.environment) -> BLASBackend {
        #if canImport(Accelerate)
        return BLASBackend(library: "Accelerate", kernel: nil, kernelLevel: nil, choice: .fixed, switchable: false,
                           preferred: nil, isGeneric: false, simulated: false)
        #else
        func current() -> String? { Symbols.corename.map { String(cString: $0()) } }
        let switchable = Symbols.quit != nil && Symbols.initialise != nil && Symbols.corename != nil
        let simulate = switchable && environment["SUBSPACE_BLAS_SIMULATE_GENERIC"] == "1"
        if simulate { force("Prescott") }
        let explicit = simulate ? nil : environment["OPENBLAS_CORETYPE"]
        let candidates = candidates(for: cpu, bf16GEMM: Symbols.sbgemm != nil)
        let preferred = switchable ? candidates.first : nil

        var kernel = current()
        var choice: Choice = !switchable ? .fixed : explicit.map { .environment($0) } ?? .autodetected
        if choice == .autodetected, let start = kernel, let startLevel = level(ofKernel: start), startLevel < cpu.level {
            for name in candidates {
                force(name)
                if let got = current(), let l = level(ofKernel: got), l > startLevel {
                    kernel = got
                    choice = .retargeted(from: start)
                    break
                }
            }
            if choice == .autodetected { force(start); kernel = current() }
        }
        // After any switch: OpenBLAS's config string ends with the kernel in use.
        let library = Symbols.config.map { String(cString: $0()) } ?? "OpenBLAS"
        let kernelLevel = kernel.flatMap(level(ofKernel:))
        let generic = cpu.level >= .avx2 && (kernelLevel.map { $0 < .avx2 } ?? false)
        return BLASBackend(library: library, kernel: kernel, kernelLevel: kernelLevel, choice: choice, switchable: switchable,
                           preferred: preferred, isGeneric: generic, simulated: simulate)
        #endif
    }

    /// Switches a DYNAMIC_ARCH OpenBLAS to the kernel `name` (an OpenBLAS core name): sets
    /// `OPENBLAS_CORETYPE` only for the duration of quit + init, then restores the environment
    /// as it was, so child processes see what the user set. Must run before any product and
    /// with no other thread in the BLAS (`BLAS.backend` is a once-initialised `static let`).
    private static func force(_ name: String) {
        guard let quit = Symbols.quit, let initialise = Symbols.initialise else { return }
        let saved = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) }
        setenv("OPENBLAS_CORETYPE", name, 1)
        quit()
        initialise()
        if let saved { setenv("OPENBLAS_CORETYPE", saved, 1) } else { unsetenv("OPENBLAS_CORETYPE") }
    }

    /// OpenBLAS entry points resolved at run time; nil where the loaded BLAS lacks them.
    enum Symbols {
        typealias VoidFunction = @convention(c) () -> Void
        typealias NameFunction = @convention(c) () -> UnsafeMutablePointer<CChar>
        /// `cblas_sbgemm(order, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)`
        /// with bf16 A and B (raw UInt16) and fp32 C; blasint is 32-bit in Debian's build.
        typealias SBGEMM = @convention(c) (
            Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<UInt16>, Int32,
            UnsafePointer<UInt16>, Int32, Float, UnsafeMutablePointer<Float>, Int32) -> Void

        static func lookup(_ name: String) -> UnsafeMutableRawPointer? {
            guard let handle = dlopen(nil, RTLD_NOW) else { return nil }
            return dlsym(handle, name)
        }
        static let quit = lookup("gotoblas_dynamic_quit").map { unsafeBitCast($0, to: VoidFunction.self) }
        static let initialise = lookup("gotoblas_dynamic_init").map { unsafeBitCast($0, to: VoidFunction.self) }
        static let corename = lookup("openblas_get_corename").map { unsafeBitCast($0, to: NameFunction.self) }
        static let config = lookup("openblas_get_config").map { unsafeBitCast($0, to: NameFunction.self) }
        static let sbgemm = lookup("cblas_sbgemm").map { unsafeBitCast($0, to: SBGEMM.self) }
    }
}

extension BLAS {
    /// A measured product rate.
    public struct Rate: Sendable, Codable {
        /// Matrix side: the product is n x n times n x n.
        public var n: Int
        public var gflops: Double
        /// Largest relative error of sampled entries against a double-precision dot product of
        /// the same (for bf16: the same rounded) inputs.
        public var maxRelativeError: Double
    }

    /// Times `C = A B` for n x n matrices through `gemm` (split over the workers as in
    /// training) for about `seconds`, after one untimed call, and checks sampled entries.
    public static func measureSGEMM(n: Int, seconds: Double = 0.5) -> Rate {
        var rng = RandomStream(seed: UInt64(n))
        let a = Tensor(uninitialized: [n, n]), b = Tensor(uninitialized: [n, n]), c = Tensor(zeros: [n, n])
        for i in 0..<(n * n) { a.data[i] = Float(rng.normal()); b.data[i] = Float(rng.normal()) }
        let run = { gemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n) }
        let rate = timed(flops: 2 * Double(n) * Double(n) * Double(n), seconds: seconds, run)
        let err = sampledError(n: n, a: { a.data[$0] }, b: { b.data[$0] }, c: c.data)
        return withExtendedLifetime((a, b, c)) { Rate(n: n, gflops: rate, maxRelativeError: err) }
    }

    /// As `measureSGEMM` for bf16 x bf16 -> fp32 (`gemmBF16`, oneDNN, split over the workers
    /// as in training; operands already bf16, as in `gemm`'s timing); nil where `hasBF16` is false.
    public static func measureBF16GEMM(n: Int, seconds: Double = 0.5) -> Rate? {
        guard hasBF16 else { return nil }
        var rng = RandomStream(seed: UInt64(n))
        let count = n * n
        let x = UnsafeMutablePointer<Float>.allocate(capacity: count)
        let a = UnsafeMutablePointer<UInt16>.allocate(capacity: count), b = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { x.deallocate(); a.deallocate(); b.deallocate(); c.deallocate() }
        for i in 0..<count { x[i] = Float(rng.normal()) }
        BF16.convert(x, to: a, count: count)
        for i in 0..<count { x[i] = Float(rng.normal()) }
        BF16.convert(x, to: b, count: count)
        let run = { gemmBF16(m: n, n: n, k: n, a: UnsafePointer(a), lda: n, b: UnsafePointer(b), ldb: n, c: c, ldc: n) }
        let rate = timed(flops: 2 * Double(n) * Double(n) * Double(n), seconds: seconds, run)
        func f(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }
        let err = sampledError(n: n, a: { f(a[$0]) }, b: { f(b[$0]) }, c: c)
        return Rate(n: n, gflops: rate, maxRelativeError: err)
    }

    private static func timed(flops: Double, seconds: Double, _ body: () -> Void) -> Double {
        body()
        var reps = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        repeat {
            body()
            reps += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < seconds
        return flops * Double(reps) / elapsed / 1e9
    }

    /// Largest relative error over 64 sampled entries of C = A B (row-major n x n) against
    /// double-precision dot products, relative to the sum of |a_ip b_pj| (the scale of the
    /// rounding error), so the figure is comparable across sizes.
    private static func sampledError(n: Int, a: (Int) -> Float, b: (Int) -> Float, c: UnsafeMutablePointer<Float>) -> Double {
        var worst = 0.0
        var rng = RandomStream(seed: 7)
        for _ in 0..<64 {
            let i = Int(rng.next() % UInt64(n)), j = Int(rng.next() % UInt64(n))
            var s = 0.0, scale = 0.0
            for p in 0..<n {
                let x = Double(a(i * n + p)) * Double(b(p * n + j))
                s += x
                scale += abs(x)
            }
            worst = max(worst, abs(Double(c[i * n + j]) - s) / max(scale, .leastNormalMagnitude))
        }
        return worst
    }
}

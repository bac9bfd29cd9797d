import Foundation

/// Which elementwise kernels run: the AVX-512 loops of `Sources/CSupport` (SwiGLU, RoPE, Adam's
/// sweep, 8-bit block quantization, softmax's exponentials) or the portable Swift SIMD loops
/// they were written from. Swift's SIMD types compile to the x86-64 baseline (SSE2, 4 lanes
/// per instruction) since the package is built for any x86-64; the C functions carry
/// `target("avx512f")` and are called only where the CPU has it, so one binary runs everywhere.
///
/// Each AVX-512 kernel repeats its Swift loop operation for operation (no fused multiply-add),
/// so both paths give the same bits; the kernels take an `avx512:` argument defaulting to
/// `VectorISA.avx512`, which tests set to compare the two.
public enum VectorISA {
    /// The CPU has AVX-512F and `SUBSPACE_PORTABLE_KERNELS` is unset or `0` (set it to `1` to
    /// run the portable loops, e.g. to compare speed).
    public static let avx512: Bool = {
        let forced = ProcessInfo.processInfo.environment["SUBSPACE_PORTABLE_KERNELS"].map { $0 != "0" && !$0.isEmpty } ?? false
        return !forced && CPU.current.usable.contains(.avx512f)
    }()
}

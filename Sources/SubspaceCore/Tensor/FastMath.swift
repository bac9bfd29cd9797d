import CSupport

/// Vectorised transcendental functions for the hot loops (softmax, SiLU, cross-entropy).
///
/// `expf` from libm is scalar; the model calls it tens of millions of times a step. `exp8`
/// evaluates eight lanes at once with the classic Cephes range reduction
/// (x = n ln2 + r, n = round(x / ln2), |r| <= ln2/2) and a degree-6 polynomial for e^r; its relative error is
/// below 2e-7 over the float range, comparable to libm's expf. Inputs below -87.3 flush to 0,
/// inputs above 88.7 saturate to +inf.
public enum FastMath {
    public typealias V8 = SIMD8<Float>

    @inline(__always)
    public static func exp8(_ x0: V8) -> V8 {
        let lo = V8(repeating: -87.33654), hi = V8(repeating: 88.72283)
        var x = x0
        x.replace(with: lo, where: x .< lo)
        x.replace(with: hi, where: x .> hi)
        // n = round(x / ln2) via the 1.5 * 2^23 trick: the sum's low mantissa bits hold n,
        // and subtracting the constant back gives n as a float (|n| < 2^22 here).
        let magic: Float = 12_582_912.0
        let t = x * 1.442_695_04 + magic
        let n = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let fx = t - magic
        // r = x - n*ln2, with ln2 split in two for precision
        x = x - fx * 0.693_359_375
        x = x + fx * 2.121_944_4e-4
        var y = V8(repeating: 1.987_569_15e-4)
        y = y * x + 1.398_199_95e-3
        y = y * x + 8.333_451_9e-3
        y = y * x + 4.166_579_6e-2
        y = y * x + 1.666_666_55e-1
        y = y * x + 5.000_000_1e-1
        y = y * x * x + x + 1
        // scale by 2^n through the exponent bits
        let bits = (n &+ 127) &<< 23
        let pow2 = unsafeBitCast(bits, to: V8.self)
        var r = y * pow2
        r.replace(with: 0, where: x0 .< -87.33654)
        r.replace(with: Float.infinity, where: x0 .> 88.72283)
        return r
    }

    /// Scalar exp through the same polynomial (for tails of vector loops).
    @inline(__always)
    public static func exp(_ x: Float) -> Float { exp8(V8(repeating: x))[0] }

    /// Whether `expShiftedSum` runs the AVX-512 loop of CSupport/vecmath.c (16 lanes; Swift's
    /// SIMD8 compiles to SSE2 pairs here). A `tiny` bf16 step spent 8.6% in exp (perf).
    static var avx512: Bool { VectorISA.avx512 }

    /// In place: `x[i] = exp(x[i] - shift)` for `n` elements; returns the sum of the results.
    /// Each exponential is the same with or without AVX-512; the sum's order differs.
    @inline(__always)
    public static func expShiftedSum(_ x: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
        if avx512 && n >= 16 { return subspace_exp_shifted_sum_avx512(x, n, shift) }
        return expShiftedSumPortable(x, n, shift: shift)
    }

    /// `expShiftedSum` on Swift's SIMD8 (any CPU).
    @inline(__always)
    static func expShiftedSumPortable(_ x: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
        var acc = V8(repeating: 0)
        var i = 0
        let s = V8(repeating: shift)
        while i + 8 <= n {
            let raw = UnsafeMutableRawPointer(x + i)
            let v = exp8(raw.loadUnaligned(as: V8.self) - s)
            raw.storeBytes(of: v, as: V8.self)
            acc += v
            i += 8
        }
        var sum = acc.sum()
        while i < n { let e = exp(x[i] - shift); x[i] = e; sum += e; i += 1 }
        return sum
    }

    /// Maximum of `n` elements (n > 0); NaNs are skipped. 16 AVX-512 lanes where present
    /// (vecmath.c; the same value, but for the sign of a zero maximum).
    @inline(__always)
    public static func max(_ x: UnsafePointer<Float>, _ n: Int, avx512: Bool = VectorISA.avx512) -> Float {
        if avx512 && n >= 16 { return subspace_max_avx512(x, n) }
        var i = 0
        var m = -Float.infinity
        if n >= 8 {
            var acc = V8(repeating: -.infinity)
            while i + 8 <= n {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: V8.self)
                acc.replace(with: v, where: v .> acc)
                i += 8
            }
            m = acc.max()
        }
        while i < n { m = Swift.max(m, x[i]); i += 1 }
        return m
    }

    /// In place: `x[i] *= a` for `n` elements.
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float) {
        for i in 0..<n { x[i] *= a }
    }
}

import CSupport

/// Standard normal deviates in blocks, eight pairs at a time: the noise generator of the
/// zeroth-order rules, which draw one deviate per weight four times a step (MeZO perturbs by
/// +eps z, -2 eps z, +eps z and updates along z). With `RandomStream.normal()` (scalar
/// Box-Muller in Double through libm's log, sin and cos) that generation took about three
/// quarters of a MeZO step on `tiny`, more than its two forward passes.
///
/// Box-Muller on 8 lanes, one 64-bit draw per pair of deviates:
///
///     u = (k + 1/2) / 2^32       (k: the draw's low 32 bits; u in (0, 1), never 0)
///     rho = sqrt(-2 ln u)
///     angle = q pi/2 + t,   q: 2 bits (a quadrant), t = (f - 1/2) pi/2 from 24 more bits
///     (z0, z1) = rho (cos angle, sin angle)
///
/// A uniform quadrant plus a uniform offset in [-pi/4, pi/4) is a uniform angle on the whole
/// circle, so cos and sin need their polynomials on |t| <= pi/4 only (Cephes' sinf/cosf
/// kernels, relative error about 1e-7) and the quadrant just swaps and negates them; ln uses
/// Cephes' logf (mantissa in [sqrt(1/2), sqrt(2)), degree-9 polynomial). The deviates are
/// exact Box-Muller deviates of a 32-bit u up to float rounding: the largest |z| is
/// sqrt(2 ln 2^33) = 6.76, so the tails beyond 6.7 sigma (probability 2e-11) are cut.
public enum FastGaussian {
    typealias V = SIMD8<Float>

    /// Fills `out[0 ..< count]` with standard normal deviates drawn from `stream`. With
    /// `avx512` (the CPU's default, `VectorISA`) it runs `Sources/CSupport/gaussian.c`: two
    /// blocks of eight draws on 16 lanes, the same draws and the same operations in the same
    /// order, so the same deviates bit for bit and the stream left in the same state. (This
    /// SIMD8 loop compiles to SSE2 pairs and scalar lane inserts; it was 37% of a `tiny` MeZO
    /// step.)
    public static func fill(
        _ out: UnsafeMutablePointer<Float>, count: Int, stream: inout RandomStream, avx512: Bool = VectorISA.avx512
    ) {
        if avx512 {
            var s = stream.state
            s.withUnsafeMutableBufferPointer { subspace_gaussian_fill_avx512(out, count, $0.baseAddress!) }
            stream.state = s
            return
        }
        var i = 0
        var k = SIMD8<UInt32>(), f = SIMD8<UInt32>(), q = SIMD8<UInt32>()
        // The stream's xoshiro256** in registers (its state is an array): the same draws, in
        // the same order, as `stream.next()`, written back at the end.
        var x = Xoshiro(stream.state)
        defer { stream.state = [x.s0, x.s1, x.s2, x.s3] }
        while i < count {
            for l in 0..<8 {
                let b = x.next()
                k[l] = UInt32(truncatingIfNeeded: b)
                f[l] = UInt32(truncatingIfNeeded: b >> 32) & 0xFF_FFFF
                q[l] = UInt32(truncatingIfNeeded: b >> 56) & 3
            }
            let u = (V(k) + 0.5) * (1.0 / 4_294_967_296.0)
            let rho = (-2 * log(u)).squareRoot()
            let t = (V(f) * (1.0 / 16_777_216.0) - 0.5) * (Float.pi / 2)
            let (s, c) = sinCos(t)
            // Rotate (c, s) by q quarter turns: (c, s), (-s, c), (-c, -s), (s, -c).
            let swap = (q & 1) .== 1
            let cosA = c.replacing(with: s, where: swap), sinA = s.replacing(with: c, where: swap)
            let negCos = (q .== 1) .| (q .== 2), negSin = q .>= 2
            let z0 = rho * cosA.replacing(with: -cosA, where: negCos)
            let z1 = rho * sinA.replacing(with: -sinA, where: negSin)
            let n = min(16, count - i)
            for l in 0..<min(8, n) { out[i + l] = z0[l] }
            if n > 8 { for l in 0..<(n - 8) { out[i + 8 + l] = z1[l] } }
            i += n
        }
    }

    /// xoshiro256** (Blackman and Vigna), as `RandomStream.next()`.
    struct Xoshiro {
        var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
        init(_ s: [UInt64]) { s0 = s[0]; s1 = s[1]; s2 = s[2]; s3 = s[3] }
        @inline(__always) mutating func next() -> UInt64 {
            let result = rotl(s1 &* 5, 7) &* 9
            let t = s1 << 17
            s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
            s2 ^= t
            s3 = rotl(s3, 45)
            return result
        }
        @inline(__always) func rotl(_ v: UInt64, _ k: UInt64) -> UInt64 { (v << k) | (v >> (64 - k)) }
    }

    /// Natural log on 8 lanes, x > 0 and finite (Cephes logf).
    static func log(_ x: V) -> V {
        var bits = unsafeBitCast(x, to: SIMD8<UInt32>.self)
        var e = V(SIMD8<Int32>(truncatingIfNeeded: bits &>> 23) &- 127)
        bits = (bits & 0x007F_FFFF) | 0x3F00_0000          // mantissa in [0.5, 1)
        var m = unsafeBitCast(bits, to: V.self)
        e += 1
        let small = m .< 0.707106781186547524
        m = m.replacing(with: m + m, where: small) - 1
        e = e.replacing(with: e - 1, where: small)
        let z = m * m
        var y: V = V(repeating: 7.0376836292e-2)
        y = y * m - 1.1514610310e-1
        y = y * m + 1.1676998740e-1
        y = y * m - 1.2420140846e-1
        y = y * m + 1.4249322787e-1
        y = y * m - 1.6668057665e-1
        y = y * m + 2.0000714765e-1
        y = y * m - 2.4999993993e-1
        y = y * m + 3.3333331174e-1
        y = y * m * z
        y += e * -2.12194440e-4
        y -= 0.5 * z
        return m + y + e * 0.693359375
    }

    /// Sine and cosine on 8 lanes for |t| <= pi/4 (Cephes sinf/cosf kernels).
    static func sinCos(_ t: V) -> (V, V) {
        let z = t * t
        var s: V = V(repeating: -1.9515295891e-4)
        s = s * z + 8.3321608736e-3
        s = s * z - 1.6666654611e-1
        let sin = t + t * z * s
        var c: V = V(repeating: 2.443315711809948e-5)
        c = c * z - 1.388731625493765e-3
        c = c * z + 4.166664568298827e-2
        let cos = 1 - 0.5 * z + z * z * c
        return (sin, cos)
    }
}

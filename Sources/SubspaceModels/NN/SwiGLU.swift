import CSupport
import SubspaceCore

/// The SwiGLU gate of the LLaMA MLP (Shazeer, 2020): `h = silu(g) * u`, where g and u are
/// the gate and up projections and `silu(g) = g * sigmoid(g)`.
///
/// Activations kept for backward: g and u (2 * N * ffn floats). h is recomputed in backward
/// (one cheap pass) rather than stored.
///
/// Both passes run `Sources/CSupport/swiglu.c` (16 AVX-512 lanes) where the CPU has it
/// (`VectorISA`), else the SIMD8 loops below; the two give the same bits (each lane performs
/// the same operations in the same order, the scalar tails too).
public enum SwiGLU {
    public typealias V8 = SIMD8<Float>

    @inline(__always)
    static func sigmoid8(_ g: V8) -> V8 { 1 / (1 + FastMath.exp8(-g)) }

    /// h = silu(g) * u over n elements.
    public static func forward(
        g: UnsafePointer<Float>, u: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, count n: Int,
        avx512: Bool = VectorISA.avx512
    ) {
        Parallel.ranges(n, grain: 16384) { r in
            if avx512 {
                let o = r.lowerBound
                subspace_swiglu_forward_avx512(g + o, u + o, h + o, r.count)
                return
            }
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                let gv = UnsafeRawPointer(g + i).loadUnaligned(as: V8.self)
                let uv = UnsafeRawPointer(u + i).loadUnaligned(as: V8.self)
                UnsafeMutableRawPointer(h + i).storeBytes(of: gv * sigmoid8(gv) * uv, as: V8.self)
                i += 8
            }
            while i < r.upperBound {
                let s = 1 / (1 + FastMath.exp(-g[i]))
                h[i] = g[i] * s * u[i]; i += 1
            }
        }
    }

    /// Given dh, writes dg and du (which may alias g and u: each element is read before it
    /// is written), and optionally h = silu(g) * u (recomputed for the down projection's
    /// weight gradient).
    public static func backward(
        dh: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>, u: UnsafeMutablePointer<Float>,
        dg: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>, count n: Int,
        avx512: Bool = VectorISA.avx512
    ) {
        Parallel.ranges(n, grain: 16384) { r in
            if avx512 {
                let o = r.lowerBound
                subspace_swiglu_backward_avx512(dh + o, g + o, u + o, dg + o, du + o, r.count)
                return
            }
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                let gv = UnsafeRawPointer(g + i).loadUnaligned(as: V8.self)
                let uv = UnsafeRawPointer(u + i).loadUnaligned(as: V8.self)
                let d = UnsafeRawPointer(dh + i).loadUnaligned(as: V8.self)
                let s = sigmoid8(gv)
                let silu = gv * s
                let dsilu = s * (1 + gv * (1 - s))
                UnsafeMutableRawPointer(dg + i).storeBytes(of: d * uv * dsilu, as: V8.self)
                UnsafeMutableRawPointer(du + i).storeBytes(of: d * silu, as: V8.self)
                i += 8
            }
            while i < r.upperBound {
                let gi = g[i], ui = u[i], d = dh[i]
                let s = 1 / (1 + FastMath.exp(-gi))
                dg[i] = d * ui * (s * (1 + gi * (1 - s)))
                du[i] = d * (gi * s)
                i += 1
            }
        }
    }
}

import CSupport
import SubspaceCore
import SubspaceModels

/// Adam's element sweeps over bfloat16 moments (`StatePrecision.bf16`).
///
/// Each element's m and v are widened to float32 (exact), advanced by `AdamMoments.advance`
/// in float32, used unrounded for the step (or the direction), and stored rounded to nearest
/// even (`BF16Bits.round`). So a step from moments m0, v0 gives exactly the float32 step's
/// weights (or direction) from the same m0, v0, with m1 = bf16(m1_fp32), v1 = bf16(v1_fp32).
///
/// With t counted from 1 and the float32 rule's constants (`AdamW`, `AdamMoments`):
///
///     m' = advance_m(widen(m), g) ;  v' = advance_v(widen(v), g)        (float32)
///     p <- (p · decayBefore - stepSize · m' / denom(v')) · decayAfter   (torch: decayBefore
///                                       = 1 - lr·wd; transformers: decayAfter = 1 - lr·wd)
///     m <- bf16(m') ;  v <- bf16(v')
///
/// On AVX-512 the sweeps run `Sources/CSupport/adam_bf16.c`, the same operations in the same
/// order on 16 lanes, so the two paths give the same bits (`BF16StateTests`).
extension AdamMoments {
    /// One pass over `count` elements: decays and steps `p` (nil: only the moments move) or
    /// writes the direction m' / denom into `out`, and stores the rounded moments.
    static func sweepBF16(
        p: UnsafeMutablePointer<Float>?, g: UnsafePointer<Float>, m: UnsafeMutablePointer<UInt16>,
        v: UnsafeMutablePointer<UInt16>, out: UnsafeMutablePointer<Float>?, count: Int, step a: subspace_adam_step,
        avx512: Bool
    ) {
        let style: Style = a.torchStyle != 0 ? .torch : .huggingFace
        Parallel.ranges(count, grain: 1 << 15) { r in
            let o = r.lowerBound
            if avx512 {
                withUnsafePointer(to: a) {
                    if let p {
                        subspace_adam_update_bf16_avx512(p + o, g + o, m + o, v + o, r.count, $0)
                    } else if let out {
                        subspace_adam_direction_bf16_avx512(g + o, m + o, v + o, out + o, r.count, $0)
                    }
                }
                return
            }
            for i in r {
                var mi = BF16Bits.widen(m[i]), vi = BF16Bits.widen(v[i])
                let (mn, denom) = advance(
                    g[i], m: &mi, v: &vi, vMax: nil, beta1: a.beta1, beta2: a.beta2, eps: a.eps, bc2Sqrt: a.bc2Sqrt, style: style)
                if let p {
                    var pi = p[i] * a.decayBefore
                    pi -= a.stepSize * mn / denom
                    p[i] = pi * a.decayAfter
                } else if let out {
                    out[i] = mn / denom
                }
                m[i] = BF16Bits.round(mi)
                v[i] = BF16Bits.round(vi)
            }
        }
    }

    /// `direction` over bfloat16 moments: advances them with `g` and writes m' / denom into
    /// `out` (which may be `g`).
    public static func directionBF16(
        g: UnsafePointer<Float>, m: UnsafeMutablePointer<UInt16>, v: UnsafeMutablePointer<UInt16>,
        out: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, eps: Float,
        step t: Int, style: Style, avx512: Bool = VectorISA.avx512
    ) {
        let a = directionConstants(beta1: beta1, beta2: beta2, eps: eps, step: t, style: style)
        sweepBF16(p: nil, g: g, m: m, v: v, out: out, count: count, step: a, avx512: avx512)
    }
}

extension AdamW {
    /// The AdamW step over bfloat16 moments in either style (`AdamW.kernel` and
    /// `AdamW.huggingFaceKernel` for float32 ones): the same constants, the same float32
    /// arithmetic, rounded moments (see `AdamMoments.sweepBF16`).
    public static func kernelBF16(
        p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<UInt16>,
        v: UnsafeMutablePointer<UInt16>, count: Int, lr: Float, beta1: Float, beta2: Float, eps: Float,
        weightDecay: Float, step t: Int, style: AdamMoments.Style, avx512: Bool = VectorISA.avx512
    ) {
        let decay = 1 - lr * weightDecay
        let bc2 = 1 - pow(beta2, Float(t))
        let a = subspace_adam_step(
            beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: style == .torch ? bc2.squareRoot() : 1,
            torchStyle: style == .torch ? 1 : 0,
            stepSize: AdamMoments.stepSize(lr: lr, beta1: beta1, beta2: beta2, step: t, style: style),
            decayBefore: style == .torch ? decay : 1, decayAfter: style == .torch || weightDecay <= 0 ? 1 : decay)
        AdamMoments.sweepBF16(p: p, g: g, m: m, v: v, out: nil, count: count, step: a, avx512: avx512)
    }
}

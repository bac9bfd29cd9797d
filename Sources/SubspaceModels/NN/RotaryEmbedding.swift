import CSupport
import Foundation
import SubspaceCore

/// Rotary position embeddings (Su et al., 2021, RoFormer) in Hugging Face LLaMA's
/// "rotate half" layout: within each head of size hd, element i and element i + hd/2 form a
/// pair rotated by angle `pos * theta^(-2i/hd)`.
///
/// No activations are kept: backward is the inverse rotation of the incoming gradient. The
/// rotation runs `Sources/CSupport/rope.c` (16 AVX-512 lanes over each half head, the same
/// operations in the same order: the same bits) where the CPU has it (`VectorISA`).
public final class RotaryEmbedding: @unchecked Sendable {
    public let headDim: Int
    public let maxPositions: Int
    public let theta: Double
    /// cos and sin tables, `[maxPositions, headDim / 2]`.
    let cosTable: Tensor
    let sinTable: Tensor

    public init(headDim: Int, maxPositions: Int, theta: Double) {
        precondition(headDim % 2 == 0, "rotary embeddings need an even head size")
        self.headDim = headDim
        self.maxPositions = maxPositions
        self.theta = theta
        let half = headDim / 2
        cosTable = Tensor(uninitialized: [maxPositions, half])
        sinTable = Tensor(uninitialized: [maxPositions, half])
        for i in 0..<half {
            // Hugging Face computes inv_freq in float32; we match that rounding.
            let invFreq = Float(1.0 / pow(theta, Double(2 * i) / Double(headDim)))
            for p in 0..<maxPositions {
                let angle = Float(p) * invFreq
                cosTable.data[p * half + i] = Float(cos(Double(angle)))
                sinTable.data[p * half + i] = Float(sin(Double(angle)))
            }
        }
    }

    /// Rotates, in place, `x[N, heads * headDim]` whose row r holds position
    /// `firstPosition + r % seq`. `inverse` applies the transpose rotation (the backward
    /// pass). `avx512` picks the kernel (tests compare both). `firstPosition` is where a key/value cache's new rows start (`KVCache`):
    /// each row is rotated at its absolute position, as transformers' `position_ids` do.
    public func apply(
        _ x: UnsafeMutablePointer<Float>, rows n: Int, heads: Int, seq: Int, firstPosition: Int = 0, inverse: Bool = false,
        avx512: Bool = VectorISA.avx512
    ) {
        precondition(firstPosition >= 0 && firstPosition + min(n, seq) <= maxPositions, "rotary position beyond the table")
        let half = headDim / 2, width = heads * headDim
        let sign: Float = inverse ? -1 : 1
        Parallel.ranges(n, grain: 32) { r in
            if avx512 {
                subspace_rope_rows_avx512(
                    x, r.lowerBound, r.upperBound, heads, headDim, seq, firstPosition, cosTable.data, sinTable.data, sign)
                return
            }
            for row in r {
                let pos = firstPosition + row % seq
                let c = cosTable.data + pos * half, s = sinTable.data + pos * half
                for h in 0..<heads {
                    let v = x + row * width + h * headDim
                    for i in 0..<half {
                        let a = v[i], b = v[i + half], si = sign * s[i]
                        v[i] = a * c[i] - b * si
                        v[i + half] = b * c[i] + a * si
                    }
                }
            }
        }
    }
}

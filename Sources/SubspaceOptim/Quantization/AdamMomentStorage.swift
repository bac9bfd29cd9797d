import CSupport
import Foundation
import SubspaceCore
import SubspaceModels

/// Adam's two moments for one tensor, held in float32, in bfloat16 (`StatePrecision.bf16`:
/// widened for the update, rounded to nearest even when stored) or in 8 bits block-wise as
/// bitsandbytes' 8-bit optimizers hold them (Dettmers et al., ICLR 2022): the first moment
/// with the signed dynamic map (`state1`), the second with the unsigned one (`state2`),
/// one absmax per block each. `init(shape:quantization:)` picks 8 bits exactly when a
/// `StateQuantization` is given and the tensor has at least its `minimumSize` elements.
///
/// The 8-bit update follows bitsandbytes: per block, dequantize m and v, advance them with
/// the gradient, use them, and requantize with the block's new absmax
/// (`withElements`). Only one block's floats exist at a time, so no float copy of the
/// states is ever materialized.
///
/// **bitsandbytes' Adam element step** (`advance`), with t counted from 1:
///
///     m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
///     d  = m / (sqrt(v) / sqrt(1 - b2^t) + eps)          (the step is lr / (1 - b1^t) · d)
///
/// the moment formulas of `AdamMoments` (its Hugging Face form) with the eps placement of
/// `torch.optim.AdamW` (bitsandbytes' CUDA kernel writes the same denominator as
/// sqrt(v) + eps·sqrt(1 - b2^t) and multiplies the step by sqrt(1 - b2^t)). An element whose
/// gradient is NaN or infinite gets m = v = 0 and no step, as bitsandbytes' CUDA kernel does
/// (a NaN would otherwise poison its block's absmax).
public enum AdamMomentStorage {
    case float32(m: Tensor, v: Tensor)
    case blockwise8bit(m: QuantizedState, v: QuantizedState)
    case bfloat16(m: BFloat16Tensor, v: BFloat16Tensor)

    /// Zero moments of `shape`: 8-bit when `quantization` is given and quantizes a tensor
    /// of this size, else in `precision` (the two are never both asked for:
    /// `StatePrecisionAdjustable` refuses bf16 for 8-bit rules).
    public init(shape: [Int], quantization: StateQuantization?, precision: StatePrecision = .fp32) {
        if quantization == nil, precision == .bf16 {
            self = .bfloat16(m: BFloat16Tensor(zeros: shape), v: BFloat16Tensor(zeros: shape))
        } else if let q = quantization, q.quantizes(shape.reduce(1, *)) {
            self = .blockwise8bit(
                m: QuantizedState(zeros: shape, map: .signed, blockSize: q.blockSize),
                v: QuantizedState(zeros: shape, map: .unsigned, blockSize: q.blockSize))
        } else {
            self = .float32(m: Tensor(zeros: shape), v: Tensor(zeros: shape))
        }
    }

    public var isQuantized: Bool {
        if case .blockwise8bit = self { return true }
        return false
    }

    public var count: Int {
        switch self {
        case .float32(let m, _): return m.count
        case .blockwise8bit(let m, _): return m.count
        case .bfloat16(let m, _): return m.count
        }
    }

    /// Bytes held: 8 per element in float32, 4 in bfloat16; 2 per element plus 8 per block
    /// in 8 bits.
    public var bytes: Int {
        switch self {
        case .float32(let m, let v): return m.byteCount + v.byteCount
        case .blockwise8bit(let m, let v): return m.byteCount + v.byteCount
        case .bfloat16(let m, let v): return m.byteCount + v.byteCount
        }
    }

    /// The bytes `init(shape:quantization:precision:)` allocates for `elements` elements.
    public static func byteCount(elements: Int, quantization: StateQuantization?, precision: StatePrecision = .fp32) -> Int {
        guard let q = quantization, q.quantizes(elements) else { return 2 * elements * precision.bytesPerElement }
        return 2 * QuantizedState.byteCount(elements: elements, blockSize: q.blockSize)
    }

    /// The moments as float32 tensors (a dequantized or widened copy unless float32).
    public var dequantized: (m: Tensor, v: Tensor) {
        switch self {
        case .float32(let m, let v): return (m, v)
        case .blockwise8bit(let m, let v): return (m.dequantized(), v.dequantized())
        case .bfloat16(let m, let v): return (m.widened(), v.widened())
        }
    }

    /// Calls `body(range, m, v)` on consecutive element ranges covering the tensor,
    /// concurrently, where m[k] and v[k] are the moments of element range.lowerBound + k as
    /// floats that `body` may update. For 8-bit storage each range is one block: it is
    /// dequantized before `body` and requantized after; bfloat16 ranges are widened before
    /// and rounded after.
    public func withElements(
        _ body: (_ range: Range<Int>, _ m: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>) -> Void
    ) {
        switch self {
        case .float32(let m, let v):
            Parallel.ranges(m.count, grain: 1 << 15) { r in body(r, m.data + r.lowerBound, v.data + r.lowerBound) }
        case .blockwise8bit(let m, let v):
            let size = m.blockSize
            Parallel.ranges(m.blockCount, grain: max(1, (1 << 15) / size)) { blocks in
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 2 * size)
                defer { buffer.deallocate() }
                let mb = buffer, vb = buffer + size
                for b in blocks {
                    m.dequantizeBlock(b, into: mb)
                    v.dequantizeBlock(b, into: vb)
                    body(m.blockRange(b), mb, vb)
                    m.quantizeBlock(b, from: mb)
                    v.quantizeBlock(b, from: vb)
                }
            }
        case .bfloat16(let m, let v):
            let size = 4096
            Parallel.ranges((m.count + size - 1) / size, grain: 8) { chunks in
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 2 * size)
                defer { buffer.deallocate() }
                let mb = buffer, vb = buffer + size
                for c in chunks {
                    let r = (c * size)..<min(m.count, (c + 1) * size), o = r.lowerBound
                    subspace_bf16_to_f32(m.bits + o, mb, r.count)
                    subspace_bf16_to_f32(v.bits + o, vb, r.count)
                    body(r, mb, vb)
                    subspace_f32_to_bf16(mb, m.bits + o, r.count, 0)
                    subspace_f32_to_bf16(vb, v.bits + o, r.count, 0)
                }
            }
        }
    }

    /// sqrt(1 - beta2^t), in double as bitsandbytes computes it.
    public static func biasCorrection2Sqrt(beta2: Float, step t: Int) -> Float {
        Float((1 - Foundation.pow(Double(beta2), Double(t))).squareRoot())
    }

    /// 1 - beta1^t, in double as bitsandbytes computes it.
    public static func biasCorrection1(beta1: Float, step t: Int) -> Float {
        Float(1 - Foundation.pow(Double(beta1), Double(t)))
    }

    /// bitsandbytes' Adam on one element: advances m and v with the finite gradient `g` and
    /// returns the direction m / (sqrt(v) / bc2Sqrt + eps).
    @inline(__always)
    public static func advance(
        _ g: Float, m: inout Float, v: inout Float, beta1: Float, beta2: Float, eps: Float, bc2Sqrt: Float
    ) -> Float {
        let (mi, _) = AdamMoments.advance(
            g, m: &m, v: &v, vMax: nil, beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: bc2Sqrt, style: .huggingFace)
        return mi / (v.squareRoot() / bc2Sqrt + eps)
    }

    /// Advances the moments with `g` (count elements) at step `t` and writes bitsandbytes'
    /// direction into `out` (0 where g is not finite); the caller steps by
    /// lr / (1 - beta1^t) times it. `out` may be `g`.
    public func direction(
        gradient g: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
        beta1: Float, beta2: Float, eps: Float, step t: Int
    ) {
        let bc2Sqrt = Self.biasCorrection2Sqrt(beta2: beta2, step: t)
        withElements { r, m, v in
            var k = 0
            for i in r {
                let gi = g[i]
                if gi.isFinite {
                    out[i] = Self.advance(gi, m: &m[k], v: &v[k], beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: bc2Sqrt)
                } else {
                    m[k] = 0; v[k] = 0; out[i] = 0
                }
                k += 1
            }
        }
    }

    // MARK: Checkpoints

    /// float32 and bfloat16 (widened, exact): `exp_avg`, `exp_avg_sq` (PyTorch's names; the
    /// checkpoint writer stores bfloat16 ones as BF16); 8-bit: bitsandbytes' `state1`,
    /// `absmax1` (first moment: codes and block scales) and `state2`, `absmax2` (second).
    public func encode() -> [String: Tensor] {
        switch self {
        case .float32(let m, let v): return ["exp_avg": m, "exp_avg_sq": v]
        case .bfloat16(let m, let v): return ["exp_avg": m.widened(), "exp_avg_sq": v.widened()]
        case .blockwise8bit(let m, let v):
            let a = m.encode(), b = v.encode()
            return ["state1": a.codes, "absmax1": a.absmax, "state2": b.codes, "absmax2": b.absmax]
        }
    }

    /// The bfloat16 moments under `encode`'s keys (live storage, no copy); empty otherwise.
    public var bf16Moments: [String: BFloat16Tensor] {
        if case .bfloat16(let m, let v) = self { return ["exp_avg": m, "exp_avg_sq": v] }
        return [:]
    }

    /// The keys `encode` writes for a tensor of `elements` elements.
    public static func keys(elements: Int, quantization: StateQuantization?) -> [String] {
        if let q = quantization, q.quantizes(elements) { return ["state1", "absmax1", "state2", "absmax2"] }
        return ["exp_avg", "exp_avg_sq"]
    }

    /// The inverse of `encode` for moments of `shape` under `quantization` (which decides,
    /// from the size, which keys must be there). Only the moment keys are looked at. In
    /// `bf16` the float tensors are rounded to nearest even, which keeps what `encode` wrote
    /// exactly (a float32 state is refused earlier, by the checkpoint's recorded precision).
    public static func decode(
        _ t: [String: Tensor], shape: [Int], quantization: StateQuantization?, precision: StatePrecision = .fp32,
        parameter p: Parameter
    ) throws -> AdamMomentStorage {
        if quantization == nil, precision == .bf16 {
            return .bfloat16(
                m: BFloat16Tensor(rounding: try OptimizerStateError.tensor(t, "exp_avg", shape: shape, parameter: p)),
                v: BFloat16Tensor(rounding: try OptimizerStateError.tensor(t, "exp_avg_sq", shape: shape, parameter: p)))
        }
        guard let q = quantization, q.quantizes(shape.reduce(1, *)) else {
            return .float32(
                m: try OptimizerStateError.tensor(t, "exp_avg", shape: shape, parameter: p),
                v: try OptimizerStateError.tensor(t, "exp_avg_sq", shape: shape, parameter: p))
        }
        func state(_ i: Int, _ map: DynamicQuantizationMap) throws -> QuantizedState {
            let ck = "state\(i)", ak = "absmax\(i)"
            guard let c = t[ck] else { throw OptimizerStateError.missingTensor(parameter: p.name, key: ck) }
            guard let a = t[ak] else { throw OptimizerStateError.missingTensor(parameter: p.name, key: ak) }
            return try QuantizedState.decode(
                codes: c, absmax: a, shape: shape, map: map, blockSize: q.blockSize, parameter: p, codesKey: ck, absmaxKey: ak)
        }
        return .blockwise8bit(m: try state(1, .signed), v: try state(2, .unsigned))
    }
}

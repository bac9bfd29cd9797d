import CSupport
import Foundation
import SubspaceCore
import SubspaceModels

/// A float tensor stored block-wise in 8 bits, bitsandbytes' layout for optimizer states
/// (Dettmers et al., ICLR 2022, Sec. 2.1): the elements, in row-major order, are cut into
/// blocks of `blockSize`; each block keeps its largest magnitude (`absmax`, float32), and
/// each element the index of the `DynamicQuantizationMap` value nearest to
/// element / absmax (one byte). An element reads back as map[code] · absmax.
///
/// Normalizing per block confines an outlier's damage to its own block, which is why the
/// paper's block-wise scheme is stable where tensor-wide 8-bit states are not. The last
/// block may be shorter. A block whose elements are all zero stores absmax 0 and the zero
/// code. Relative to the block's absmax, the round-trip error of an element is at most half
/// the gap between the two codes around it (|x/absmax - map[code]| ≤ (map[k+1] - map[k])/2).
///
/// Storage: `count` bytes of codes plus 4 bytes per block; `byteCount(elements:blockSize:)`
/// gives the formula. The map itself (256 floats) is shared by every tensor and not counted.
public final class QuantizedState: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let blockSize: Int
    public let blockCount: Int
    public let map: DynamicQuantizationMap
    /// One code per element.
    public let codes: UnsafeMutablePointer<UInt8>
    /// One scale per block.
    public let absmax: UnsafeMutablePointer<Float>

    /// All zeros (zero code, absmax 0), as bitsandbytes initialises its 8-bit states.
    public init(zeros shape: [Int], map: DynamicQuantizationMap, blockSize: Int) {
        precondition(blockSize > 0, "block size must be positive")
        self.shape = shape
        count = shape.reduce(1, *)
        self.blockSize = blockSize
        blockCount = (count + blockSize - 1) / blockSize
        self.map = map
        codes = .allocate(capacity: max(count, 1))
        codes.initialize(repeating: map.zeroCode, count: max(count, 1))
        absmax = .allocate(capacity: max(blockCount, 1))
        absmax.initialize(repeating: 0, count: max(blockCount, 1))
    }

    /// `t` quantized.
    public convenience init(quantizing t: Tensor, map: DynamicQuantizationMap, blockSize: Int) {
        self.init(zeros: t.shape, map: map, blockSize: blockSize)
        quantize(from: t.data)
    }

    deinit {
        codes.deallocate()
        absmax.deallocate()
    }

    /// Bytes stored for `elements` elements: one per element plus a float32 per block.
    public static func byteCount(elements: Int, blockSize: Int) -> Int {
        elements + MemoryLayout<Float>.size * ((elements + blockSize - 1) / blockSize)
    }

    public var byteCount: Int { Self.byteCount(elements: count, blockSize: blockSize) }

    /// The elements of block `b`.
    @inline(__always)
    public func blockRange(_ b: Int) -> Range<Int> { (b * blockSize)..<min(count, (b + 1) * blockSize) }

    /// Quantizes block `b` from `x`, which holds that block's elements (x[0] is element
    /// b·blockSize): absmax = max |x|, code = nearest map value to x · (1/absmax), as
    /// bitsandbytes' reference kernel normalizes.
    /// `avx512` (the CPU's default, `VectorISA`) runs the absmax and the code search on 16
    /// lanes (`Sources/CSupport/blockquant.c`), with the same results.
    @inline(__always)
    public func quantizeBlock(_ b: Int, from x: UnsafePointer<Float>, avx512: Bool = VectorISA.avx512) {
        let r = blockRange(b)
        var m: Float = 0
        if avx512 {
            m = subspace_absmax_avx512(x, r.count)
        } else {
            for k in 0..<r.count { m = max(m, abs(x[k])) }
        }
        absmax[b] = m
        let out = codes + r.lowerBound
        guard m > 0, m.isFinite else {
            out.update(repeating: map.zeroCode, count: r.count)
            return
        }
        map.codes(x, count: r.count, scale: 1 / m, into: out, avx512: avx512)
    }

    /// Writes block `b`'s elements, map[code] · absmax, into `out` (out[0] is the block's
    /// first element).
    @inline(__always)
    public func dequantizeBlock(_ b: Int, into out: UnsafeMutablePointer<Float>, avx512: Bool = VectorISA.avx512) {
        let r = blockRange(b)
        let scale = absmax[b], src = codes + r.lowerBound
        map.values.withUnsafeBufferPointer { v in
            if avx512 {
                subspace_dequantize_avx512(src, r.count, v.baseAddress!, scale, out)
                return
            }
            for k in 0..<r.count { out[k] = v[Int(src[k])] * scale }
        }
    }

    /// Quantizes the whole tensor from `x` (`count` elements).
    public func quantize(from x: UnsafePointer<Float>) {
        Parallel.ranges(blockCount, grain: 64) { blocks in
            for b in blocks { quantizeBlock(b, from: x + b * blockSize) }
        }
    }

    /// Writes the whole dequantized tensor into `out` (`count` elements).
    public func dequantize(into out: UnsafeMutablePointer<Float>) {
        Parallel.ranges(blockCount, grain: 64) { blocks in
            for b in blocks { dequantizeBlock(b, into: out + b * blockSize) }
        }
    }

    /// The dequantized tensor.
    public func dequantized() -> Tensor {
        let t = Tensor(uninitialized: shape)
        dequantize(into: t.data)
        return t
    }

    // MARK: Checkpoints

    /// The codes as a float tensor of the stored shape (integers 0...255, exact in float32:
    /// checkpoints hold float32 tensors only) and the block scales as a [blockCount] tensor.
    public func encode() -> (codes: Tensor, absmax: Tensor) {
        let c = Tensor(uninitialized: shape)
        for i in 0..<count { c.data[i] = Float(codes[i]) }
        let a = Tensor(uninitialized: [blockCount])
        a.data.update(from: absmax, count: blockCount)
        return (c, a)
    }

    /// The inverse of `encode`, checking shapes, that every code is an integer in 0...255 and
    /// every scale finite and non-negative. `codesKey`/`absmaxKey` name the tensors in errors.
    public static func decode(
        codes c: Tensor, absmax a: Tensor, shape: [Int], map: DynamicQuantizationMap, blockSize: Int,
        parameter: Parameter, codesKey: String, absmaxKey: String
    ) throws -> QuantizedState {
        let q = QuantizedState(zeros: shape, map: map, blockSize: blockSize)
        guard c.shape == shape else {
            throw OptimizerStateError.shapeMismatch(parameter: parameter.name, key: codesKey, expected: shape, found: c.shape)
        }
        guard a.shape == [q.blockCount] else {
            throw OptimizerStateError.shapeMismatch(
                parameter: parameter.name, key: absmaxKey, expected: [q.blockCount], found: a.shape)
        }
        for i in 0..<q.count {
            let x = c.data[i]
            guard x >= 0, x <= 255, x == x.rounded() else {
                throw OptimizerStateError.invalidValue(parameter: parameter.name, key: codesKey, reason: "\(x) is not an 8-bit code")
            }
            q.codes[i] = UInt8(x)
        }
        for b in 0..<q.blockCount {
            let x = a.data[b]
            guard x >= 0, x.isFinite else {
                throw OptimizerStateError.invalidValue(parameter: parameter.name, key: absmaxKey, reason: "\(x) is not a block scale")
            }
            q.absmax[b] = x
        }
        return q
    }
}

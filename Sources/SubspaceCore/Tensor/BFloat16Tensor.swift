import CSupport
import Foundation

/// A tensor stored as bfloat16 (the high 16 bits of an IEEE float32: 8 exponent bits, 7
/// mantissa bits), for state that tolerates 8 bits of precision and should take half the
/// memory: `--state-precision bf16`'s optimizer moments. Values are read by widening
/// (exact) and written by rounding to nearest even (`BF16Bits.round`); arithmetic is the
/// caller's, in float32.
///
/// Storage: 2 bytes per element, 64-byte aligned, from `posix_memalign` like `Tensor`'s, so
/// large buffers are their own mappings and leave the resident set when freed.
public final class BFloat16Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    /// The bit patterns, row-major.
    public let bits: UnsafeMutablePointer<UInt16>

    /// All zeros (+0.0).
    public init(zeros shape: [Int]) {
        self.shape = shape
        count = shape.reduce(1, *)
        var raw: UnsafeMutableRawPointer?
        let bytes = max(64, count * 2)
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
        bits = raw.bindMemory(to: UInt16.self, capacity: max(count, 1))
        bits.initialize(repeating: 0, count: count)
    }

    /// `t` rounded to bfloat16, element by element (nearest even).
    public convenience init(rounding t: Tensor) {
        self.init(zeros: t.shape)
        Parallel.ranges(count, grain: 1 << 16) { r in
            subspace_f32_to_bf16(t.data + r.lowerBound, bits + r.lowerBound, r.count, 0)
        }
    }

    deinit { free(bits) }

    /// Bytes held: 2 per element.
    public var byteCount: Int { count * MemoryLayout<UInt16>.stride }

    /// The values as a float32 tensor (exact).
    public func widened() -> Tensor {
        let t = Tensor(uninitialized: shape)
        subspace_bf16_to_f32(bits, t.data, count)
        return t
    }

    /// Whether every element of `t` is a bfloat16 value (its low 16 bits are zero), i.e.
    /// `init(rounding:)` keeps it exactly.
    public static func isExact(_ t: Tensor) -> Bool {
        for i in 0..<t.count where t.data[i].bitPattern & 0xFFFF != 0 { return false }
        return true
    }
}

/// bfloat16 bit patterns, element by element, in Swift: the portable twin of the C
/// kernels' conversions (`Sources/CSupport/bf16.c`, `adam_bf16.c`).
public enum BF16Bits {
    /// `x` rounded to nearest even; a NaN keeps its sign and high payload and is made quiet
    /// (bit 6 of the result set); subnormals are kept, not flushed.
    @inline(__always)
    public static func round(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if u & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(truncatingIfNeeded: u >> 16) | 0x40 }
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }

    /// The float32 value of a bfloat16 pattern (exact).
    @inline(__always)
    public static func widen(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }
}

import SubspaceCore
import SubspaceModels

/// A float tensor stored as `bits`-bit unsigned integers with one scale and one zero point
/// per group of `groupSize` consecutive elements (asymmetric uniform quantization), the
/// format Q-GaLore keeps its projection matrices in (Zhang et al., "Q-GaLore", arXiv
/// 2407.08296; INT4 with groups of 256, `q_galore_projector.py`'s `_quantize`). Per group,
/// with Q = 2^bits - 1:
///
///     scale = max(max(w) - min(w), 1e-5) / Q
///     zero  = clamp(-round(min(w) / scale), 0, Q)
///     q     = clamp(round(w / scale) + zero, 0, Q)          (round half to even, as torch.round)
///     w'    = scale · (q - zero)
///
/// in float32. When the group's range contains 0 (so the zero point is representable) each
/// element reads back within scale / 2 of its value; a group of one sign has its zero point
/// clamped, as in the reference, and can be off by more.
///
/// Codes are packed 8 / bits per byte (element i in bits (i mod k)·bits of byte i / k, low
/// bits first), so INT4 really takes half a byte per element; the reference keeps one code
/// per uint8. Scales are float32 and zero points one byte each. The reference requires the
/// element count to be a multiple of the group size; here the last group may be shorter.
public struct GroupQuantizedTensor: Equatable, Sendable {
    public let shape: [Int]
    public let count: Int
    public let bits: Int
    public let groupSize: Int
    public private(set) var packed: [UInt8]
    public private(set) var scales: [Float]
    public private(set) var zeros: [UInt8]

    /// Checks `bits` (1, 2, 4 or 8: whole codes per byte) and a positive group size.
    public static func validate(bits: Int, groupSize: Int) throws {
        guard [1, 2, 4, 8].contains(bits) else {
            throw ConfigurationError("projection bits must be 1, 2, 4 or 8, got \(bits)")
        }
        guard groupSize > 0 else { throw ConfigurationError("quantization group size must be positive, got \(groupSize)") }
    }

    public var groupCount: Int { (count + groupSize - 1) / groupSize }
    public var maxCode: Int { (1 << bits) - 1 }

    /// Bytes for `elements` elements: the packed codes, a float32 scale and a one-byte zero
    /// point per group.
    public static func byteCount(elements: Int, bits: Int, groupSize: Int) -> Int {
        let perByte = 8 / bits
        let groups = (elements + groupSize - 1) / groupSize
        return (elements + perByte - 1) / perByte + groups * (MemoryLayout<Float>.size + 1)
    }

    public var bytes: Int { packed.count + scales.count * MemoryLayout<Float>.size + zeros.count }

    /// `t` quantized. `bits` and `groupSize` must pass `validate`.
    public init(quantizing t: Tensor, bits: Int, groupSize: Int) {
        precondition((try? Self.validate(bits: bits, groupSize: groupSize)) != nil, "bad group quantization \(bits)/\(groupSize)")
        shape = t.shape
        count = t.count
        self.bits = bits
        self.groupSize = groupSize
        let perByte = 8 / bits
        packed = Array(repeating: 0, count: (count + perByte - 1) / perByte)
        let groups = (count + groupSize - 1) / groupSize
        scales = Array(repeating: 0, count: groups)
        zeros = Array(repeating: 0, count: groups)
        let q = Float((1 << bits) - 1)
        for g in 0..<groups {
            let lo = g * groupSize, hi = min(count, lo + groupSize)
            var mn = t.data[lo], mx = t.data[lo]
            for i in lo..<hi { mn = min(mn, t.data[i]); mx = max(mx, t.data[i]) }
            let scale = max(mx - mn, 1e-5) / q
            let zero = min(max(-(mn / scale).rounded(.toNearestOrEven), 0), q)
            scales[g] = scale
            zeros[g] = UInt8(zero)
            for i in lo..<hi {
                let code = min(max((t.data[i] / scale).rounded(.toNearestOrEven) + zero, 0), q)
                setCode(i, UInt8(code))
            }
        }
    }

    /// From already quantized parts (checkpoints): `codes` one per element.
    init(shape: [Int], bits: Int, groupSize: Int, codes: [UInt8], scales: [Float], zeros: [UInt8]) {
        self.shape = shape
        count = shape.reduce(1, *)
        self.bits = bits
        self.groupSize = groupSize
        let perByte = 8 / bits
        packed = Array(repeating: 0, count: (count + perByte - 1) / perByte)
        self.scales = scales
        self.zeros = zeros
        for i in 0..<count { setCode(i, codes[i]) }
    }

    /// The code of element `i`.
    @inline(__always)
    public func code(_ i: Int) -> UInt8 {
        let perByte = 8 / bits
        let shift = (i % perByte) * bits
        return (packed[i / perByte] >> UInt8(shift)) & UInt8(maxCode)
    }

    private mutating func setCode(_ i: Int, _ c: UInt8) {
        let perByte = 8 / bits
        let shift = UInt8((i % perByte) * bits)
        let mask = UInt8(maxCode) << shift
        packed[i / perByte] = (packed[i / perByte] & ~mask) | ((c << shift) & mask)
    }

    /// The dequantized tensor, scale · (q - zero) per element.
    public func dequantized() -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<count {
            let g = i / groupSize
            t.data[i] = scales[g] * Float(Int(code(i)) - Int(zeros[g]))
        }
        return t
    }

    // MARK: Checkpoints

    /// Codes (one float32 integer per element, shaped like the tensor), scales and zero
    /// points ([groupCount] each).
    public func encode() -> (codes: Tensor, scales: Tensor, zeros: Tensor) {
        let c = Tensor(uninitialized: shape)
        for i in 0..<count { c.data[i] = Float(code(i)) }
        return (c, Tensor(shape: [groupCount], values: scales), Tensor(shape: [groupCount], values: zeros.map(Float.init)))
    }

    /// The inverse of `encode`, checking shapes and ranges; `key` prefixes the names in
    /// errors (`<key>`, `<key>_scales`, `<key>_zeros`).
    public static func decode(
        codes c: Tensor, scales s: Tensor, zeros z: Tensor, shape: [Int], bits: Int, groupSize: Int,
        parameter p: Parameter, key: String
    ) throws -> GroupQuantizedTensor {
        let count = shape.reduce(1, *), groups = (count + groupSize - 1) / groupSize, q = Float((1 << bits) - 1)
        guard c.shape == shape else {
            throw OptimizerStateError.shapeMismatch(parameter: p.name, key: key, expected: shape, found: c.shape)
        }
        for (t, k) in [(s, key + "_scales"), (z, key + "_zeros")] where t.shape != [groups] {
            throw OptimizerStateError.shapeMismatch(parameter: p.name, key: k, expected: [groups], found: t.shape)
        }
        func integers(_ t: Tensor, _ k: String) throws -> [UInt8] {
            try t.array.map { x in
                guard x >= 0, x <= q, x == x.rounded() else {
                    throw OptimizerStateError.invalidValue(parameter: p.name, key: k, reason: "\(x) is not a \(bits)-bit code")
                }
                return UInt8(x)
            }
        }
        let scales = s.array
        for x in scales where !(x > 0 && x.isFinite) {
            throw OptimizerStateError.invalidValue(parameter: p.name, key: key + "_scales", reason: "\(x) is not a scale")
        }
        return GroupQuantizedTensor(
            shape: shape, bits: bits, groupSize: groupSize, codes: try integers(c, key), scales: scales,
            zeros: try integers(z, key + "_zeros"))
    }
}

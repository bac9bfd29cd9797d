/// The 8-bit dynamic data type of Dettmers et al., "8-bit Optimizers via Block-wise
/// Quantization" (ICLR 2022, arXiv 2110.02861, Sec. 2), built value for value as
/// bitsandbytes' `create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)`.
///
/// A code is a sign bit (signed map only), an exponent written in unary as a run of zeros
/// ended by an indicator bit, and a linear fraction in the remaining bits. Exponent
/// i = 0...6 covers the decade 10^(i-6) · [0.1, 1] with 2^i fraction steps (2^(i+1) in the
/// unsigned map, which spends the sign bit on the fraction); each code stands for the middle
/// of its step. Together with 0 and 1 that is exactly 256 values:
///
///     signed:    2 · (1 + 2 + ... + 64) + 2 = 256     (-0.99297 ... 0 ... 1)
///     unsigned:  (2 + 4 + ... + 128) + 2 = 256       (0, 3.25e-7, ... , 1)
///
/// so small magnitudes keep their relative precision, which is what Adam's moments need.
/// bitsandbytes' optimizers store the first moment with the signed map and the second (which
/// is never negative) with the unsigned one (`name2qmap["dynamic"]`, `["udynamic"]`).
///
/// The values are sorted, so the nearest code to x is the number of decision midpoints
/// (m_k = (c_k + c_{k+1}) / 2, in float32) strictly below x: a tie goes to the lower code,
/// the rule of bitsandbytes' reference (`torch.bucketize` on the same midpoints) and its
/// CUDA kernel. bitsandbytes' native CPU kernel (0.49+) instead looks x up in a 65,536-entry
/// table over [-1, 1], which differs from the nearest code for values within 2/65535 of a
/// midpoint and cannot resolve the codes below about 3e-5; we implement the nearest code.
public struct DynamicQuantizationMap: Sendable, Equatable {
    /// The 256 code values, ascending.
    public let values: [Float]
    /// The 255 decision midpoints between neighbouring values.
    public let midpoints: [Float]
    /// The code whose value is 0 (127 signed, 0 unsigned): all-zero blocks store it.
    public let zeroCode: UInt8
    public let signed: Bool

    /// bitsandbytes' map for the first moment (`create_dynamic_map(signed=True)`).
    public static let signed = DynamicQuantizationMap(signed: true)
    /// bitsandbytes' map for the second moment (`create_dynamic_map(signed=False)`).
    public static let unsigned = DynamicQuantizationMap(signed: false)

    /// Builds the map as bitsandbytes does, in float32: for each exponent, the fraction
    /// boundaries are `torch.linspace(0.1, 1, k)` (whose elements are start + step·i from
    /// the start for the first half and end - step·(k-1-i) from the end for the second,
    /// each rounded once), the values are the midpoints of neighbouring boundaries scaled by
    /// the decade 10^(i-6).
    public init(signed: Bool) {
        self.signed = signed
        var data: [Float] = []
        // 10^(i-6) for i = 0...6, as Python's 10 ** (i - 6) (then cast to float32).
        let decades: [Double] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]
        for i in 0..<decades.count {
            let count = (1 << (i + (signed ? 0 : 1))) + 1
            let bounds = Self.linspace(0.1, 1, count)
            let decade = Float(decades[i])
            for k in 0..<(count - 1) {
                let mean = (bounds[k] + bounds[k + 1]) / 2
                data.append(decade * mean)
                if signed { data.append(-decade * mean) }
            }
        }
        data.append(0)
        data.append(1)
        precondition(data.count == 256, "dynamic map has \(data.count) values")
        data.sort()
        values = data
        midpoints = (0..<255).map { (data[$0] + data[$0 + 1]) / 2 }
        zeroCode = UInt8(data.firstIndex(of: 0)!)
    }

    /// The code nearest to `x` (x normalized to [-1, 1]); ties to the lower code. A NaN
    /// gets the zero code.
    @inline(__always)
    public func code(for x: Float) -> UInt8 {
        guard !x.isNaN else { return zeroCode }
        // Count of midpoints strictly below x, by binary search.
        var lo = 0, hi = 255
        while lo < hi {
            let mid = (lo + hi) >> 1
            if midpoints[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return UInt8(lo)
    }

    /// torch.linspace(start, end, count) in float32 (CPU kernel), element for element.
    static func linspace(_ start: Float, _ end: Float, _ count: Int) -> [Float] {
        guard count > 1 else { return [start] }
        let step = (end - start) / Float(count - 1)
        let half = count / 2
        // start + step·i with a single rounding (the double computation is exact).
        return (0..<count).map { i in
            i < half
                ? Float(Double(start) + Double(step) * Double(i))
                : Float(Double(end) - Double(step) * Double(count - 1 - i))
        }
    }
}

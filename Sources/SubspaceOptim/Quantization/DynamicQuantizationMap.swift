import CSupport
import SubspaceCore
import SubspaceModels

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
///
/// **Fast exact search.** `code(for:)` does not binary-search the midpoints. The high bits of
/// x's float encoding (sign, exponent, top 7 mantissa bits: 128 buckets per binade over
/// magnitudes 2^-24 ..< 4, smaller and larger magnitudes clamped into the end buckets) index
/// a 6,656-byte table giving, for each bucket, the number of midpoints strictly below the
/// bucket's smallest value. Since the bucket index never decreases as x grows, that count is
/// a lower bound for x's, and stepping up while the next midpoint is still below x (at most
/// one step for almost every x in [-1, 1]) lands exactly on the binary search's answer, ties
/// included. `referenceCode(for:)` keeps the plain binary search for checking.
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
        let mids = (0..<255).map { (data[$0] + data[$0 + 1]) / 2 }
        midpoints = mids
        zeroCode = UInt8(data.firstIndex(of: 0)!)
        paddedMidpoints = mids + [.infinity]
        bucketCodes = Self.bucketTable(midpoints: mids) + [0, 0, 0]
    }

    // MARK: Nearest code

    /// The midpoints followed by +infinity, so the upward step in `code(for:)` needs no bound
    /// check (no non-NaN x lies above the last entry).
    let paddedMidpoints: [Float]
    /// For each bucket (see `bucket(_:)`), the number of midpoints strictly below the
    /// smallest float in that bucket; then 3 zero bytes, so the AVX-512 search may read the
    /// last entry as a 32-bit word.
    let bucketCodes: [UInt8]

    /// Buckets per sign: magnitude bits >> 16 (exponent and top 7 mantissa bits) from 2^-24
    /// (biased exponent 103) to just below 4 (biased exponent 129).
    static let bucketShift: UInt32 = 16
    static let firstBucket = 103 << 7
    static let bucketsPerSign = (130 - 103) << 7

    /// The bucket of the float with bit pattern `bits`: positives take 0..<bucketsPerSign,
    /// negatives the next bucketsPerSign, each ordered by magnitude, magnitudes outside
    /// [2^-24, 4) clamped to the end buckets. Within a sign the index is monotone in |x|.
    @inline(__always)
    static func bucket(_ bits: UInt32) -> Int {
        let a = Int((bits & 0x7FFF_FFFF) &>> bucketShift) &- firstBucket
        let j = min(max(a, 0), bucketsPerSign &- 1)
        return Int(bits &>> 31) &* bucketsPerSign &+ j
    }

    /// The lower bound table: the reference code of each bucket's smallest float (the
    /// smallest magnitude on the positive side, the largest on the negative side; the clamped
    /// ends contain +0 and -infinity respectively).
    static func bucketTable(midpoints: [Float]) -> [UInt8] {
        let n = bucketsPerSign
        func count(_ x: Float) -> UInt8 { binarySearch(midpoints, x) }
        var table = [UInt8](repeating: 0, count: 2 * n)
        for j in 0..<n {
            let low = UInt32((firstBucket + j) << Int(bucketShift))
            let high = UInt32((firstBucket + j + 1) << Int(bucketShift)) - 1
            table[j] = count(j == 0 ? 0 : Float(bitPattern: low))
            table[n + j] = count(j == n - 1 ? -.infinity : -Float(bitPattern: high))
        }
        return table
    }

    /// The number of `midpoints` strictly below x, by binary search.
    static func binarySearch(_ midpoints: [Float], _ x: Float) -> UInt8 {
        var lo = 0, hi = midpoints.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if midpoints[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return UInt8(lo)
    }

    /// `code(for:)` by plain binary search over the midpoints: the definition the fast path
    /// must reproduce bit for bit (kept for tests).
    public func referenceCode(for x: Float) -> UInt8 {
        guard !x.isNaN else { return zeroCode }
        return Self.binarySearch(midpoints, x)
    }

    /// The fast search on raw buffers (see the type's notes): `lut` is `bucketCodes`, `mids`
    /// `paddedMidpoints`.
    @inline(__always)
    static func code(
        _ x: Float, lut: UnsafePointer<UInt8>, mids: UnsafePointer<Float>, zeroCode: UInt8
    ) -> UInt8 {
        guard !x.isNaN else { return zeroCode }
        var c = Int(lut[bucket(x.bitPattern)])
        while mids[c] < x { c &+= 1 }
        return UInt8(truncatingIfNeeded: c)
    }

    /// Writes the code of x[k] · scale into out[k] for k in 0..<count (the product rounded
    /// to float32 first, as `code(for: x[k] * scale)`). With `avx512` (the CPU's default,
    /// `VectorISA`) 16 elements at a time in `Sources/CSupport/blockquant.c`: the bucket
    /// lower bounds and midpoints are gathered and each lane steps up on its own mask, the
    /// same search, so the same codes.
    @inline(__always)
    public func codes(
        _ x: UnsafePointer<Float>, count: Int, scale: Float, into out: UnsafeMutablePointer<UInt8>,
        avx512: Bool = VectorISA.avx512
    ) {
        let z = zeroCode
        bucketCodes.withUnsafeBufferPointer { lut in
            paddedMidpoints.withUnsafeBufferPointer { mids in
                let l = lut.baseAddress!, m = mids.baseAddress!
                if avx512 {
                    var t = subspace_code_table(
                        lut: l, mids: m, bucketShift: Int32(Self.bucketShift), firstBucket: Int32(Self.firstBucket),
                        bucketsPerSign: Int32(Self.bucketsPerSign), zeroCode: Int32(z))
                    subspace_dynamic_codes_avx512(x, count, scale, &t, out)
                    return
                }
                for k in 0..<count { out[k] = Self.code(x[k] * scale, lut: l, mids: m, zeroCode: z) }
            }
        }
    }

    /// The code nearest to `x` (x normalized to [-1, 1]); ties to the lower code. A NaN
    /// gets the zero code.
    @inline(__always)
    public func code(for x: Float) -> UInt8 {
        bucketCodes.withUnsafeBufferPointer { lut in
            paddedMidpoints.withUnsafeBufferPointer { mids in
                Self.code(x, lut: lut.baseAddress!, mids: mids.baseAddress!, zeroCode: zeroCode)
            }
        }
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

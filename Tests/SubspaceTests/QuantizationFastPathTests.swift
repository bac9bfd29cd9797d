import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// `DynamicQuantizationMap.code(for:)` (bucket table + upward step) against the plain binary
/// search it replaces (`referenceCode(for:)`), code for code, on both maps.
@Suite struct QuantizationFastPathTests {
    /// SplitMix64: a fixed, dependency-free stream of bit patterns.
    struct Bits {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    }

    /// The values most likely to expose an off-by-one: ±0, ±1, infinities, extremes,
    /// denormals, every code value and midpoint with its float neighbours (ties go to the
    /// lower code), and the first and last float of every bucket of the table.
    static func edgeValues(_ map: DynamicQuantizationMap) -> [Float] {
        var v: [Float] = [
            0, 1, .infinity, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNormalMagnitude,
            Float.leastNormalMagnitude.nextDown, 1e-30, 1e-8, 2.75e-7, 1.625e-7, 0.5, 2, 4, 1e30,
        ]
        for x in map.values + map.midpoints { v += [x, x.nextUp, x.nextDown] }
        let n = DynamicQuantizationMap.bucketsPerSign, shift = Int(DynamicQuantizationMap.bucketShift)
        for j in 0...n {
            let low = Float(bitPattern: UInt32((DynamicQuantizationMap.firstBucket + j) << shift))
            v += [low, low.nextDown, low.nextUp]
        }
        return v + v.map { -$0 }
    }

    @Test(arguments: [true, false])
    func fastCodesEqualBinarySearch(signed: Bool) {
        let map = DynamicQuantizationMap(signed: signed)
        var mismatches: [Float] = []
        func check(_ x: Float) {
            if map.code(for: x) != map.referenceCode(for: x), mismatches.count < 5 { mismatches.append(x) }
        }
        Self.edgeValues(map).forEach(check)
        #expect(map.code(for: 0) == map.zeroCode && map.code(for: -0.0) == map.zeroCode)
        #expect(map.code(for: 1) == 255 && map.code(for: .infinity) == 255 && map.code(for: -.infinity) == 0)
        // NaN of either sign, quiet or signalling, gets the zero code, as before.
        for x in [Float.nan, -Float.nan, .signalingNaN, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFFF_FFFF)] {
            #expect(map.code(for: x) == map.zeroCode && map.referenceCode(for: x) == map.zeroCode)
        }
        var rng = Bits(state: signed ? 1 : 2)
        for _ in 0..<100_000 {
            check(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())))  // any float, NaNs included
            check(2 * rng.unit() - 1)  // uniform in [-1, 1)
            let magnitude = Float(Foundation.pow(10, Double(-9 + 9.5 * rng.unit())))  // 1e-9 ... ~3
            check(rng.next() & 1 == 0 ? magnitude : -magnitude)
        }
        // A sweep over the whole encoding.
        for bits in stride(from: UInt64(0), through: UInt64(UInt32.max), by: 65_521) {
            check(Float(bitPattern: UInt32(bits)))
        }
        #expect(mismatches.isEmpty, "fast and binary-search codes differ at \(mismatches)")
    }

    /// The block kernel codes x[k] · scale exactly as the element-wise reference does.
    @Test func blockCodesEqualElementwiseReference() {
        var rng = Bits(state: 3)
        let x = (0..<1000).map { _ in Float(Foundation.pow(10, Double(-8 * rng.unit()))) * (rng.next() & 1 == 0 ? 1 : -1) }
        let scale: Float = 1 / 0.731
        for map in [DynamicQuantizationMap.signed, .unsigned] {
            var out = [UInt8](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer { o in map.codes(p.baseAddress!, count: x.count, scale: scale, into: o.baseAddress!) }
            }
            #expect(out == x.map { map.referenceCode(for: $0 * scale) })
        }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// The fixtures written by `scripts/make_bnb_fixtures.py` (bitsandbytes 0.50 on the CPU,
/// galore-torch 1.0, q-galore-torch 1.0).
enum BnbFixtures {
    static func load(_ name: String) throws -> SafeTensorsFile {
        let url = try #require(
            Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures"),
            "missing Fixtures/\(name).safetensors; run scripts/make_bnb_fixtures.py")
        return try SafeTensorsFile.load(url: url)
    }

    static let quantization: SafeTensorsFile = try! load("bnb_quantization")
    static let adam: SafeTensorsFile = try! load("bnb_adam8bit")
    static let galore: SafeTensorsFile = try! load("bnb_galore8bit")
    static let qgalore: SafeTensorsFile = try! load("bnb_qgalore")

    /// The codes stored as float16 integers.
    static func codes(_ t: Tensor) -> [UInt8] { t.array.map { UInt8($0) } }
}

@Suite struct QuantizationTests {
    // MARK: The dynamic map

    @Test func dynamicMapsAreBitsandbytesValueForValue() throws {
        for (map, key) in [(DynamicQuantizationMap.signed, "map.signed"), (DynamicQuantizationMap.unsigned, "map.unsigned")] {
            let ref = try BnbFixtures.quantization.tensor(key).array
            #expect(map.values.map(\.bitPattern) == ref.map(\.bitPattern), "\(key)")
            #expect(map.values == map.values.sorted())
            #expect(map.values[Int(map.zeroCode)] == 0)
            #expect(map.values.last == 1)
            #expect(map.midpoints.count == 255)
        }
        #expect(DynamicQuantizationMap.signed.zeroCode == 127)
        #expect(DynamicQuantizationMap.unsigned.zeroCode == 0)
        #expect(abs(DynamicQuantizationMap.signed.values[0] + 0.99297) < 1e-5)
        // Nearest code, ties to the lower one.
        let m = DynamicQuantizationMap.signed
        for k in [3, 100, 127, 200, 254] {
            #expect(m.code(for: m.values[k]) == UInt8(k))
            #expect(m.code(for: m.midpoints[k]) == UInt8(k))
            #expect(m.code(for: m.midpoints[k].nextUp) == UInt8(k + 1))
        }
        #expect(m.code(for: -1) == 0 && m.code(for: 1) == 255 && m.code(for: .nan) == 127)
    }

    // MARK: Block-wise quantization against bitsandbytes

    /// Codes and block scales equal bitsandbytes' reference kernel's exactly (the signed map
    /// with blocks of 256 and 64, including a short last block and an all-zero block, and the
    /// unsigned map); dequantized values equal its `dequantize_blockwise`.
    @Test(arguments: [("signed", 256), ("signed64", 64), ("unsigned", 256)])
    func blockwiseMatchesBitsandbytes(name: String, blockSize: Int) throws {
        let fx = BnbFixtures.quantization
        let x = try fx.tensor(name == "signed64" ? "signed.x" : "\(name).x")
        let map: DynamicQuantizationMap = name == "unsigned" ? .unsigned : .signed
        let q = QuantizedState(quantizing: x, map: map, blockSize: blockSize)
        let codes = Array(UnsafeBufferPointer(start: q.codes, count: q.count))
        let absmax = Array(UnsafeBufferPointer(start: q.absmax, count: q.blockCount))
        #expect(codes == BnbFixtures.codes(try fx.tensor("\(name).codes")))
        #expect(absmax == (try fx.tensor("\(name).absmax")).array)
        if name == "signed" {
            #expect(q.dequantized().array == (try fx.tensor("signed.dequant")).array)
        }
    }

    /// bitsandbytes' native CPU kernel looks codes up in a 65,536-entry table: where it picks
    /// another code than ours, its code is never more than the table's resolution (2/65535)
    /// farther from the value than ours, which is the nearest.
    @Test(arguments: [("signed", 256), ("signed64", 64), ("unsigned", 256)])
    func nativeKernelDiffersOnlyWithinItsResolution(name: String, blockSize: Int) throws {
        let fx = BnbFixtures.quantization
        let x = try fx.tensor(name == "signed64" ? "signed.x" : "\(name).x")
        let map: DynamicQuantizationMap = name == "unsigned" ? .unsigned : .signed
        let ours = BnbFixtures.codes(try fx.tensor("\(name).codes"))
        let native = BnbFixtures.codes(try fx.tensor("\(name).native_codes"))
        let absmax = try fx.tensor("\(name).absmax").array
        var differ = 0, nonzero = 0
        for i in 0..<x.count where absmax[i / blockSize] > 0 {
            nonzero += 1
            guard ours[i] != native[i] else { continue }
            differ += 1
            let v = x[i] / absmax[i / blockSize]
            let dOurs = abs(map.values[Int(ours[i])] - v), dNative = abs(map.values[Int(native[i])] - v)
            #expect(dOurs <= dNative)
            #expect(dNative - dOurs <= 2 / 65535 + 1e-6, "\(name)[\(i)]: \(v) -> \(native[i]) vs \(ours[i])")
        }
        #expect(Double(differ) < 0.05 * Double(nonzero), "\(differ) of \(nonzero) codes differ")
    }

    // MARK: Round trip

    /// Every element reads back within half the gap to the neighbouring code (relative to
    /// its block's absmax); zero blocks, a block's largest positive element and exact code
    /// values read back exactly.
    @Test(arguments: [[1000], [7, 300], [64, 64]])
    func roundTripWithinQuantizationError(shape: [Int]) throws {
        for (map, square) in [(DynamicQuantizationMap.signed, false), (DynamicQuantizationMap.unsigned, true)] {
            let x = randomTensor(shape, seed: 21)
            if square { for i in 0..<x.count { x.data[i] *= x.data[i] * 1e-3 } }
            x.data[5] *= 100  // an outlier only hurts its own block
            for i in 512..<min(768, x.count) { x.data[i] = 0 }
            for blockSize in [64, 256, 2048] {
                let q = QuantizedState(quantizing: x, map: map, blockSize: blockSize)
                let y = q.dequantized()
                for i in 0..<x.count {
                    let b = i / blockSize, a = q.absmax[b], c = Int(q.codes[i])
                    let lo = c == 0 ? map.values[0] : map.midpoints[c - 1]
                    let hi = c == 255 ? map.values[255] : map.midpoints[c]
                    let bound = a * max(map.values[c] - lo, hi - map.values[c]) * (1 + 1e-5) + 1e-30
                    #expect(abs(y.data[i] - x.data[i]) <= bound, "element \(i) block \(blockSize)")
                    if x.data[i] == a || x.data[i] == 0 { #expect(y.data[i] == x.data[i]) }
                }
                #expect(q.byteCount == x.count + 4 * ((x.count + blockSize - 1) / blockSize))
                // Requantizing dequantized values is the identity on codes (unsigned: the
                // block maximum reads back exactly, so the scale is kept).
                guard square else { continue }
                let again = QuantizedState(quantizing: y, map: map, blockSize: blockSize)
                #expect(Array(UnsafeBufferPointer(start: again.codes, count: x.count)) == Array(UnsafeBufferPointer(start: q.codes, count: x.count)))
            }
        }
    }

    /// Block-wise 8 bits keep an outlier from flattening the rest of the tensor: with one
    /// huge value, elements in other blocks keep their relative precision.
    @Test func outliersStayInTheirBlock() throws {
        let x = randomTensor([4096], seed: 3)
        x.data[0] = 1e4
        let y = QuantizedState(quantizing: x, map: .signed, blockSize: 256).dequantized()
        let rest = relativeError(Array(y.array[256...]), Array(x.array[256...]))
        #expect(rest < 0.02, "relative error outside the outlier's block: \(rest)")
    }

    // MARK: Storage and checkpoints

    @Test func stateBytesFollowTheFormulas() throws {
        let q = try StateQuantization()
        #expect(q.blockSize == 256 && q.minimumSize == 4096)
        #expect(AdamMomentStorage(shape: [4095], quantization: q).bytes == 2 * 4 * 4095)
        #expect(!AdamMomentStorage(shape: [4095], quantization: q).isQuantized)
        #expect(AdamMomentStorage(shape: [64, 64], quantization: q).bytes == 2 * (4096 + 4 * 16))
        #expect(AdamMomentStorage(shape: [64, 64], quantization: nil).bytes == 2 * 4 * 4096)
        let wide = try StateQuantization(blockSize: 2048, minimumSize: 0)
        #expect(AdamMomentStorage(shape: [5000], quantization: wide).bytes == 2 * (5000 + 4 * 3))
        #expect(AdamMomentStorage.byteCount(elements: 5000, quantization: wide) == 2 * (5000 + 12))
        #expect(throws: ConfigurationError.self) { try StateQuantization(blockSize: 0) }
        #expect(throws: ConfigurationError.self) { try StateQuantization(minimumSize: -1) }
    }

    @Test func quantizedStateCheckpointRoundTrip() throws {
        let p = Parameter(name: "w", role: .mlp, value: Tensor(zeros: [10, 30]))
        let q = QuantizedState(quantizing: randomTensor([10, 30], seed: 4), map: .signed, blockSize: 64)
        let (c, a) = q.encode()
        #expect(c.shape == [10, 30] && a.shape == [5])
        let back = try QuantizedState.decode(
            codes: c, absmax: a, shape: [10, 30], map: .signed, blockSize: 64, parameter: p, codesKey: "c", absmaxKey: "a")
        #expect(back.dequantized().array == q.dequantized().array)
        for bad: Float in [256, 1.5, -1, .nan] {
            let c2 = c.copy(); c2.data[3] = bad
            #expect(throws: OptimizerStateError.self) {
                try QuantizedState.decode(codes: c2, absmax: a, shape: [10, 30], map: .signed, blockSize: 64, parameter: p, codesKey: "c", absmaxKey: "a")
            }
        }
        #expect(throws: OptimizerStateError.self) {
            try QuantizedState.decode(
                codes: c, absmax: Tensor(zeros: [4]), shape: [10, 30], map: .signed, blockSize: 64, parameter: p, codesKey: "c", absmaxKey: "a")
        }
        let neg = a.copy(); neg.data[0] = -1
        #expect(throws: OptimizerStateError.self) {
            try QuantizedState.decode(codes: c, absmax: neg, shape: [10, 30], map: .signed, blockSize: 64, parameter: p, codesKey: "c", absmaxKey: "a")
        }
    }
}

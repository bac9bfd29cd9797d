import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite("SafeTensors")
struct SafeTensorsTests {
    // MARK: Helpers

    /// A fresh empty directory under the system's temporary directory.
    static func scratchDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("subspace-safetensors-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A file image: little-endian header length, the header text, then `data`.
    static func image(_ header: String, _ data: [UInt8] = []) -> Data {
        let h = Array(header.utf8)
        var out = Data()
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: data)
        return out
    }

    static func bytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    }

    static func floatBytes(_ values: [Float]) -> [UInt8] { bytes(values.map(\.bitPattern)) }

    /// Asserts that parsing `data` throws a `SafeTensorsError` of `kind`.
    static func expectError(_ kind: SafeTensorsError.Kind, _ data: Data, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try SafeTensorsFile.parse(data)
            Issue.record("expected a \(kind) error, but parsing succeeded", sourceLocation: sourceLocation)
        } catch let e as SafeTensorsError {
            #expect(e.kind == kind, "got \(e.kind): \(e)", sourceLocation: sourceLocation)
            #expect(!e.description.contains("\n"), sourceLocation: sourceLocation)
            #expect(e.description.hasPrefix("safetensors: "), sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected SafeTensorsError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        }
    }

    // MARK: Round trip

    @Test func roundTrip() throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors")

        let a = Tensor(shape: [2, 3], values: [1, -2, 3.5, .infinity, -0.0, 1e-30])
        let b = Tensor(shape: [4], values: [0.1, 0.2, 0.3, .greatestFiniteMagnitude])
        let scalar = Tensor(shape: [], values: [42])
        let empty = Tensor(zeros: [0, 5])
        let cube = Tensor(shape: [2, 2, 3], values: (0..<12).map { Float($0) * 0.25 - 1 })
        let nan = Tensor(shape: [1], values: [.nan])
        let metadata = ["format": "pt", "quote\"back\\slash": "line\nbreak\ttab é 日本", "empty": ""]
        let list: [(String, Tensor)] = [
            ("layer.weight", a), ("b", b), ("scalar", scalar), ("empty", empty), ("cube", cube), ("ünï \"name\"", nan),
        ]
        try SafeTensorsFile.write(list, metadata: metadata, to: url)

        let file = try SafeTensorsFile.load(url: url)
        #expect(file.metadata == metadata)
        #expect(file.names == list.map(\.0))
        #expect(file.entries.allSatisfy { $0.dtype == .f32 })
        #expect(file.integerTensors.isEmpty)
        for (name, t) in list {
            let r = try file.tensor(name)
            #expect(r.shape == t.shape, "\(name)")
            #expect(r.array.map(\.bitPattern) == t.array.map(\.bitPattern), "\(name)")
        }
        #expect(try SafeTensorsFile.read(url: url).count == list.count)
        #expect(try SafeTensorsFile.readMetadata(url: url) == metadata)

        // The data section starts 8-byte aligned, and nothing else is left in the directory.
        let raw = try Data(contentsOf: url)
        let headerLength = raw.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect((8 + headerLength) % 8 == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"])

        // The in-memory parser agrees with the file reader.
        let parsed = try SafeTensorsFile.parse(raw)
        #expect(parsed.names == file.names)
        #expect(try parsed.tensor("cube").array == cube.array)
    }

    @Test func emptyFileAndNoMetadata() throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("empty.safetensors")
        try SafeTensorsFile.write([], to: url)
        let file = try SafeTensorsFile.load(url: url)
        #expect(file.tensors.isEmpty && file.metadata.isEmpty)
    }

    @Test func writeReplacesAnExistingFile() throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("ckpt.safetensors")
        try Data("old contents".utf8).write(to: url)
        try SafeTensorsFile.write([("w", Tensor(shape: [3], values: [1, 2, 3]))], metadata: ["step": "1"], to: url)
        try SafeTensorsFile.write([("w", Tensor(shape: [2], values: [4, 5]))], metadata: ["step": "2"], to: url)
        let file = try SafeTensorsFile.load(url: url)
        #expect(file.metadata == ["step": "2"])
        #expect(try file.tensor("w").array == [4, 5])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["ckpt.safetensors"])
    }

    @Test func writeRejectsBadNamesAndLeavesNoFile() throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("bad.safetensors")
        let t = Tensor(zeros: [2])
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile.write([("x", t), ("x", t)], to: url) }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile.write([("__metadata__", t)], to: url) }
        let missingDir = dir.appendingPathComponent("no/such/dir/file.safetensors")
        do {
            try SafeTensorsFile.write([("x", t)], to: missingDir)
            Issue.record("writing into a missing directory succeeded")
        } catch let e as SafeTensorsError {
            #expect(e.kind == .io)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    // MARK: Other dtypes

    @Test func readsHalfBFloatAndIntegers() throws {
        let half: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3800, 0x7C00, 0x8000, 0x0400]
        let bf16: [UInt16] = [0x3F80, 0xC060, 0x0000, 0x4049]
        let i32: [Int32] = [-5, 7, Int32.max]
        let i64: [Int64] = [1 << 40, -1]
        var data: [UInt8] = []
        data += Self.bytes(half)   // 0..<16
        data += Self.bytes(bf16)   // 16..<24
        data += Self.bytes(i32)    // 24..<36
        data += Self.bytes(i64)    // 36..<52
        let header = """
        {"__metadata__":{"k":"v"},\
        "h":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},\
        "b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},\
        "i":{"dtype":"I32","shape":[3],"data_offsets":[24,36]},\
        "l":{"dtype":"I64","shape":[2,1],"data_offsets":[36,52]}}
        """
        let file = try SafeTensorsFile.parse(Self.image(header, data))
        #expect(file.metadata == ["k": "v"])
        #expect(file.names == ["h", "b", "i", "l"])
        let h = try file.tensor("h")
        #expect(h.shape == [2, 4])
        #expect(h.array == [1, -2, 65504, 0x1p-24, 0.5, .infinity, -0.0, 0x1p-14])
        #expect(h[6].sign == .minus)
        #expect(try file.tensor("b").array == [1, -3.5, 0, 3.140625])
        #expect(try file.integers("i") == SafeTensorsIntegerTensor(shape: [3], values: [-5, 7, Int64(Int32.max)]))
        #expect(try file.tensor("i").array == [-5, 7, Float(Int32.max)])
        #expect(try file.integers("l") == SafeTensorsIntegerTensor(shape: [2, 1], values: [1 << 40, -1]))
        #expect(try file.tensor("l").array == [0x1p40, -1])
        #expect(throws: SafeTensorsError.self) { try file.integers("h") }
        #expect(throws: SafeTensorsError.self) { try file.tensor("missing") }

        // Every F16 bit pattern converts as Swift's own Float16 does (where it exists).
        #if !(os(macOS) && arch(x86_64))
        var mismatches: [UInt16] = []
        for bits in UInt16.min...UInt16.max {
            let ours = SafeTensorsFile.halfToFloat(bits)
            let ref = Float(Float16(bitPattern: bits))
            if !(ours.bitPattern == ref.bitPattern || (ours.isNaN && ref.isNaN)) { mismatches.append(bits) }
        }
        #expect(mismatches.isEmpty, "F16 patterns converted wrongly: \(mismatches.prefix(8).map { String($0, radix: 16) })")
        #endif
    }

    @Test func readsTheReferenceWriterOutput() throws {
        // The parity fixtures are written by Python's safetensors (F16/BF16 weights, F32
        // results, I32 token ids).
        for name in ["llama_mha", "llama_gqa"] {
            let url = try #require(Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures"))
            let file = try SafeTensorsFile.load(url: url)
            #expect(file.metadata["config"] != nil)
            #expect(try file.integers("inputs").shape == [2, 16])
            #expect(try file.tensor("logits").shape.count == 2)
        }
    }

    // MARK: Corrupt input

    @Test func truncatedFiles() throws {
        Self.expectError(.truncated, Data())
        Self.expectError(.truncated, Data([1, 0, 0, 0, 0]))
        // Header length past the end of the file.
        Self.expectError(.truncated, Self.image("{}").prefix(9))
        var past = Data()
        withUnsafeBytes(of: UInt64(1000).littleEndian) { past.append(contentsOf: $0) }
        past.append(contentsOf: Array("{}".utf8))
        Self.expectError(.truncated, past)
        var huge = Data(repeating: 0xFF, count: 8)
        huge.append(contentsOf: Array("{}".utf8))
        Self.expectError(.truncated, huge)

        // Every proper prefix of a valid file fails cleanly.
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("t.safetensors")
        try SafeTensorsFile.write(
            [("a", Tensor(shape: [2, 2], values: [1, 2, 3, 4])), ("b", Tensor(shape: [3], values: [5, 6, 7]))],
            metadata: ["x": "y"], to: url)
        let full = try Data(contentsOf: url)
        #expect(try SafeTensorsFile.parse(full).tensors.count == 2)
        for n in 0..<full.count {
            #expect(throws: SafeTensorsError.self, "prefix \(n)") { try SafeTensorsFile.parse(full.prefix(n)) }
        }
        // The same through the file reader.
        let cut = dir.appendingPathComponent("cut.safetensors")
        try full.prefix(full.count - 3).write(to: cut)
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile.load(url: cut) }
    }

    @Test func headerTooLarge() throws {
        // A sparse file long enough to hold a 200 MB header.
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("big.safetensors")
        var start = Data()
        withUnsafeBytes(of: UInt64(200_000_000).littleEndian) { start.append(contentsOf: $0) }
        start.append(UInt8(ascii: "{"))
        try start.write(to: url)
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: 200_000_100)
        try handle.close()
        do {
            _ = try SafeTensorsFile.load(url: url)
            Issue.record("a 200 MB header was accepted")
        } catch let e as SafeTensorsError {
            #expect(e.kind == .headerTooLarge)
        }
    }

    @Test func invalidHeaders() {
        let data = Self.floatBytes([1, 2])
        Self.expectError(.invalidHeader, Self.image("", data))
        Self.expectError(.invalidHeader, Self.image("{not json", data))
        Self.expectError(.invalidHeader, Self.image("[1, 2, 3]", data))
        Self.expectError(.invalidHeader, Self.image("  ", data))
        Self.expectError(.invalidHeader, Self.image(#"{"a": 3}"#, data))
        Self.expectError(.invalidHeader, Self.image(#"{"a":{"dtype":"F32","shape":[2]}}"#, data))
        Self.expectError(.invalidHeader, Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}"#, data))
        Self.expectError(.invalidHeader, Self.image(#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data))
        Self.expectError(.invalidHeader, Self.image(#"{"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}}"#, data))
        Self.expectError(.invalidHeader, Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}}"#, data))
        Self.expectError(.invalidHeader, Self.image(#"{"__metadata__":{"n":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data))
        Self.expectError(.invalidHeader, Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, data))
        // Invalid UTF-8 in the header.
        var bad = Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data)
        bad[10] = 0xFF
        Self.expectError(.invalidHeader, bad)
    }

    @Test func unknownDType() {
        for dtype in ["F64", "Q4", "", "f32", "U8"] {
            let header = #"{"a":{"dtype":"\#(dtype)","shape":[2],"data_offsets":[0,8]}}"#
            Self.expectError(.unknownDType, Self.image(header, Self.floatBytes([1, 2])))
        }
    }

    @Test func offsetsOutOfRange() {
        let data = Self.floatBytes([1, 2, 3, 4])  // 16 bytes
        // Past the end of the data.
        Self.expectError(.invalidOffsets, Self.image(#"{"a":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}}"#, data))
        Self.expectError(.invalidOffsets, Self.image(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}}"#, data))
        // Reversed and negative.
        Self.expectError(.invalidOffsets, Self.image(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, data))
        Self.expectError(.invalidOffsets, Self.image(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, data))
        // Overlapping tensors.
        Self.expectError(.invalidOffsets, Self.image(
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data))
        // Holes: bytes that belong to no tensor, inside or after.
        Self.expectError(.invalidOffsets, Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data))
        Self.expectError(.invalidOffsets, Self.image(
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data))
        // A header that lists no tensors but is followed by data.
        Self.expectError(.invalidOffsets, Self.image("{}", data))
    }

    @Test func shapeAndSizeMismatch() {
        let data = Self.floatBytes([1, 2, 3, 4])  // 16 bytes
        Self.expectError(.sizeMismatch, Self.image(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, data))
        Self.expectError(.sizeMismatch, Self.image(#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}"#, data))
        Self.expectError(.sizeMismatch, Self.image(#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}"#, data))
        Self.expectError(.sizeMismatch, Self.image(#"{"a":{"dtype":"I64","shape":[4],"data_offsets":[0,16]}}"#, data))
        Self.expectError(.sizeMismatch, Self.image(#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,16]}}"#, data))
        Self.expectError(.invalidShape, Self.image(#"{"a":{"dtype":"F32","shape":[-1,-16],"data_offsets":[0,16]}}"#, data))
        Self.expectError(.invalidShape, Self.image(
            #"{"a":{"dtype":"F32","shape":[9223372036854775807,2],"data_offsets":[0,16]}}"#, data))
        Self.expectError(.invalidShape, Self.image(
            #"{"a":{"dtype":"I64","shape":[2305843009213693952],"data_offsets":[0,16]}}"#, data))
    }

    @Test func missingFile() {
        do {
            _ = try SafeTensorsFile.load(url: URL(fileURLWithPath: "/nonexistent/subspace/x.safetensors"))
            Issue.record("loading a missing file succeeded")
        } catch let e as SafeTensorsError {
            #expect(e.kind == .io)
            #expect(e.description.contains("/nonexistent/subspace/x.safetensors"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    /// Random byte corruption never crashes the reader: it either throws a SafeTensorsError
    /// or returns tensors consistent with their shapes.
    @Test func corruptedBytesNeverCrash() throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("f.safetensors")
        try SafeTensorsFile.write(
            [("w", Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6])), ("v", Tensor(shape: [2], values: [7, 8]))],
            metadata: ["a": "b"], to: url)
        let full = try Data(contentsOf: url)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for _ in 0..<2000 {
            var d = full
            for _ in 0..<(1 + next() % 3) {
                let i = next() % d.count
                d[i] = UInt8(truncatingIfNeeded: next())
            }
            do {
                let f = try SafeTensorsFile.parse(d)
                for (_, t) in f.tensors { #expect(t.count == t.shape.reduce(1, *)) }
            } catch is SafeTensorsError {
            } catch {
                Issue.record("non-SafeTensorsError: \(error)")
            }
        }
    }
}

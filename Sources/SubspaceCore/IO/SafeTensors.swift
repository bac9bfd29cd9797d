import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a safetensors file could not be read or written. `description` is one line fit for a
/// user; `kind` lets callers and tests tell the cases apart.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable, Equatable {
        /// The operating system refused an open, read, write, sync or rename.
        case io
        /// The file ends before its 8-byte header length, its header or its data.
        case truncated
        /// The header length is larger than the format's 100 MB limit.
        case headerTooLarge
        /// The header is not valid JSON or not the expected structure.
        case invalidHeader
        /// A tensor's dtype is not one we read.
        case unknownDType
        /// A tensor's shape is negative or overflows.
        case invalidShape
        /// A tensor's data offsets are reversed, past the data, overlapping or leave holes.
        case invalidOffsets
        /// A tensor's byte range does not match its shape and dtype.
        case sizeMismatch
        /// Two tensors share a name, or a name is reserved.
        case invalidName
        /// A tensor was asked for in a type its dtype does not hold.
        case wrongType
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "safetensors: \(message)" }
}

/// Element types of the safetensors format that this reader understands.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i32 = "I32", i64 = "I64"

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .i64: return 8
        }
    }

    public var isInteger: Bool { self == .i32 || self == .i64 }
}

/// An integer tensor read exactly (I32 and I64 entries), row-major.
public struct SafeTensorsIntegerTensor: Equatable, Sendable {
    public let shape: [Int]
    public let values: [Int64]
}

/// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes
/// of JSON mapping each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
/// (offsets relative to the data that follows the header) plus an optional
/// `"__metadata__"` string map, then the tensors' little-endian bytes.
///
/// Reading never traps on bad input: every inconsistency throws a `SafeTensorsError`.
/// Tensors are read with `pread` straight into their storage, so a file is never held in
/// memory twice. F32 tensors are read as they are; F16 and BF16 are widened to Float32; I32
/// and I64 tensors are available exactly in `integerTensors` and also, converted to Float32
/// (exact for magnitudes up to 2^24), in `tensors`.
///
/// Writing produces F32 tensors (BF16 for the names asked), and is atomic: the file is written under a temporary
/// name in the destination's directory, synced, and renamed over the destination.
public struct SafeTensorsFile: @unchecked Sendable {
    /// Where one tensor lies in the file.
    public struct Entry: Equatable, Sendable {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Byte range relative to the start of the data section.
        public let byteRange: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    /// Every tensor as Float32, by name.
    public let tensors: [String: Tensor]
    /// The I32 and I64 tensors with their exact values, by name.
    public let integerTensors: [String: SafeTensorsIntegerTensor]
    /// The `__metadata__` map (empty if absent).
    public let metadata: [String: String]
    /// The header's entries in data order.
    public let entries: [Entry]

    /// Largest header accepted, as in the reference implementation.
    public static let maxHeaderBytes = 100_000_000

    /// Tensor names in data order.
    public var names: [String] { entries.map(\.name) }

    /// The named tensor as Float32, or a `wrongType`/missing-name error.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw SafeTensorsError(.invalidName, "no tensor named '\(name)'") }
        return t
    }

    /// The named integer tensor's exact values.
    public func integers(_ name: String) throws -> SafeTensorsIntegerTensor {
        if let t = integerTensors[name] { return t }
        if tensors[name] != nil {
            throw SafeTensorsError(.wrongType, "tensor '\(name)' is not an integer tensor")
        }
        throw SafeTensorsError(.invalidName, "no tensor named '\(name)'")
    }

    // MARK: Reading

    /// Reads every tensor of the file at `url` as Float32.
    public static func read(url: URL) throws -> [String: Tensor] { try load(url: url).tensors }

    /// Reads the file's metadata map only (the tensors are not read).
    public static func readMetadata(url: URL) throws -> [String: String] {
        let file = try FileSource(url: url)
        defer { file.close() }
        return try parseHeader(file).metadata
    }

    /// Reads the whole file: tensors, integer tensors, metadata and layout.
    public static func load(url: URL) throws -> SafeTensorsFile {
        let file = try FileSource(url: url)
        defer { file.close() }
        return try load(from: file)
    }

    /// Parses a file image held in memory.
    public static func parse(_ data: Data) throws -> SafeTensorsFile {
        try load(from: DataSource(data: data))
    }

    private static func load(from source: ByteSource) throws -> SafeTensorsFile {
        let header = try parseHeader(source)
        var tensors: [String: Tensor] = [:]
        var integers: [String: SafeTensorsIntegerTensor] = [:]
        for e in header.entries {
            let offset = header.dataStart + e.byteRange.lowerBound
            let t = Tensor(uninitialized: e.shape)
            let n = e.count
            if n == 0 {
                if e.dtype.isInteger { integers[e.name] = SafeTensorsIntegerTensor(shape: e.shape, values: []) }
                tensors[e.name] = t
                continue
            }
            switch e.dtype {
            case .f32:
                try source.read(at: offset, count: n * 4, into: UnsafeMutableRawPointer(t.data))
                #if _endian(big)
                for i in 0..<n { t.data[i] = Float(bitPattern: UInt32(littleEndian: t.data[i].bitPattern)) }
                #endif
            case .f16, .bf16:
                var raw = [UInt16](repeating: 0, count: n)
                try raw.withUnsafeMutableBytes { try source.read(at: offset, count: n * 2, into: $0.baseAddress!) }
                let isHalf = e.dtype == .f16
                for i in 0..<n {
                    let bits = UInt16(littleEndian: raw[i])
                    t.data[i] = isHalf ? halfToFloat(bits) : BF16Bits.widen(bits)
                }
            case .i32:
                var raw = [Int32](repeating: 0, count: n)
                try raw.withUnsafeMutableBytes { try source.read(at: offset, count: n * 4, into: $0.baseAddress!) }
                let values = raw.map { Int64(Int32(littleEndian: $0)) }
                for i in 0..<n { t.data[i] = Float(values[i]) }
                integers[e.name] = SafeTensorsIntegerTensor(shape: e.shape, values: values)
            case .i64:
                var raw = [Int64](repeating: 0, count: n)
                try raw.withUnsafeMutableBytes { try source.read(at: offset, count: n * 8, into: $0.baseAddress!) }
                let values = raw.map { Int64(littleEndian: $0) }
                for i in 0..<n { t.data[i] = Float(values[i]) }
                integers[e.name] = SafeTensorsIntegerTensor(shape: e.shape, values: values)
            }
            tensors[e.name] = t
        }
        return SafeTensorsFile(tensors: tensors, integerTensors: integers, metadata: header.metadata, entries: header.entries)
    }

    /// IEEE binary16 to Float32 (normals, subnormals, infinities and NaNs).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F)
        let mant = UInt32(h & 0x3FF)
        if exp == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        if exp == 0 {
            // Zero or subnormal: mant * 2^-24, exact in Float32.
            let magnitude = Float(mant) * 0x1p-24
            return sign != 0 ? -magnitude : magnitude
        }
        return Float(bitPattern: sign | (UInt32(exp - 15 + 127) << 23) | (mant << 13))
    }

    private struct Header {
        var entries: [Entry]
        var metadata: [String: String]
        var dataStart: Int
    }

    private static func parseHeader(_ source: ByteSource) throws -> Header {
        let size = source.size
        guard size >= 8 else {
            throw SafeTensorsError(.truncated, "file is \(size) bytes, shorter than the 8-byte header length")
        }
        var lengthLE: UInt64 = 0
        try withUnsafeMutableBytes(of: &lengthLE) { try source.read(at: 0, count: 8, into: $0.baseAddress!) }
        let length = UInt64(littleEndian: lengthLE)
        if length > UInt64(maxHeaderBytes) {
            if length > UInt64(size - 8) {
                throw SafeTensorsError(.truncated, "header length \(length) runs past the end of the \(size)-byte file")
            }
            throw SafeTensorsError(.headerTooLarge, "header length \(length) exceeds the \(maxHeaderBytes)-byte limit")
        }
        let n = Int(length)
        guard n <= size - 8 else {
            throw SafeTensorsError(.truncated, "header length \(n) runs past the end of the \(size)-byte file")
        }
        guard n >= 2 else { throw SafeTensorsError(.invalidHeader, "header of \(n) bytes cannot hold a JSON object") }
        var json = Data(count: n)
        try json.withUnsafeMutableBytes { try source.read(at: 8, count: n, into: $0.baseAddress!) }
        guard json.first == UInt8(ascii: "{") else {
            throw SafeTensorsError(.invalidHeader, "header does not start with '{'")
        }

        let raw: RawHeader
        do {
            raw = try JSONDecoder().decode(RawHeader.self, from: json)
        } catch let e as SafeTensorsError {
            throw e
        } catch {
            throw SafeTensorsError(.invalidHeader, "header is not valid safetensors JSON (\(oneLine(error)))")
        }

        let dataStart = 8 + n
        let dataSize = size - dataStart
        var entries: [Entry] = []
        entries.reserveCapacity(raw.entries.count)
        for (name, r) in raw.entries {
            guard let dtype = SafeTensorsDType(rawValue: r.dtype) else {
                throw SafeTensorsError(.unknownDType, "tensor '\(name)' has unsupported dtype '\(r.dtype)' (supported: F32, F16, BF16, I32, I64)")
            }
            var count = 1
            for d in r.shape {
                guard d >= 0 else { throw SafeTensorsError(.invalidShape, "tensor '\(name)' has a negative dimension in shape \(r.shape)") }
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else { throw SafeTensorsError(.invalidShape, "tensor '\(name)' shape \(r.shape) overflows") }
                count = p
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteWidth)
            guard !overflow else { throw SafeTensorsError(.invalidShape, "tensor '\(name)' shape \(r.shape) overflows") }
            guard r.offsets.count == 2 else {
                throw SafeTensorsError(.invalidHeader, "tensor '\(name)' needs two data_offsets, got \(r.offsets.count)")
            }
            let begin = r.offsets[0], end = r.offsets[1]
            guard begin >= 0, end >= begin else {
                throw SafeTensorsError(.invalidOffsets, "tensor '\(name)' has invalid data_offsets [\(begin), \(end)]")
            }
            guard end <= dataSize else {
                throw SafeTensorsError(.invalidOffsets, "tensor '\(name)' data_offsets [\(begin), \(end)] run past the \(dataSize)-byte data section")
            }
            guard end - begin == bytes else {
                throw SafeTensorsError(.sizeMismatch, "tensor '\(name)' has \(end - begin) bytes but \(dtype.rawValue) shape \(r.shape) needs \(bytes)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: r.shape, byteRange: begin..<end))
        }
        // The data section must be covered exactly once, in order, with nothing left over.
        entries.sort { ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound) }
        var cursor = 0
        for e in entries {
            if e.byteRange.lowerBound < cursor {
                throw SafeTensorsError(.invalidOffsets, "tensor '\(e.name)' overlaps the previous tensor at byte \(e.byteRange.lowerBound)")
            }
            if e.byteRange.lowerBound > cursor {
                throw SafeTensorsError(.invalidOffsets, "bytes \(cursor)..<\(e.byteRange.lowerBound) of the data section belong to no tensor")
            }
            cursor = e.byteRange.upperBound
        }
        if cursor != dataSize {
            throw SafeTensorsError(.invalidOffsets, "the data section has \(dataSize) bytes but the tensors cover \(cursor)")
        }
        return Header(entries: entries, metadata: raw.metadata, dataStart: dataStart)
    }

    private static func oneLine(_ error: Error) -> String {
        var text: String
        if case let DecodingError.dataCorrupted(c) = error {
            text = c.debugDescription
        } else if case let DecodingError.typeMismatch(_, c) = error {
            text = "wrong type at \(path(c.codingPath)): \(c.debugDescription)"
        } else if case let DecodingError.keyNotFound(k, c) = error {
            text = "missing '\(k.stringValue)' at \(path(c.codingPath))"
        } else if case let DecodingError.valueNotFound(_, c) = error {
            text = "null at \(path(c.codingPath))"
        } else {
            text = String(describing: error)
        }
        text = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return text.count > 200 ? String(text.prefix(200)) + "..." : text
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.isEmpty ? "top level" : keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    // MARK: Writing

    /// Writes F32 tensors (in the given order) and a metadata map to `url`, atomically.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        try write(payloads: tensors.map { ($0.0, .f32($0.1)) }, metadata: metadata, to: url)
    }

    /// One tensor's data: float32, or bfloat16 written as BF16 from its own bits (no copy;
    /// `--state-precision bf16`'s moments). The reader widens BF16 back to float32.
    public enum Payload {
        case f32(Tensor)
        case bf16(BFloat16Tensor)

        var shape: [Int] {
            switch self {
            case .f32(let t): return t.shape
            case .bf16(let t): return t.shape
            }
        }
        var byteCount: Int {
            switch self {
            case .f32(let t): return t.byteCount
            case .bf16(let t): return t.byteCount
            }
        }
    }

    /// Writes `payloads` (in the given order) and a metadata map to `url`, atomically.
    public static func write(payloads tensors: [(String, Payload)], metadata: [String: String] = [:], to url: URL) throws {
        var seen = Set<String>()
        for (name, _) in tensors {
            if name == "__metadata__" { throw SafeTensorsError(.invalidName, "'__metadata__' is reserved and cannot name a tensor") }
            if !seen.insert(name).inserted { throw SafeTensorsError(.invalidName, "tensor name '\(name)' appears twice") }
        }
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += jsonString("__metadata__") + ":{"
            header += metadata.sorted { $0.key < $1.key }
                .map { jsonString($0.key) + ":" + jsonString($0.value) }.joined(separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        for (name, t) in tensors {
            if !first { header += "," }
            first = false
            let end = offset + t.byteCount
            let dtype: String
            if case .bf16 = t { dtype = "BF16" } else { dtype = "F32" }
            header += jsonString(name) + ":{\"dtype\":\"" + dtype + "\",\"shape\":["
                + t.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }

        do {
            try DurableFile.replace(url) { w in
                var length = UInt64(headerBytes.count).littleEndian
                try withUnsafeBytes(of: &length) { try w.write($0.baseAddress!, count: 8) }
                try headerBytes.withUnsafeBytes { try w.write($0.baseAddress!, count: $0.count) }
                for (_, payload) in tensors where payload.byteCount > 0 {
                    let t: Tensor
                    switch payload {
                    case .f32(let f): t = f
                    case .bf16(let h):
                        #if _endian(big)
                        let le = (0..<h.count).map { h.bits[$0].littleEndian }
                        try le.withUnsafeBytes { try w.write($0.baseAddress!, count: $0.count) }
                        #else
                        try w.write(UnsafeRawPointer(h.bits), count: h.byteCount)
                        #endif
                        continue
                    }
                    #if _endian(big)
                    let le = (0..<t.count).map { t.data[$0].bitPattern.littleEndian }
                    try le.withUnsafeBytes { try w.write($0.baseAddress!, count: $0.count) }
                    #else
                    try w.write(UnsafeRawPointer(t.data), count: t.byteCount)
                    #endif
                }
            }
        } catch let e as IOFailure {
            throw SafeTensorsError(.io, e.description)
        }
    }

    static func ioError(_ what: String) -> SafeTensorsError {
        SafeTensorsError(.io, "\(what): \(String(cString: strerror(errno)))")
    }

    /// A JSON string literal.
    private static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

// MARK: - Header decoding

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private struct RawEntry: Decodable {
    let dtype: String
    let shape: [Int]
    let offsets: [Int]
    enum CodingKeys: String, CodingKey {
        case dtype, shape
        case offsets = "data_offsets"
    }
}

private struct RawHeader: Decodable {
    var metadata: [String: String] = [:]
    var entries: [(String, RawEntry)] = []

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        for key in c.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = try c.decode([String: String].self, forKey: key)
            } else {
                entries.append((key.stringValue, try c.decode(RawEntry.self, forKey: key)))
            }
        }
    }
}

// MARK: - Byte sources

private protocol ByteSource {
    var size: Int { get }
    /// Reads exactly `count` bytes at `offset`, or throws `.truncated`.
    func read(at offset: Int, count: Int, into buffer: UnsafeMutableRawPointer) throws
}

private final class FileSource: ByteSource {
    let fd: Int32
    let size: Int
    let path: String

    init(url: URL) throws {
        path = url.path
        fd = url.withUnsafeFileSystemRepresentation { open($0!, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw SafeTensorsFile.ioError("cannot open \(url.path)") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = SafeTensorsFile.ioError("cannot stat \(url.path)")
            _ = closeDescriptor(fd)
            throw e
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            _ = closeDescriptor(fd)
            throw SafeTensorsError(.io, "\(url.path) is not a regular file")
        }
        size = Int(st.st_size)
    }

    func close() { _ = closeDescriptor(fd) }

    func read(at offset: Int, count: Int, into buffer: UnsafeMutableRawPointer) throws {
        var done = 0
        while done < count {
            let r = pread(fd, buffer + done, count - done, off_t(offset + done))
            if r < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsFile.ioError("cannot read \(path)")
            }
            if r == 0 {
                throw SafeTensorsError(.truncated, "\(path) ended at byte \(offset + done), expected \(offset + count)")
            }
            done += r
        }
    }
}

/// POSIX `close` and `write`, under names that do not clash with the methods above.
private func closeDescriptor(_ fd: Int32) -> Int32 { close(fd) }

private struct DataSource: ByteSource {
    let data: Data
    var size: Int { data.count }

    func read(at offset: Int, count: Int, into buffer: UnsafeMutableRawPointer) throws {
        guard offset >= 0, count >= 0, offset <= data.count - count else {
            throw SafeTensorsError(.truncated, "data ended before byte \(offset + count)")
        }
        if count == 0 { return }
        data.withUnsafeBytes { src in
            buffer.copyMemory(from: src.baseAddress! + offset, byteCount: count)
        }
    }
}

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// TensorBoard's event files, written beside `metrics.jsonl`, so that `tensorboard --logdir`
/// (or any dashboard that reads TensorBoard logs) shows a run's curves as it trains.
///
/// The format is TensorFlow's: a file `events.out.tfevents.<unix time>.<host>` of TFRecord
/// records, each `uint64 length, uint32 masked CRC-32C of the length, the bytes, uint32
/// masked CRC-32C of the bytes` (little-endian; masked = rotate right 15 + 0xa282ead8), whose
/// bytes are `Event` protocol buffers (tensorflow/core/util/event.proto):
///
///     Event { double wall_time = 1; int64 step = 2; string file_version = 3;
///             Summary summary = 5; SessionLog session_log = 7; }
///     Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
///     SessionLog { SessionStatus status = 1; }   // START = 1
///
/// The first record names the version (`brain.Event:2`). A resumed run starts a new file with
/// a `SessionLog.START` event at its step: TensorBoard then drops the earlier file's points
/// after that step, as it does for a restarted TensorFlow job, so curves never double back.
/// The encoding is hand-written (four message types, a few field kinds) rather than a
/// protobuf dependency; `scripts/make_tensorboard_fixture.py` checks it against the
/// `tensorboard` package's own writer, byte for byte.
public final class TensorBoardEvents {
    let file: DurableFile.Appender
    public var url: URL { file.url }

    /// Opens a new event file in `dir`. `resumedAt` marks a resumed run's first step.
    public init(directory dir: URL, wallTime: Double = Date().timeIntervalSince1970, resumedAt: Int? = nil) throws {
        let host = ProcessInfo.processInfo.hostName.isEmpty ? "localhost" : ProcessInfo.processInfo.hostName
        var name = "events.out.tfevents.\(Int(wallTime)).\(host)"
        // A second file in the same second (a quick resume) gets its own name.
        var n = 1
        while FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path) {
            name = "events.out.tfevents.\(Int(wallTime)).\(host).\(n)"; n += 1
        }
        do { file = try DurableFile.Appender(dir.appendingPathComponent(name)) } catch let e as IOFailure { throw DataError(e.description) }
        try write(Self.event(wallTime: wallTime, step: 0, fileVersion: "brain.Event:2"))
        if let step = resumedAt { try write(Self.event(wallTime: wallTime, step: step, sessionStart: true)) }
    }

    /// Appends one event holding `scalars` (tag, value) at `step`.
    public func add(step: Int, scalars: [(String, Double)], wallTime: Double = Date().timeIntervalSince1970) throws {
        guard !scalars.isEmpty else { return }
        try write(Self.event(wallTime: wallTime, step: step, scalars: scalars))
    }

    func write(_ event: [UInt8]) throws {
        do { try file.append(Data(Self.record(event))) } catch let e as IOFailure { throw DataError(e.description) }
    }

    // MARK: Encoding

    /// One TFRecord: length, its masked CRC, the data, its masked CRC.
    static func record(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out += length
        out += withUnsafeBytes(of: maskedCRC(length).littleEndian) { Array($0) }
        out += data
        out += withUnsafeBytes(of: maskedCRC(data).littleEndian) { Array($0) }
        return out
    }

    static func event(
        wallTime: Double, step: Int, fileVersion: String? = nil, scalars: [(String, Double)] = [], sessionStart: Bool = false
    ) -> [UInt8] {
        var e: [UInt8] = [0x09]  // field 1, 64-bit
        e += withUnsafeBytes(of: wallTime.bitPattern.littleEndian) { Array($0) }
        if step != 0 { e.append(0x10); e += varint(UInt64(bitPattern: Int64(step))) }  // field 2, varint
        if let fileVersion { e += lengthDelimited(3, Array(fileVersion.utf8)) }
        if !scalars.isEmpty {
            var summary: [UInt8] = []
            for (tag, value) in scalars {
                var v = lengthDelimited(1, Array(tag.utf8))
                v.append(0x15)  // field 2, 32-bit
                v += withUnsafeBytes(of: Float(value).bitPattern.littleEndian) { Array($0) }
                summary += lengthDelimited(1, v)
            }
            e += lengthDelimited(5, summary)
        }
        if sessionStart { e += lengthDelimited(7, [0x08, 0x01]) }  // session_log: SessionLog { status: START }
        return e
    }

    static func lengthDelimited(_ field: UInt64, _ bytes: [UInt8]) -> [UInt8] {
        varint(field << 3 | 2) + varint(UInt64(bytes.count)) + bytes
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var v = value, out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
        return out
    }

    // MARK: CRC-32C (Castagnoli), as TFRecord uses

    static let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let c = crc32c(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

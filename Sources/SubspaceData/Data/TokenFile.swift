import Foundation
import SubspaceCore
import SubspaceModels

/// Pre-tokenized data in nanoGPT's format: raw little-endian token ids, `uint16` in `.bin`
/// files and `uint32` in `.u32` files (for vocabularies over 65,535). No header.
public enum TokenFile {
    /// Whether `path` names a token file by its extension.
    public static func isTokenFile(_ path: String) -> Bool { path.hasSuffix(".bin") || path.hasSuffix(".u32") }

    public static func read(path: String) throws -> [Int32] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("cannot read token file '\(path)'")
        }
        let wide = path.hasSuffix(".u32")
        let width = wide ? 4 : 2
        if data.isEmpty { throw DataError("token file '\(path)' is empty") }
        if data.count % width != 0 {
            throw DataError("token file '\(path)' has \(data.count) bytes, not a multiple of \(width): truncated or not \(wide ? "uint32" : "uint16") ids")
        }
        let n = data.count / width
        var out = [Int32](repeating: 0, count: n)
        data.withUnsafeBytes { raw in
            for i in 0..<n {
                if wide {
                    let v = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                    out[i] = Int32(truncatingIfNeeded: min(v, UInt32(Int32.max)))
                } else {
                    out[i] = Int32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                }
            }
        }
        return out
    }

    /// Writes ids atomically; `.u32` paths (or ids over 65,535 — then the path must end in
    /// `.u32`) use 4 bytes per id.
    public static func write(_ ids: [Int32], path: String) throws {
        let wide = path.hasSuffix(".u32")
        if !wide, let bad = ids.first(where: { $0 < 0 || $0 > 65535 }) {
            throw DataError("token id \(bad) does not fit a uint16 .bin file; use a .u32 path")
        }
        var data = Data(capacity: ids.count * (wide ? 4 : 2))
        for id in ids {
            if wide { withUnsafeBytes(of: UInt32(id).littleEndian) { data.append(contentsOf: $0) } }
            else { withUnsafeBytes(of: UInt16(id).littleEndian) { data.append(contentsOf: $0) } }
        }
        try AtomicFile.write(data, to: URL(fileURLWithPath: path))
    }
}

import Foundation

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

/// Atomic file replacement: write a temporary file in the same directory, fsync it, rename
/// it over the destination, fsync the directory. A crash leaves either the old or the new
/// file, never a torn one.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw DataError("cannot write '\(tmp.path)': \(String(cString: strerror(errno)))") }
        var ok = true
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + off, raw.count - off)
                if n <= 0 { ok = false; break }
                off += n
            }
        }
        if fsync(fd) != 0 { ok = false }
        close(fd)
        guard ok else {
            unlink(tmp.path)
            throw DataError("writing '\(url.path)' failed: \(String(cString: strerror(errno)))")
        }
        guard rename(tmp.path, url.path) == 0 else {
            unlink(tmp.path)
            throw DataError("cannot move '\(tmp.path)' into place: \(String(cString: strerror(errno)))")
        }
        let dfd = open(dir.path, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func write(_ string: String, to url: URL) throws { try write(Data(string.utf8), to: url) }
}

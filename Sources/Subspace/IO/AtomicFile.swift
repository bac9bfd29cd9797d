import Foundation

/// Atomic file replacement: write a temporary file in the same directory, fsync it, rename
/// it over the destination, fsync the directory. A crash leaves either the old or the new
/// file, never a torn one. Used for every small file Subspace writes (token files, metrics
/// rewrites, run configs, tokenizer.json); `SafeTensorsFile.write` streams large tensors with
/// the same protocol, and `Checkpoint.save` swaps whole directories.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
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

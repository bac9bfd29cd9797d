import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An operating-system refusal while reading or writing a file: the path, what was being
/// done and `strerror(errno)`, as one line.
public struct IOFailure: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let operation: String
    public let code: Int32
    public init(_ operation: String, _ path: String, code: Int32 = errno) {
        self.operation = operation; self.path = path; self.code = code
    }
    public var description: String { "cannot \(operation) '\(path)': \(String(cString: strerror(code)))" }
}

/// The one durable-write protocol every file Subspace writes goes through.
///
/// `replace` writes a temporary file beside the destination (`.<name>.tmp-<pid>-<random>`,
/// `O_EXCL`), retries writes interrupted by a signal (`EINTR`) and short writes, `fsync`s
/// the file, renames it over the destination and `fsync`s the directory. A crash, a full
/// disk or a kill at any instant leaves either the old file or the new one, never a torn
/// one, and a failed write removes its temporary file. `create` is the same without the
/// rename, for files inside a directory that is itself published by a rename (checkpoints);
/// `Appender` appends records (metrics) with the same error handling.
public enum DurableFile {
    /// Writes bytes to an open descriptor, all of them.
    public struct Writer {
        let fd: Int32
        let path: String
        public func write(_ p: UnsafeRawPointer, count: Int) throws {
            try DurableFile.writeAll(fd, p, count, path)
        }
        public func write(_ data: Data) throws {
            try data.withUnsafeBytes { raw in
                if raw.count > 0 { try write(raw.baseAddress!, count: raw.count) }
            }
        }
    }

    /// Replaces `url` atomically with what `body` writes.
    public static func replace(_ url: URL, _ body: (Writer) throws -> Void) throws {
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let fd = tmp.withUnsafeFileSystemRepresentation { open($0!, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw IOFailure("create", tmp.path) }
        var isOpen = true, renamed = false
        defer {
            if isOpen { _ = close(fd) }
            if !renamed { _ = tmp.withUnsafeFileSystemRepresentation { unlink($0!) } }
        }
        try body(Writer(fd: fd, path: url.path))
        guard fsync(fd) == 0 else { throw IOFailure("sync", url.path) }
        isOpen = false
        guard close(fd) == 0 else { throw IOFailure("close", url.path) }
        let r = tmp.withUnsafeFileSystemRepresentation { src in
            url.withUnsafeFileSystemRepresentation { dst in systemRename(src!, dst!) }
        }
        guard r == 0 else { throw IOFailure("move a new version into", url.path) }
        renamed = true
        try syncDirectory(dir)
    }

    /// Replaces `url` atomically with `data`.
    public static func replace(_ url: URL, with data: Data) throws {
        try replace(url) { try $0.write(data) }
    }

    /// Creates the new file `url` (failing if it exists) with what `body` writes, synced.
    public static func create(_ url: URL, _ body: (Writer) throws -> Void) throws {
        let fd = url.withUnsafeFileSystemRepresentation { open($0!, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw IOFailure("create", url.path) }
        var isOpen = true
        defer { if isOpen { _ = close(fd) } }
        try body(Writer(fd: fd, path: url.path))
        guard fsync(fd) == 0 else { throw IOFailure("sync", url.path) }
        isOpen = false
        guard close(fd) == 0 else { throw IOFailure("close", url.path) }
    }

    /// Makes a directory's entries (new files, renames) durable. Some file systems refuse
    /// `fsync` on directories (`EINVAL`); their entries are then as durable as they get.
    public static func syncDirectory(_ url: URL) throws {
        let fd = url.withUnsafeFileSystemRepresentation { open($0!, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw IOFailure("open the directory", url.path) }
        defer { _ = close(fd) }
        if fsync(fd) != 0 && errno != EINVAL { throw IOFailure("sync the directory", url.path) }
    }

    static func writeAll(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int, _ path: String) throws {
        var done = 0
        while done < count {
            let r = systemWrite(fd, p + done, count - done)
            if r < 0 {
                if errno == EINTR { continue }
                throw IOFailure("write", path)
            }
            if r == 0 { throw IOFailure("write", path, code: EIO) }
            done += r
        }
    }

    /// Appends records to a file opened with `O_APPEND`; every record is one `write(2)` loop,
    /// and a failure (a full disk) throws instead of trapping as `FileHandle.write` does.
    public final class Appender {
        let fd: Int32
        public let url: URL

        public init(_ url: URL) throws {
            let fd = url.withUnsafeFileSystemRepresentation { open($0!, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644) }
            guard fd >= 0 else { throw IOFailure("open for appending", url.path) }
            self.fd = fd
            self.url = url
        }

        public func append(_ data: Data) throws {
            try data.withUnsafeBytes { raw in
                if raw.count > 0 { try DurableFile.writeAll(fd, raw.baseAddress!, raw.count, url.path) }
            }
        }

        deinit { close(fd) }
    }
}

private func systemRename(_ from: UnsafePointer<CChar>, _ to: UnsafePointer<CChar>) -> Int32 { rename(from, to) }
private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A run directory claimed for one training process: checked before anything is trained and
/// locked for the whole run.
///
/// - **Protection.** A directory that already holds a run (`run_config.json`, `metrics.jsonl`
///   or `checkpoint/`) is refused unless the caller resumes it or asks to overwrite it, the
///   convention of transformers' `--overwrite_output_dir`. A path that is a file, or a
///   `checkpoint` that is a file or a folder of something else, is refused at once rather
///   than after hours of training, when the first save would fail.
/// - **Lock.** `flock(2)` on `.subspace.lock` inside the directory, held until the process
///   ends (the kernel releases it on any exit, `kill -9` included, so a stale lock never
///   blocks a later run). The file holds the holder's pid, so a second process names it.
///   Advisory: it guards against a second `subspace`, not against other programs.
public final class RunDirectory {
    public enum Mode: Sendable, Equatable {
        /// A new run: the directory must not hold one, unless `overwrite`.
        case fresh(overwrite: Bool)
        /// Continue the run in the directory.
        case resume
    }

    public static let lockFile = ".subspace.lock"
    /// Files that mark a directory as holding a run.
    static let runMarkers = ["run_config.json", "metrics.jsonl", "checkpoint"]
    /// What `--overwrite` removes before the new run starts, with the TensorBoard event files
    /// (the directory's other files are left alone: they are not ours).
    static let runFiles = ["run_config.json", "metrics.jsonl", "summary.json", "loss.svg", "tokenizer.json", "checkpoint", "checkpoint.old"]

    public let url: URL
    private let fd: Int32

    /// Checks `url` for `mode`, creates it if needed and takes the lock.
    /// - Throws: `ConfigurationError` with one line naming the path and the remedy.
    public init(_ url: URL, mode: Mode) throws {
        let fm = FileManager.default
        let path = url.path
        switch Checkpoint.fileKind(url) {
        case .regular?, .other?: throw ConfigurationError("run directory '\(path)' exists and is not a directory")
        case .directory?, nil: break
        }
        let ck = url.appendingPathComponent("checkpoint")
        if case .resume = mode {
            guard Checkpoint.fileKind(url) == .directory else { throw ConfigurationError("cannot resume: '\(path)' does not exist") }
        }
        switch Checkpoint.fileKind(ck) {
        case .regular?, .other?:
            throw ConfigurationError("'\(ck.path)' exists and is not a directory; it cannot hold the run's checkpoint")
        case .directory?:
            if !Checkpoint.looksLikeCheckpoint(ck) {
                throw ConfigurationError("'\(ck.path)' holds files that are not a checkpoint; move them away first")
            }
        case nil: break
        }
        do { try fm.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw ConfigurationError("cannot create run directory \(FileErrorText.describe(error))")
        }
        let lockPath = url.appendingPathComponent(Self.lockFile).path
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ConfigurationError("cannot create '\(lockPath)': \(String(cString: strerror(errno)))") }
        var ownRetries = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let holder = Self.readPid(fd)
            // Our own pid: a lock this process released is still held by a child it is
            // spawning (between fork and exec the child shares the lock's open file, which
            // O_CLOEXEC closes only at exec). That lasts microseconds: wait, up to 2 s.
            if holder == getpid(), ownRetries < 200 {
                ownRetries += 1
                usleep(10_000)
                continue
            }
            close(fd)
            throw ConfigurationError("run directory '\(path)' is in use by process \(holder.map(String.init) ?? "unknown")")
        }
        self.fd = fd
        self.url = url
        // Record our pid for the next claimant's message.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }

        if case .fresh(let overwrite) = mode {
            let present = Self.runMarkers.filter { Checkpoint.fileKind(url.appendingPathComponent($0)) != nil }
            if !present.isEmpty {
                guard overwrite else {
                    close(fd)
                    throw ConfigurationError("'\(path)' already holds a run; continue it with --resume \(path) or replace it with --overwrite")
                }
                let events = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasPrefix("events.out.tfevents.") }
                for name in Self.runFiles + events {
                    let item = url.appendingPathComponent(name)
                    guard Checkpoint.fileKind(item) != nil else { continue }
                    do { try fm.removeItem(at: item) } catch {
                        close(fd)
                        throw ConfigurationError("cannot remove the old run's \(FileErrorText.describe(error))")
                    }
                }
            }
        }
    }

    deinit { close(fd) }

    private static func readPid(_ fd: Int32) -> Int32? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buf[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

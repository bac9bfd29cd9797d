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

/// The file-system steps of saving and loading: kinds, reads, synced writes, renames, the
/// `.old` fallback and the clean-up of dead processes' temporaries.
extension Checkpoint {

    static func fileKind(_ url: URL) -> FileKind? { FileKind.of(url) }

    /// Whether `dir` may be replaced by a save: empty, or holding a configuration or weights.
    static func looksLikeCheckpoint(_ dir: URL) -> Bool {
        let contents = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return contents.isEmpty || contents.contains(configFile) || contents.contains(modelFile) || contents.contains(shardIndexFile)
    }

    /// `dir`, or `<dir>.old` when a save was interrupted between its two renames.
    public static func resolve(_ dir: URL) -> URL {
        let dir = dir.standardizedFileURL
        if fileKind(dir) != nil { return dir }
        let old = dir.deletingLastPathComponent().appendingPathComponent("\(dir.lastPathComponent).old")
        return fileKind(old) == .directory ? old : dir
    }

    static func readFile(_ url: URL) throws -> Data {
        guard let k = fileKind(url) else {
            if fileKind(url.deletingLastPathComponent()) != .directory {
                throw CheckpointError(.missingFile, url.deletingLastPathComponent(), "checkpoint directory does not exist")
            }
            throw CheckpointError(.missingFile, url, "file does not exist")
        }
        guard k == .regular else { throw CheckpointError(.corruptFile, url, "is not a regular file") }
        do { return try Data(contentsOf: url) } catch {
            throw CheckpointError(.io, url, "cannot read (\(FileErrorText.describe(error)))")
        }
    }

    /// Writes `data` to a new file and syncs it.
    static func writeFile(_ data: Data, to url: URL) throws {
        do { try DurableFile.create(url) { try $0.write(data) } } catch let e as IOFailure {
            throw CheckpointError(.io, url, e.description)
        }
    }

    /// Makes the directory's entries (new files, renames) durable.
    static func syncDirectory(_ url: URL) throws {
        do { try DurableFile.syncDirectory(url) } catch let e as IOFailure {
            throw CheckpointError(.io, url, e.description)
        }
    }

    static func rename(_ from: URL, to: URL) throws {
        let r = from.withUnsafeFileSystemRepresentation { src in
            to.withUnsafeFileSystemRepresentation { dst in posixRename(src!, dst!) }
        }
        guard r == 0 else { throw posixError(from, "cannot rename to \(to.path)") }
    }

    static func removeItem(_ url: URL) throws {
        guard fileKind(url) != nil else { return }
        do { try FileManager.default.removeItem(at: url) } catch {
            throw CheckpointError(.io, url, "cannot remove (\(FileErrorText.describe(error)))")
        }
    }

    /// Removes `<dir>.tmp-<pid>` directories left by processes that no longer run (a save
    /// that crashed). Directories of live processes are left alone: they may be saving now.
    static func removeStaleTemporaries(of dir: URL) {
        let parent = dir.deletingLastPathComponent()
        let prefix = "\(dir.lastPathComponent).tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent.path) else { return }
        for n in names where n.hasPrefix(prefix) {
            guard let pid = Int32(n.dropFirst(prefix.count)), pid > 0 else { continue }
            let alive = pid == getpid() ? false : (kill(pid, 0) == 0 || errno == EPERM)
            if !alive { try? FileManager.default.removeItem(at: parent.appendingPathComponent(n)) }
        }
    }

    static func posixError(_ url: URL, _ what: String) -> CheckpointError {
        CheckpointError(.io, url, "\(what): \(String(cString: strerror(errno)))")
    }

    static func describe(_ error: Error) -> String {
        var text: String
        switch error {
        case DecodingError.dataCorrupted(let c): text = c.debugDescription
        case DecodingError.keyNotFound(let k, _): text = "missing '\(k.stringValue)'"
        case DecodingError.typeMismatch(_, let c):
            text = "wrong type at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.valueNotFound(_, let c):
            text = "null at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        default: text = String(describing: error)
        }
        text = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return text.count > 200 ? String(text.prefix(200)) + "..." : text
    }
}


/// POSIX `rename`, under a name that does not clash with `Checkpoint.rename(_:to:)`.
private func posixRename(_ from: UnsafePointer<CChar>, _ to: UnsafePointer<CChar>) -> Int32 { rename(from, to) }

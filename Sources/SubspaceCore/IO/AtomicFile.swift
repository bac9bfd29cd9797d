import Foundation

/// Atomic file replacement for whole small files (token files, metrics rewrites, run
/// configs, tokenizer.json, plots), through `DurableFile.replace`: a crash leaves either the
/// old or the new file, never a torn one.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw DataError("cannot create the directory \(FileErrorText.describe(error))")
        }
        do { try DurableFile.replace(url, with: data) } catch let e as IOFailure { throw DataError(e.description) }
    }

    public static func write(_ string: String, to url: URL) throws { try write(Data(string.utf8), to: url) }
}

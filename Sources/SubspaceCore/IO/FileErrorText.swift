import Foundation

/// One line for any error a user may see. Our own errors (`ConfigurationError`, `DataError`,
/// `CheckpointError`, ...) describe themselves; Foundation's file errors, whose default text
/// is `The operation could not be completed. (NSCocoaErrorDomain error 4.)`, become the path
/// and the operating system's cause (`'runs/x/metrics.jsonl': No space left on device`).
public enum FileErrorText {
    public static func describe(_ error: Error) -> String {
        if let c = error as? CocoaError { return cocoa(c.code.rawValue, path: c.filePath ?? c.url?.path, underlying: c.underlying) }
        let ns = error as NSError
        if ns.domain == NSCocoaErrorDomain {
            return cocoa(ns.code, path: ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path,
                         underlying: ns.userInfo[NSUnderlyingErrorKey] as? Error)
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        let text = String(describing: error)
        return oneLine(text)
    }

    /// A Cocoa file error as `'path': cause`.
    static func cocoa(_ code: Int, path: String?, underlying: Error?) -> String {
        var cause: String
        if let u = underlying.map({ $0 as NSError }), u.domain == NSPOSIXErrorDomain {
            cause = String(cString: strerror(Int32(u.code)))
        } else {
            switch CocoaError.Code(rawValue: code) {
            case .fileNoSuchFile, .fileReadNoSuchFile: cause = "no such file or directory"
            case .fileReadNoPermission, .fileWriteNoPermission: cause = "permission denied"
            case .fileWriteOutOfSpace: cause = "no space left on device"
            case .fileWriteVolumeReadOnly: cause = "read-only file system"
            case .fileWriteFileExists: cause = "file exists"
            case .fileReadCorruptFile: cause = "corrupt file"
            case .fileReadInapplicableStringEncoding: cause = "not valid UTF-8 text"
            case .fileReadTooLarge: cause = "file too large"
            default: cause = "file operation failed (code \(code))"
            }
        }
        return path.map { "'\($0)': \(cause)" } ?? cause
    }

    static func oneLine(_ text: String) -> String {
        var t = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        if t.count > 400 { t = String(t.prefix(400)) + "..." }
        return t
    }
}

extension CocoaError {
    var underlying: Error? { userInfo[NSUnderlyingErrorKey] as? Error }
}

/// A JSON decoding error as one short line: what is wrong and where (`missing 'steps'`,
/// `wrong type at 'model.dim'`), not Foundation's multi-line dump.
public enum JSONErrorText {
    public static func describe(_ error: Error) -> String {
        func at(_ path: [CodingKey]) -> String {
            path.isEmpty ? "the top level" : "'" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'"
        }
        let text: String
        switch error {
        case DecodingError.dataCorrupted(let c):
            text = c.codingPath.isEmpty ? "not valid JSON" : "invalid value at \(at(c.codingPath))"
        case DecodingError.keyNotFound(let k, let c): text = "missing '\(k.stringValue)'" + (c.codingPath.isEmpty ? "" : " in \(at(c.codingPath))")
        case DecodingError.typeMismatch(_, let c): text = "wrong type at \(at(c.codingPath))"
        case DecodingError.valueNotFound(_, let c): text = "null at \(at(c.codingPath))"
        default: text = FileErrorText.describe(error)
        }
        return FileErrorText.oneLine(text)
    }
}

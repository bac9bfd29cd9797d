import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a path names, following a symbolic link to see what it points at; nil when nothing
/// is there. Readers check it before reading, so a directory, a device (`/dev/zero`, read
/// forever) or a FIFO given where a file belongs is refused with its name rather than read.
public enum FileKind: Sendable, Equatable {
    case regular, directory, other

    public static func of(_ url: URL) -> FileKind? {
        var st = stat()
        let r = url.withUnsafeFileSystemRepresentation { lstat($0!, &st) }
        guard r == 0 else { return nil }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFDIR: return .directory
        case S_IFLNK:
            let r2 = url.withUnsafeFileSystemRepresentation { stat($0!, &st) }
            guard r2 == 0 else { return .other }
            return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : (st.st_mode & S_IFMT) == S_IFREG ? .regular : .other
        default: return .other
        }
    }
}

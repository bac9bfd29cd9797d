import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// Resident-set figures of this process, read from `/proc/self/status` on Linux
/// (`getrusage` elsewhere, peak only).
public enum ProcessMemory {
    /// Peak resident set size in bytes (VmHWM).
    public static var peakRSS: Int { read("VmHWM:") ?? rusagePeak() }
    /// Current resident set size in bytes (VmRSS).
    public static var currentRSS: Int { read("VmRSS:") ?? rusagePeak() }
    /// Resident pages of mapped files (RssFile: the binary's and shared libraries' code and
    /// read-only data), nil where `/proc` does not say.
    public static var residentFileBytes: Int? { read("RssFile:") }

    private static func read(_ key: String) -> Int? { kibibytes(key, in: "/proc/self/status") }

    /// The value of a `Key:   1234 kB` line of a `/proc` file, in bytes.
    static func kibibytes(_ key: String, in file: String) -> Int? {
        guard let s = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix(key) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    private static func rusagePeak() -> Int {
        var u = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &u)
        return u.ru_maxrss * 1024
        #else
        getrusage(RUSAGE_SELF, &u)
        return u.ru_maxrss
        #endif
    }
}

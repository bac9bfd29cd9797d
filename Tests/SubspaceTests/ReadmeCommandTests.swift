import Foundation
import Testing

/// The README works as typed: every flag its usage synopsis names is one the command really
/// takes, and every concrete command in its code blocks that finishes in seconds (info,
/// memory, settings, --version) runs and exits 0 with the binary built next to the tests.
@Suite struct ReadmeCommandTests {
    static let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("README.md")

    /// The lines of every ```sh block, with `\` continuations joined.
    static func shellLines() throws -> [String] {
        let text = try String(contentsOf: readme, encoding: .utf8)
        var out: [String] = [], inBlock = false, pending = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.hasPrefix("```") { inBlock = line == "```sh" && !inBlock ? true : false; continue }
            guard inBlock else { continue }
            if line.hasSuffix("\\") { pending += line.dropLast() + " "; continue }
            out.append(pending + line)
            pending = ""
        }
        return out
    }

    /// `subspace CMD [SUB]` synopsis entries of the Usage block and the flags each names.
    static func synopsis() throws -> [(command: [String], flags: Set<String>)] {
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let start = text.range(of: "## Usage\n"), let open = text.range(of: "```sh\n", range: start.upperBound..<text.endIndex),
              let close = text.range(of: "```", range: open.upperBound..<text.endIndex) else { return [] }
        var entries: [(command: [String], flags: Set<String>)] = []
        for line in text[open.upperBound..<close.lowerBound].split(separator: "\n") {
            let body = line.split(separator: "#", maxSplits: 1).first.map(String.init) ?? String(line)
            let words = body.split(whereSeparator: { " []|=".contains($0) }).map(String.init)
            if words.first == "subspace" {
                var cmd = [words[1]]
                if words[1] == "tokenizer", words.count > 2 { cmd.append(words[2]) }
                entries.append((cmd, []))
            }
            for w in words where w.hasPrefix("--") { entries[entries.count - 1].flags.insert(w.trimmingCharacters(in: CharacterSet(charactersIn: ".,)"))) }
        }
        return entries
    }

    @Test func synopsisFlagsAreReal() throws {
        guard CLITests.binary != nil else { return }
        let entries = try Self.synopsis()
        #expect(entries.count >= 10, "found \(entries.count) synopsis entries")
        for e in entries {
            let r = try CLITests().run(e.command + ["--help"])
            #expect(r.status == 0, "\(e.command) --help: \(r.stderr)")
            for f in e.flags.sorted() where f != "--help" {
                #expect(r.stdout.contains(f), "README names \(f) for subspace \(e.command.joined(separator: " ")), which its --help does not list")
            }
        }
    }

    @Test func quickCommandsRun() throws {
        guard CLITests.binary != nil else { return }
        let fast: Set<String> = ["info", "memory", "settings", "--version"]
        var ran = 0
        for line in try Self.shellLines() {
            let cmd = line.split(separator: "#", maxSplits: 1).first.map(String.init) ?? line
            let words = cmd.split(separator: " ").map(String.init)
            guard words.first == "subspace", words.count > 1, fast.contains(words[1]),
                  !cmd.contains("["), !cmd.contains("|"), !cmd.contains("...") else { continue }
            let r = try CLITests().run(Array(words.dropFirst()))
            #expect(r.status == 0, "README command `\(cmd)` exited \(r.status): \(r.stderr)")
            ran += 1
        }
        #expect(ran >= 3, "ran \(ran) README commands")
    }
}

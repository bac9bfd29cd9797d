import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

@main
struct SubspaceCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subspace",
        abstract: "Memory-efficient training of LLaMA-style language models.",
        version: "subspace 0.6.0",
        subcommands: [Train.self, Eval.self, Sample.self, TokenizerCommand.self, Plot.self, Bench.self, SuiteRun.self, Info.self, MemoryCommand.self, SettingsCommand.self, MergeCommand.self, EditCommand.self, EggrollThroughputCommand.self, NanoEggCommand.self, TTBenchCommand.self])

    /// Parses and runs the command. Help and version requests print as usual; every other
    /// parsing or validation error becomes the same one-line `error:` as the commands' own
    /// errors (exit status 64, `EX_USAGE`, as argument-parser uses), followed by no usage
    /// block: the user reads one line, and `--help` has the rest.
    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            finish(error)
        }
        do { try command.run() } catch { finish(error) }
        Foundation.exit(0)
    }

    /// Ends the process for an error from parsing or running: help and clean exits print
    /// their text, anything else is one `error:` line with argument-parser's exit code.
    static func finish(_ error: Error) -> Never {
        let code = exitCode(for: error)
        if code == .success {
            let text = fullMessage(for: error)
            if !text.isEmpty { print(text) }
            Foundation.exit(0)
        }
        fail(oneLine(message(for: error)), status: code.rawValue)
    }

    /// The first non-empty line of a message, without argument-parser's own `Error: ` prefix.
    static func oneLine(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? "invalid arguments"
        for prefix in ["Error: ", "error: "] where line.hasPrefix(prefix) { return String(line.dropFirst(prefix.count)) }
        return line
    }
}

/// Writes to standard error with `write(2)`: never traps, whatever stderr is (closed, a
/// full pipe, a file on a full disk).
func writeStderr(_ s: String) { writeAll(STDERR_FILENO, Array(s.utf8)) }

/// Writes every byte to `fd`, retrying interrupted and short writes; gives up quietly on a
/// closed or broken stream (there is nowhere left to report it).
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        off += n
    }
}

/// Prints a one-line error and exits non-zero: user mistakes never produce a crash trace.
func fail(_ message: String, status: Int32 = 1) -> Never {
    let text = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    // One rank of several: rank 0's line first, then the whole job ends (Distributed.fail).
    Distributed.fail(printing: "error: \(text)\n", status: status, write: writeStderr)
}

/// Prints a one-line warning to standard error.
func warn(_ message: String) {
    FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
}

/// Runs `body`, turning any thrown error into `fail`.
func guarded<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { fail(describe(error)) }
}

/// One line for any error: our own errors' descriptions; Foundation's file errors reduced to
/// the path and the cause, never `NSCocoaErrorDomain` codes.
func describe(_ error: Error) -> String { FileErrorText.describe(error) }

func jsonLine<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    guard let d = try? enc.encode(value), let s = String(data: d, encoding: .utf8) else { return "{}" }
    return s
}

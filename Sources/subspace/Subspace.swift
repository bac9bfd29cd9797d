import ArgumentParser
import Foundation
import Subspace

@main
struct SubspaceCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subspace",
        abstract: "Memory-efficient training of LLaMA-style language models.",
        subcommands: [Train.self, Eval.self, Sample.self, TokenizerCommand.self, Plot.self, Bench.self, SuiteRun.self, Info.self, MemoryCommand.self])
}

/// Prints a one-line error and exits non-zero: user mistakes never produce a crash trace.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(1)
}

/// Prints a one-line warning to standard error.
func warn(_ message: String) {
    FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
}

/// Runs `body`, turning any thrown error into `fail`.
func guarded<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch let e as CustomStringConvertible { fail(e.description) } catch { fail("\(error)") }
}

func jsonLine<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    guard let d = try? enc.encode(value), let s = String(data: d, encoding: .utf8) else { return "{}" }
    return s
}

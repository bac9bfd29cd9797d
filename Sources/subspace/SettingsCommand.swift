import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

/// `subspace settings`: the optimizer settings a run with these flags would use, every
/// default filled in, per parameter group (what `run_config.json` records as
/// `resolvedOptimizer`).
struct SettingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settings",
        abstract: "Print an optimizer's resolved settings (defaults filled in) per parameter group.")

    @Flag(help: "Print one JSON object: the optimizer, the options as given and the resolved settings.") var json = false
    @Flag(help: "Print every method's defaults as `train` runs them, one Markdown table (the README's).") var table = false
    @OptionGroup var opt: OptimizerFlags

    struct Output: Encodable {
        var optimizer: String
        var options: OptimizerOptions
        var resolved: ResolvedOptimizer
    }

    func run() throws {
        if table {
            if json { fail("--table and --json are two formats; give one") }
            print(guarded { try SettingsTable.markdown() })
            return
        }
        let name = opt.optimizer ?? OptimizerRegistry.defaultName
        let (options, resolved) = guarded { () throws -> (OptimizerOptions, ResolvedOptimizer) in
            let o = try opt.options()
            return (o, try OptimizerRegistry.resolvedSettings(name, options: o))
        }
        let ignored = OptimizerRegistry.ignoredOptions(name, options: options)
        if !ignored.isEmpty { writeStderr("warning: \(name) does not use \(ignored.joined(separator: ", ")); ignored\n") }
        if json {
            print(jsonLine(Output(optimizer: name, options: options, resolved: resolved)))
        } else {
            print(name)
            for line in resolved.lines { print("  \(line)") }
        }
    }
}

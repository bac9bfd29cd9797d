import Foundation
import SubspaceCore
import SubspaceOptim

/// Every method's defaults in one Markdown table, read from the settings types
/// (`OptimizerRegistry.resolvedSettings`) with `train`'s own default filled in (AdamW's
/// learning rate, `RunConfig.defaultAdamWLearningRate`): what `subspace train --optimizer NAME`
/// runs with when no hyperparameter flag is given. `subspace settings --table` prints it, the
/// README holds it between `begin` and `end`, and a test checks that the two agree.
public enum SettingsTable {
    public static let begin = "<!-- settings-table:begin -->"
    public static let end = "<!-- settings-table:end -->"

    /// One row per method and parameter group: the rule, learning rate, weight decay and the
    /// rest of its settings.
    public static func markdown() throws -> String {
        var lines = [
            "| method | parameters | rule | lr | weight decay | other settings |",
            "|---|---|---|---:|---:|---|",
        ]
        for name in OptimizerRegistry.names {
            let resolved = try OptimizerRegistry.resolvedSettings(name, options: RunConfig.trainDefaultOptions(optimizer: name))
            for g in resolved.groups {
                var rest = g.settings
                let lr = rest.removeValue(forKey: "learningRate").map(\.description)
                    ?? (rest["relativeStep"] == .bool(true) ? "relative step" : "-")
                let wd = rest.removeValue(forKey: "weightDecay").map(\.description) ?? "-"
                let other = rest.keys.sorted().map { "\($0)=\(rest[$0]!)" }.joined(separator: " ")
                lines.append("| `\(name)` | \(g.parameters) | \(g.rule) | \(lr) | \(wd) | \(other) |")
            }
        }
        return lines.joined(separator: "\n")
    }
}

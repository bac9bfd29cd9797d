import Foundation
import SubspaceCore

/// A step rule's own state in `step_rule.safetensors` (LOZO's V and momentum, SubZero's
/// bases; see `StatefulStepRule`), written inside the same atomic checkpoint directory as
/// the weights, with metadata `format` = `subspace-step-rule` and `format_version` = `1`.
extension Checkpoint {
    public static let stepRuleFile = "step_rule.safetensors"
    static let stepRuleFormat = "subspace-step-rule"

    static func writeStepRuleState(_ state: [String: Tensor], to url: URL) throws {
        let tensors = state.keys.sorted().map { ($0, state[$0]!) }
        do {
            try SafeTensorsFile.write(tensors, metadata: ["format": stepRuleFormat, "format_version": "1"], to: url)
        } catch {
            throw CheckpointError(.io, url, "cannot write the step rule's state (\(error))")
        }
    }

    /// The step rule's state saved in the checkpoint `dir`.
    public static func loadStepRuleState(from dir: URL) throws -> [String: Tensor] {
        let url = resolve(dir).appendingPathComponent(stepRuleFile)
        let file = try loadSafeTensors(url, kind: "step rule state")
        guard file.metadata["format"] == stepRuleFormat, file.metadata["format_version"] == "1" else {
            throw CheckpointError(.corruptFile, url, "metadata 'format' is not '\(stepRuleFormat)' version 1")
        }
        return file.tensors
    }
}

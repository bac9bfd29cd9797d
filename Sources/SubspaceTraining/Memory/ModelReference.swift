import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

extension LlamaConfig {
    /// The model named by `reference`: a preset (`tiny`, `llama60m`, ...), a transformers
    /// `config.json`, or a directory holding one (a `save_pretrained` checkpoint).
    /// - Throws: `ConfigurationError` when it is neither a preset nor a readable file, and
    ///   the `HuggingFaceConfigError` of a config that cannot be read as a LLaMA model.
    public static func resolve(model reference: String) throws -> LlamaConfig {
        if let c = presets[reference] { return c }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: reference, isDirectory: &isDirectory) else {
            throw ConfigurationError(
                "unknown model '\(reference)': not a preset (\(presetNames.joined(separator: ", "))) nor an existing config.json")
        }
        let file = isDirectory.boolValue ? (reference as NSString).appendingPathComponent("config.json") : reference
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigurationError("cannot read model config '\(file)'")
        }
        return try HuggingFaceLlamaConfig(json: data).config
    }
}

import Foundation
import SubspaceCore
import SubspaceModels

extension Checkpoint {
    /// The files besides weights and config that travel with a model folder.
    static let companionFiles = ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]

    /// `subspace merge`: writes the model in `dir` (with the adapter it holds, or the PEFT
    /// adapter in `adapter`) as a plain Hugging Face LLaMA folder in `out`: every slot's
    /// effective dense weight (W0 + s B A for LoRA; the factors' product for a low-rank
    /// parametrization) under `<slot>.weight`, with `config.json` and the tokenizer and
    /// generation files of `dir`. Returns the number of slots that held adapters.
    ///
    /// Refuses a model without adapters (there is nothing to merge) and an `out` that
    /// exists, unless `overwrite` and it is a checkpoint (a folder of other files is never
    /// replaced). The write is the checkpoint's atomic save.
    @discardableResult
    public static func merge(from dir: URL, adapter: URL? = nil, to out: URL, overwrite: Bool = false) throws -> Int {
        let dir = resolve(dir)
        let model = try loadModel(from: dir, adapter: adapter)
        let adapted = model.slots.filter { !($0.op is DenseLinear) }.count
        guard adapted > 0 else {
            throw ConfigurationError("'\(dir.path)' holds no adapter to merge (no \(adapterSettingsFile) or \(adapterConfigFile); pass --adapter DIR for a PEFT adapter)")
        }
        if fileKind(out) != nil && !overwrite {
            throw ConfigurationError("'\(out.path)' exists; pass --overwrite to replace it")
        }
        let merged = try LlamaModel(config: model.config)
        try merged.loadDense(from: model)
        var files: [(name: String, data: Data)] = []
        for name in companionFiles where fileKind(dir.appendingPathComponent(name)) == .regular {
            files.append((name, try readFile(dir.appendingPathComponent(name))))
        }
        let special = try loadConfig(from: dir).specialTokens
        try save(to: out, model: merged, specialTokens: special, files: files)
        return adapted
    }
}

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


/// Resumable checkpoints that transformers can read, and transformers checkpoints that we can
/// read.
///
/// A checkpoint is a directory:
///
/// - `model.safetensors`: every weight as F32 under its Hugging Face name, in
///   `named_parameters()` order, with metadata `{"format": "pt"}` as `save_pretrained`
///   writes; with tied embeddings only `model.embed_tokens.weight` is stored, as transformers
///   does. `LlamaForCausalLM.from_pretrained(dir)` loads the directory as it is.
/// - `config.json`: transformers' LLaMA config (see `HuggingFaceLlamaConfig`).
/// - `optimizer.safetensors` (when an optimizer is saved): the state of each parameter as
///   tensors named `<parameter name>/<state key>` (`model.norm.weight/exp_avg`, ...), plus
///   metadata `format` = `subspace-optimizer`, `format_version` = `1` and `owners`, a JSON
///   object mapping every parameter name to the `name` of the rule that owns it, so a restore
///   under different routing is refused rather than silently mixing states.
/// - `trainer_state.json` (when a state is saved): a `TrainerState`.
/// - `step_rule.safetensors` (zeroth-order rules with state): see `Checkpoint+StepRule.swift`.
///
/// Saving is crash-safe: everything is written into the sibling `<dir>.tmp-<pid>`, each file
/// and the directory are synced, then the old checkpoint is renamed to `<dir>.old`, the new
/// one to `<dir>`, and `<dir>.old` is deleted. At every instant either `<dir>` or, in the
/// instant between the two renames, `<dir>.old` holds a complete checkpoint, and loading
/// falls back to `<dir>.old` when `<dir>` is absent. Leftover temporary directories of dead
/// processes are removed by the next save.
///
/// Loading never traps: missing, truncated or corrupt files, unsupported configurations, and
/// checkpoints that do not fit the model or optimizer all throw a `CheckpointError`, and a
/// failed `restore` leaves the model and optimizer as they were. Besides our own files,
/// `loadModel` reads what transformers writes: F32, F16 or BF16 weights, in one file or
/// sharded with `model.safetensors.index.json`; `rotary_emb.inv_freq` buffers are ignored.
public enum Checkpoint {
    public static let modelFile = "model.safetensors"
    public static let shardIndexFile = "model.safetensors.index.json"
    public static let configFile = "config.json"
    public static let optimizerFile = "optimizer.safetensors"
    public static let trainerStateFile = "trainer_state.json"
    static let optimizerFormat = "subspace-optimizer"
    static let optimizerFormatVersion = "1"

    // MARK: Saving

    /// Writes a checkpoint of `model` (and, if given, the optimizer's state and the trainer
    /// state) to the directory `dir`, replacing any checkpoint there atomically. Refuses to
    /// replace a directory that holds files but no `config.json` or weights, so a mistyped path
    /// cannot delete unrelated data.
    ///
    /// `files` are written into the checkpoint before it is published (the run's
    /// `tokenizer.json`), so that the directory holds everything eval, sample and resume need
    /// from the instant it exists.
    ///
    /// A model with adapters needs their `adapter` settings: its weights are then laid out
    /// as a base model plus a PEFT adapter (`Checkpoint+Adapters.swift`).
    public static func save(
        to dir: URL, model: LlamaModel, adapter: AdapterSettings? = nil, optimizer: RoutedOptimizer? = nil,
        state: TrainerState? = nil, specialTokens: SpecialTokenIds = SpecialTokenIds(), files: [(name: String, data: Data)] = [],
        stepRuleState: [String: Tensor]? = nil
    ) throws {
        if adapter == nil, hasAdapters(model) {
            throw CheckpointError(.io, dir, "the model holds adapters: saving it needs their settings")
        }
        let dir = dir.standardizedFileURL
        let name = dir.lastPathComponent
        guard !name.isEmpty, name != "/", name != ".", name != ".." else {
            throw CheckpointError(.io, dir, "is not a usable checkpoint directory name")
        }
        let parent = dir.deletingLastPathComponent()
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, parent, "cannot create the directory (\(FileErrorText.describe(error)))")
        }
        if let kind = fileKind(dir) {
            guard kind == .directory else { throw CheckpointError(.notACheckpoint, dir, "exists and is not a directory") }
            guard looksLikeCheckpoint(dir) else {
                throw CheckpointError(.notACheckpoint, dir, "holds files but no \(configFile) or weights; refusing to replace it")
            }
        }
        removeStaleTemporaries(of: dir)

        let tmp = parent.appendingPathComponent("\(name).tmp-\(getpid())")
        try? fm.removeItem(at: tmp)
        do {
            try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        } catch {
            throw CheckpointError(.io, tmp, "cannot create the directory (\(FileErrorText.describe(error)))")
        }
        var published = false
        defer { if !published { try? fm.removeItem(at: tmp) } }

        // 1. Everything into the temporary directory, each file synced.
        try writeWeights(model, adapter: adapter, to: tmp)
        let configURL = tmp.appendingPathComponent(configFile)
        let configData: Data
        do { configData = try model.config.huggingFaceJSON(specialTokens: specialTokens) } catch {
            throw CheckpointError(.invalidConfig, configURL, "cannot encode the configuration (\(error))")
        }
        try writeFile(configData, to: configURL)
        if let optimizer { try writeOptimizer(optimizer, model: model, to: tmp.appendingPathComponent(optimizerFile)) }
        if let stepRuleState { try writeStepRuleState(stepRuleState, to: tmp.appendingPathComponent(stepRuleFile)) }
        if let state {
            let url = tmp.appendingPathComponent(trainerStateFile)
            if let p = state.problem() { throw CheckpointError(.corruptFile, url, "cannot save trainer state: \(p)") }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            let data: Data
            do { data = try encoder.encode(state) } catch {
                throw CheckpointError(.corruptFile, url, "cannot encode trainer state (\(error))")
            }
            try writeFile(data, to: url)
        }
        for f in files {
            guard !f.name.isEmpty, !f.name.contains("/"), f.name != ".", f.name != ".." else {
                throw CheckpointError(.io, tmp, "'\(f.name)' is not a plain file name")
            }
            try writeFile(f.data, to: tmp.appendingPathComponent(f.name))
        }
        try syncDirectory(tmp)

        // 2. Swap it into place.
        let old = parent.appendingPathComponent("\(name).old")
        if fileKind(dir) != nil {
            // With `dir` present, any `<dir>.old` is garbage from an earlier interrupted swap.
            try removeItem(old)
            try rename(dir, to: old)
        }
        // Without `dir`, a `<dir>.old` is the last good checkpoint: keep it until the new one
        // is in place.
        try rename(tmp, to: dir)
        published = true
        try syncDirectory(parent)
        try removeItem(old)
    }

    static func writeWeights(_ model: LlamaModel, to url: URL) throws {
        do {
            try SafeTensorsFile.write(model.parameters.map { ($0.name, $0.value) }, metadata: ["format": "pt"], to: url)
        } catch {
            throw CheckpointError(.io, url, "cannot write weights (\(error))")
        }
    }
}

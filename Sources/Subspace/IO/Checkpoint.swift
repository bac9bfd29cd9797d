import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a checkpoint could not be saved, loaded or restored. `description` is one line that
/// names the file; `kind` lets callers and tests tell the cases apart.
public struct CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable, Equatable {
        /// The checkpoint directory or one of its files does not exist.
        case missingFile
        /// A file exists but cannot be parsed: truncated, not JSON, not safetensors, ...
        case corruptFile
        /// `config.json` is readable but lacks a key or holds an impossible value.
        case invalidConfig
        /// `config.json` describes a LLaMA variant this engine does not implement.
        case unsupportedConfig
        /// The checkpoint's configuration differs from the model it is restored into.
        case configMismatch
        /// A weight the configuration requires is absent.
        case missingTensor
        /// A weight has a different shape from the one the configuration implies.
        case shapeMismatch
        /// The weights file holds a tensor the model does not have.
        case unexpectedTensor
        /// The optimizer state belongs to other rules or parameters, or does not fit them.
        case optimizerMismatch
        /// Saving would replace a directory that is not a checkpoint.
        case notACheckpoint
        /// The operating system refused a read, write, sync, rename or removal.
        case io
    }

    public let kind: Kind
    /// The path of the file (or directory) concerned.
    public let path: String
    public let message: String

    public init(_ kind: Kind, _ path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    init(_ kind: Kind, _ url: URL, _ message: String) { self.init(kind, url.path, message) }

    public var description: String { "checkpoint \(path): \(message)" }
}

/// Where a run stands, saved beside the weights so that training resumes exactly: the step
/// counter, the data cursor, every random stream the run draws from, the run's resolved
/// configuration and the best validation loss so far. `extras` carries anything else a
/// caller needs (strings, so the file stays readable).
///
/// Stored as `trainer_state.json` with snake_case keys. Non-finite losses are written as the
/// strings "inf", "-inf" and "nan", which plain JSON cannot hold as numbers.
public struct TrainerState: Codable, Equatable, Sendable {
    /// Version of this file's layout; readers refuse newer ones.
    public static let formatVersion = 1

    /// Optimizer steps completed.
    public var step: Int
    /// Training tokens consumed so far.
    public var tokensSeen: Int
    /// Where the data loader continues (its own unit: a token offset, a batch index, ...).
    public var dataPosition: Int
    /// Random streams by role (`"data"`, `"dropout"`, ...), each continuing bit for bit.
    public var rng: [String: RandomStream]
    /// The run's resolved configuration as a JSON document, kept opaque so the checkpoint
    /// format does not depend on the CLI's config type.
    public var runConfig: String?
    /// Lowest validation loss seen, if any evaluation ran.
    public var bestValLoss: Double?
    public var extras: [String: String]

    public init(
        step: Int, tokensSeen: Int = 0, dataPosition: Int = 0, rng: [String: RandomStream] = [:],
        runConfig: String? = nil, bestValLoss: Double? = nil, extras: [String: String] = [:]
    ) {
        self.step = step; self.tokensSeen = tokensSeen; self.dataPosition = dataPosition; self.rng = rng
        self.runConfig = runConfig; self.bestValLoss = bestValLoss; self.extras = extras
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, tokensSeen = "tokens_seen", dataPosition = "data_position"
        case rng, runConfig = "run_config", bestValLoss = "best_val_loss", extras
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decodeIfPresent(Int.self, forKey: .formatVersion) ?? 1
        guard version <= TrainerState.formatVersion else {
            throw DecodingError.dataCorruptedError(
                forKey: .formatVersion, in: c,
                debugDescription: "format_version \(version) is newer than this reader (\(TrainerState.formatVersion))")
        }
        step = try c.decode(Int.self, forKey: .step)
        tokensSeen = try c.decodeIfPresent(Int.self, forKey: .tokensSeen) ?? 0
        dataPosition = try c.decodeIfPresent(Int.self, forKey: .dataPosition) ?? 0
        rng = try c.decodeIfPresent([String: RandomStream].self, forKey: .rng) ?? [:]
        runConfig = try c.decodeIfPresent(String.self, forKey: .runConfig)
        bestValLoss = try c.decodeIfPresent(Double.self, forKey: .bestValLoss)
        extras = try c.decodeIfPresent([String: String].self, forKey: .extras) ?? [:]
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(TrainerState.formatVersion, forKey: .formatVersion)
        try c.encode(step, forKey: .step)
        try c.encode(tokensSeen, forKey: .tokensSeen)
        try c.encode(dataPosition, forKey: .dataPosition)
        try c.encode(rng, forKey: .rng)
        try c.encodeIfPresent(runConfig, forKey: .runConfig)
        try c.encodeIfPresent(bestValLoss, forKey: .bestValLoss)
        try c.encode(extras, forKey: .extras)
    }

    /// Why a decoded state cannot be used, or nil. A random stream needs exactly four state
    /// words (anything else would trap on its first draw); counters cannot be negative.
    func problem() -> String? {
        if step < 0 || tokensSeen < 0 || dataPosition < 0 { return "negative step, token or data counter" }
        for (name, s) in rng.sorted(by: { $0.key < $1.key }) where s.state.count != 4 {
            return "random stream '\(name)' has \(s.state.count) state words, expected 4"
        }
        return nil
    }
}

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
    public static func save(
        to dir: URL, model: LlamaModel, optimizer: RoutedOptimizer? = nil, state: TrainerState? = nil,
        specialTokens: SpecialTokenIds = SpecialTokenIds(), files: [(name: String, data: Data)] = []
    ) throws {
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
        try writeWeights(model, to: tmp.appendingPathComponent(modelFile))
        let configURL = tmp.appendingPathComponent(configFile)
        let configData: Data
        do { configData = try model.config.huggingFaceJSON(specialTokens: specialTokens) } catch {
            throw CheckpointError(.invalidConfig, configURL, "cannot encode the configuration (\(error))")
        }
        try writeFile(configData, to: configURL)
        if let optimizer { try writeOptimizer(optimizer, model: model, to: tmp.appendingPathComponent(optimizerFile)) }
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

    private static func writeWeights(_ model: LlamaModel, to url: URL) throws {
        do {
            try SafeTensorsFile.write(model.parameters.map { ($0.name, $0.value) }, metadata: ["format": "pt"], to: url)
        } catch {
            throw CheckpointError(.io, url, "cannot write weights (\(error))")
        }
    }

    private static func writeOptimizer(_ optimizer: RoutedOptimizer, model: LlamaModel, to url: URL) throws {
        var tensors: [(String, Tensor)] = []
        var owners: [String: String] = [:]
        for p in model.parameters {
            let rule = optimizer.optimizer(for: p)
            owners[p.name] = rule.name
            let state = rule.exportState(for: p)
            for key in state.keys.sorted() {
                guard !key.contains("/") else {
                    throw CheckpointError(.io, url, "optimizer state key '\(key)' of \(p.name) contains '/'")
                }
                tensors.append(("\(p.name)/\(key)", state[key]!))
            }
        }
        let ownersJSON: String
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            ownersJSON = String(decoding: try encoder.encode(owners), as: UTF8.self)
        } catch {
            throw CheckpointError(.io, url, "cannot encode optimizer owners (\(error))")
        }
        let metadata = ["format": optimizerFormat, "format_version": optimizerFormatVersion, "owners": ownersJSON]
        do {
            try SafeTensorsFile.write(tensors, metadata: metadata, to: url)
        } catch {
            throw CheckpointError(.io, url, "cannot write optimizer state (\(error))")
        }
    }

    // MARK: Loading

    /// The configuration in `dir/config.json`, with its special token ids.
    public static func loadConfig(from dir: URL) throws -> HuggingFaceLlamaConfig {
        let url = resolve(dir).appendingPathComponent(configFile)
        let data = try readFile(url)
        do {
            return try HuggingFaceLlamaConfig(json: data)
        } catch let e as HuggingFaceConfigError {
            switch e {
            case .invalidJSON: throw CheckpointError(.corruptFile, url, e.description)
            case .missingKey, .wrongType, .invalidValue: throw CheckpointError(.invalidConfig, url, e.description)
            case .unsupportedModelType, .unsupportedActivation, .unsupportedBias, .unsupportedRopeScaling, .unsupportedHeadDim:
                throw CheckpointError(.unsupportedConfig, url, e.description)
            }
        }
    }

    /// A model built from `dir/config.json` holding the checkpoint's weights. Reads our
    /// checkpoints and transformers' `save_pretrained` output alike.
    public static func loadModel(from dir: URL) throws -> LlamaModel {
        let dir = resolve(dir)
        let config = try loadConfig(from: dir).config
        try ResourceCheck.modelFits(config, copies: 2, for: "loading \(dir.path)")
        do { try config.validate() } catch {
            throw CheckpointError(.invalidConfig, dir.appendingPathComponent(configFile), "\(error)")
        }
        // The file's tensors and the model's copy coexist while loading.
        try ResourceCheck.require(
            2 * config.parameterCount * 4 + ProcessMemory.currentRSS, for: "loading \(dir.path)",
            detail: "\(config.parameterCount) parameters, read and copied")
        // Every shape is checked against the configuration before the model is allocated.
        let weights = try readWeights(from: dir, specs: config.parameterSpecs, tied: config.tiedEmbeddings)
        let model: LlamaModel
        do { model = try LlamaModel(config: config) } catch {
            throw CheckpointError(.invalidConfig, dir.appendingPathComponent(configFile), "\(error)")
        }
        for p in model.parameters { p.value.assign(weights[p.name]!) }
        return model
    }

    /// The trainer state in `dir/trainer_state.json`, or nil if the checkpoint has none.
    public static func loadTrainerState(from dir: URL) throws -> TrainerState? {
        let url = resolve(dir).appendingPathComponent(trainerStateFile)
        guard fileKind(resolve(dir)) == .directory else {
            throw CheckpointError(.missingFile, resolve(dir), "checkpoint directory does not exist")
        }
        guard fileKind(url) != nil else { return nil }
        let data = try readFile(url)
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let state: TrainerState
        do { state = try decoder.decode(TrainerState.self, from: data) } catch {
            throw CheckpointError(.corruptFile, url, "is not a valid trainer state (\(describe(error)))")
        }
        if let p = state.problem() { throw CheckpointError(.corruptFile, url, p) }
        return state
    }

    /// Loads the checkpoint's weights into `model` and, if given, its state into `optimizer`,
    /// and returns the saved trainer state (nil if none was saved).
    ///
    /// The checkpoint's configuration must equal the model's (initialisation std aside);
    /// every parameter's rule must have the same `name` as the rule that saved it. Everything
    /// is read and checked before anything is changed, and a failed optimizer import is
    /// rolled back, so on error the model and optimizer are untouched.
    @discardableResult
    public static func restore(from dir: URL, into model: LlamaModel, optimizer: RoutedOptimizer?) throws -> TrainerState? {
        let dir = resolve(dir)
        let configURL = dir.appendingPathComponent(configFile)
        let saved = try loadConfig(from: dir).config
        if let diff = configDifference(saved: saved, model: model.config) {
            throw CheckpointError(.configMismatch, configURL, "checkpoint does not fit the model: \(diff)")
        }
        let weights = try readWeights(from: dir, specs: model.parameters, tied: model.config.tiedEmbeddings)
        let state = try loadTrainerState(from: dir)
        if let optimizer { try restoreOptimizer(optimizer, model: model, from: dir.appendingPathComponent(optimizerFile)) }
        for p in model.parameters { p.value.assign(weights[p.name]!) }
        return state
    }

    private static func configDifference(saved s: LlamaConfig, model m: LlamaConfig) -> String? {
        let fields: [(String, String, String)] = [
            ("hidden_size", "\(s.dim)", "\(m.dim)"), ("num_hidden_layers", "\(s.layers)", "\(m.layers)"),
            ("num_attention_heads", "\(s.heads)", "\(m.heads)"), ("num_key_value_heads", "\(s.kvHeads)", "\(m.kvHeads)"),
            ("intermediate_size", "\(s.ffnDim)", "\(m.ffnDim)"), ("vocab_size", "\(s.vocab)", "\(m.vocab)"),
            ("max_position_embeddings", "\(s.maxSeq)", "\(m.maxSeq)"), ("rope_theta", "\(s.ropeTheta)", "\(m.ropeTheta)"),
            ("rms_norm_eps", "\(s.normEps)", "\(m.normEps)"),
            ("tie_word_embeddings", "\(s.tiedEmbeddings)", "\(m.tiedEmbeddings)"),
        ]
        let diffs = fields.filter { $0.1 != $0.2 }.map { "\($0.0) \($0.1) in the checkpoint, \($0.2) in the model" }
        return diffs.isEmpty ? nil : diffs.joined(separator: "; ")
    }

    /// Reads and checks the weights for `model` without touching it: every parameter present
    /// with its shape, nothing unknown besides rotary buffers (and a tied model's redundant
    /// `lm_head.weight`).
    static func readWeights(from dir: URL, specs: [some ParameterInfo], tied: Bool) throws -> [String: Tensor] {
        let single = dir.appendingPathComponent(modelFile)
        let index = dir.appendingPathComponent(shardIndexFile)
        var tensors: [String: Tensor] = [:]
        var source: [String: URL] = [:]
        if fileKind(single) != nil || fileKind(index) == nil {
            tensors = try readSafeTensors(single, kind: "weights")
            for k in tensors.keys { source[k] = single }
        } else {
            for shard in try shardFiles(index) {
                let url = dir.appendingPathComponent(shard)
                for (k, t) in try readSafeTensors(url, kind: "weights") {
                    if tensors[k] != nil { throw CheckpointError(.corruptFile, url, "tensor '\(k)' is also in another shard") }
                    tensors[k] = t
                    source[k] = url
                }
            }
        }
        let weightsPath = source.values.first ?? single
        for p in specs {
            guard let t = tensors[p.name] else {
                throw CheckpointError(.missingTensor, weightsPath, "has no tensor '\(p.name)'")
            }
            guard t.shape == p.shape else {
                throw CheckpointError(.shapeMismatch, source[p.name]!, "tensor '\(p.name)' has shape \(t.shape), the configuration needs \(p.shape)")
            }
        }
        let known = Set(specs.map(\.name))
        for name in tensors.keys.sorted() where !known.contains(name) {
            if name.hasSuffix("rotary_emb.inv_freq") { continue }
            if name == "lm_head.weight" && tied { continue }
            throw CheckpointError(.unexpectedTensor, source[name]!, "has tensor '\(name)', which the configured model does not have")
        }
        return tensors
    }

    /// The shard file names listed by a `model.safetensors.index.json`, in first-use order.
    private static func shardFiles(_ index: URL) throws -> [String] {
        struct Index: Decodable { let weight_map: [String: String] }
        let data = try readFile(index)
        let parsed: Index
        do { parsed = try JSONDecoder().decode(Index.self, from: data) } catch {
            throw CheckpointError(.corruptFile, index, "is not a shard index (\(describe(error)))")
        }
        var files: [String] = []
        for (_, f) in parsed.weight_map.sorted(by: { $0.key < $1.key }) where !files.contains(f) {
            guard !f.isEmpty, !f.contains("/"), f != ".", f != ".." else {
                throw CheckpointError(.corruptFile, index, "shard name '\(f)' is not a plain file name")
            }
            files.append(f)
        }
        guard !files.isEmpty else { throw CheckpointError(.corruptFile, index, "lists no shards") }
        return files
    }

    private static func readSafeTensors(_ url: URL, kind: String) throws -> [String: Tensor] {
        try loadSafeTensors(url, kind: kind).tensors
    }

    private static func loadSafeTensors(_ url: URL, kind: String) throws -> SafeTensorsFile {
        guard let k = fileKind(url) else {
            if fileKind(url.deletingLastPathComponent()) != .directory {
                throw CheckpointError(.missingFile, url.deletingLastPathComponent(), "checkpoint directory does not exist")
            }
            throw CheckpointError(.missingFile, url, "\(kind) file does not exist")
        }
        guard k == .regular else { throw CheckpointError(.corruptFile, url, "is not a regular file") }
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile.load(url: url) } catch let e as SafeTensorsError {
            throw CheckpointError(e.kind == .io ? .io : .corruptFile, url, e.message)
        }
        if let e = file.entries.first(where: { $0.dtype.isInteger }) {
            throw CheckpointError(.corruptFile, url, "tensor '\(e.name)' has integer dtype \(e.dtype.rawValue)")
        }
        return file
    }

    private static func restoreOptimizer(_ optimizer: RoutedOptimizer, model: LlamaModel, from url: URL) throws {
        let file = try loadSafeTensors(url, kind: "optimizer state")
        guard file.metadata["format"] == optimizerFormat else {
            throw CheckpointError(.corruptFile, url, "metadata 'format' is not '\(optimizerFormat)'")
        }
        guard file.metadata["format_version"] == optimizerFormatVersion else {
            throw CheckpointError(.corruptFile, url, "unsupported format_version '\(file.metadata["format_version"] ?? "none")'")
        }
        let owners: [String: String]
        do { owners = try JSONDecoder().decode([String: String].self, from: Data((file.metadata["owners"] ?? "").utf8)) } catch {
            throw CheckpointError(.corruptFile, url, "metadata 'owners' is not a JSON object of strings")
        }
        let names = Set(model.parameters.map(\.name))
        for name in owners.keys.sorted() where !names.contains(name) {
            throw CheckpointError(.optimizerMismatch, url, "has state for '\(name)', which the model does not have")
        }
        var grouped: [String: [String: Tensor]] = [:]
        for (full, t) in file.tensors {
            guard let slash = full.firstIndex(of: "/") else {
                throw CheckpointError(.corruptFile, url, "tensor name '\(full)' is not '<parameter>/<state key>'")
            }
            let pname = String(full[..<slash]), key = String(full[full.index(after: slash)...])
            guard names.contains(pname) else {
                throw CheckpointError(.optimizerMismatch, url, "has state for '\(pname)', which the model does not have")
            }
            grouped[pname, default: [:]][key] = t
        }
        for p in model.parameters {
            let rule = optimizer.optimizer(for: p)
            guard let saved = owners[p.name] else {
                throw CheckpointError(.optimizerMismatch, url, "records no optimizer for '\(p.name)'")
            }
            guard saved == rule.name else {
                throw CheckpointError(.optimizerMismatch, url, "'\(p.name)' was optimized by '\(saved)', now routed to '\(rule.name)'")
            }
        }
        // Import, remembering the current states so that a failure part way leaves all as it was.
        var previous: [(Parameter, ParameterOptimizer, [String: Tensor])] = []
        for p in model.parameters {
            let rule = optimizer.optimizer(for: p)
            let before = rule.exportState(for: p)
            do {
                try rule.importState(grouped[p.name] ?? [:], for: p)
            } catch {
                for (q, r, s) in previous.reversed() { try? r.importState(s, for: q) }
                throw CheckpointError(.optimizerMismatch, url, "\(error)")
            }
            previous.append((p, rule, before))
        }
    }

    // MARK: Files

    static func fileKind(_ url: URL) -> FileKind? { FileKind.of(url) }

    /// Whether `dir` may be replaced by a save: empty, or holding a configuration or weights.
    static func looksLikeCheckpoint(_ dir: URL) -> Bool {
        let contents = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return contents.isEmpty || contents.contains(configFile) || contents.contains(modelFile) || contents.contains(shardIndexFile)
    }

    /// `dir`, or `<dir>.old` when a save was interrupted between its two renames.
    public static func resolve(_ dir: URL) -> URL {
        let dir = dir.standardizedFileURL
        if fileKind(dir) != nil { return dir }
        let old = dir.deletingLastPathComponent().appendingPathComponent("\(dir.lastPathComponent).old")
        return fileKind(old) == .directory ? old : dir
    }

    private static func readFile(_ url: URL) throws -> Data {
        guard let k = fileKind(url) else {
            if fileKind(url.deletingLastPathComponent()) != .directory {
                throw CheckpointError(.missingFile, url.deletingLastPathComponent(), "checkpoint directory does not exist")
            }
            throw CheckpointError(.missingFile, url, "file does not exist")
        }
        guard k == .regular else { throw CheckpointError(.corruptFile, url, "is not a regular file") }
        do { return try Data(contentsOf: url) } catch {
            throw CheckpointError(.io, url, "cannot read (\(FileErrorText.describe(error)))")
        }
    }

    /// Writes `data` to a new file and syncs it.
    private static func writeFile(_ data: Data, to url: URL) throws {
        do { try DurableFile.create(url) { try $0.write(data) } } catch let e as IOFailure {
            throw CheckpointError(.io, url, e.description)
        }
    }

    /// Makes the directory's entries (new files, renames) durable.
    private static func syncDirectory(_ url: URL) throws {
        do { try DurableFile.syncDirectory(url) } catch let e as IOFailure {
            throw CheckpointError(.io, url, e.description)
        }
    }

    private static func rename(_ from: URL, to: URL) throws {
        let r = from.withUnsafeFileSystemRepresentation { src in
            to.withUnsafeFileSystemRepresentation { dst in posixRename(src!, dst!) }
        }
        guard r == 0 else { throw posixError(from, "cannot rename to \(to.path)") }
    }

    private static func removeItem(_ url: URL) throws {
        guard fileKind(url) != nil else { return }
        do { try FileManager.default.removeItem(at: url) } catch {
            throw CheckpointError(.io, url, "cannot remove (\(FileErrorText.describe(error)))")
        }
    }

    /// Removes `<dir>.tmp-<pid>` directories left by processes that no longer run (a save
    /// that crashed). Directories of live processes are left alone: they may be saving now.
    private static func removeStaleTemporaries(of dir: URL) {
        let parent = dir.deletingLastPathComponent()
        let prefix = "\(dir.lastPathComponent).tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent.path) else { return }
        for n in names where n.hasPrefix(prefix) {
            guard let pid = Int32(n.dropFirst(prefix.count)), pid > 0 else { continue }
            let alive = pid == getpid() ? false : (kill(pid, 0) == 0 || errno == EPERM)
            if !alive { try? FileManager.default.removeItem(at: parent.appendingPathComponent(n)) }
        }
    }

    private static func posixError(_ url: URL, _ what: String) -> CheckpointError {
        CheckpointError(.io, url, "\(what): \(String(cString: strerror(errno)))")
    }

    private static func describe(_ error: Error) -> String {
        var text: String
        switch error {
        case DecodingError.dataCorrupted(let c): text = c.debugDescription
        case DecodingError.keyNotFound(let k, _): text = "missing '\(k.stringValue)'"
        case DecodingError.typeMismatch(_, let c):
            text = "wrong type at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.valueNotFound(_, let c):
            text = "null at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        default: text = String(describing: error)
        }
        text = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return text.count > 200 ? String(text.prefix(200)) + "..." : text
    }
}

/// POSIX `rename`, under a name that does not clash with `Checkpoint.rename(_:to:)`.
private func posixRename(_ from: UnsafePointer<CChar>, _ to: UnsafePointer<CChar>) -> Int32 { rename(from, to) }

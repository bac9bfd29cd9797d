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

extension Checkpoint {

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
    /// checkpoints and transformers' `save_pretrained` output alike, with the adapter a
    /// checkpoint holds (`Checkpoint+Adapters.swift`), or the PEFT adapter in `adapter`
    /// put on the base model in `dir`.
    public static func loadModel(from dir: URL, adapter: URL? = nil) throws -> LlamaModel {
        let dir = resolve(dir)
        let adapterFound = fileKind((adapter ?? dir).appendingPathComponent(adapterSettingsFile)) != nil
            || fileKind((adapter ?? dir).appendingPathComponent(adapterConfigFile)) != nil
        if adapterFound {
            let config = try loadConfig(from: dir).config
            if let settings = try loadAdapterSettings(from: adapter ?? dir, layers: config.layers) {
                return try loadAdapterModel(config, from: dir, adapterDir: adapter ?? dir, settings: settings)
            }
        }
        if let adapter {
            throw CheckpointError(.missingFile, adapter.appendingPathComponent(adapterConfigFile), "adapter config does not exist")
        }
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

    /// `loadModel` for a base model with an adapter.
    static func loadAdapterModel(_ config: LlamaConfig, from dir: URL, adapterDir: URL, settings: AdapterSettings) throws -> LlamaModel {
        let adapterURL = adapterDir.appendingPathComponent(adapterSettingsFile)
        do { try config.validate(); try settings.validate(for: config) } catch {
            throw CheckpointError(.invalidConfig, adapterURL, "\(error)")
        }
        try ResourceCheck.modelFits(config, copies: 2, for: "loading \(dir.path)")
        let operators = try settings.operators()
        let specs = LlamaArchitecture(config: config, operators: operators).parameterSpecs
        let weights = try readWeights(from: dir, adapterDir: adapterDir, specs: specs, tied: config.tiedEmbeddings)
        let model: LlamaModel
        do { model = try LlamaModel(config: config, operators: operators) } catch {
            throw CheckpointError(.invalidConfig, adapterURL, "\(error)")
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
        let weights = hasAdapters(model)
            ? try readWeights(from: dir, adapterDir: dir, specs: model.parameters, tied: model.config.tiedEmbeddings)
            : try readWeights(from: dir, specs: model.parameters, tied: model.config.tiedEmbeddings)
        let state = try loadTrainerState(from: dir)
        if let optimizer { try restoreOptimizer(optimizer, model: model, from: dir.appendingPathComponent(optimizerFile)) }
        for p in model.parameters { p.value.assign(weights[p.name]!) }
        return state
    }

    static func configDifference(saved s: LlamaConfig, model m: LlamaConfig) -> String? {
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
    static func shardFiles(_ index: URL) throws -> [String] {
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

    static func readSafeTensors(_ url: URL, kind: String) throws -> [String: Tensor] {
        try loadSafeTensors(url, kind: kind).tensors
    }

    static func loadSafeTensors(_ url: URL, kind: String) throws -> SafeTensorsFile {
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
}

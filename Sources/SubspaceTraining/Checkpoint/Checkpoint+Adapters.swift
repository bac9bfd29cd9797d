import Foundation
import SubspaceCore
import SubspaceModels

/// Checkpoints of models whose slots hold adapters, laid out as PEFT lays them out, so one
/// directory is both a Hugging Face base model and a PEFT adapter:
///
/// - `model.safetensors`: everything but the adapters' own tensors, an adapter's frozen
///   base under the dense name (`<slot>.base_layer.weight` is stored as `<slot>.weight`),
///   so `LlamaForCausalLM.from_pretrained(dir)` loads the base model;
/// - `adapter_model.safetensors`: the adapters' tensors under PEFT's saved names,
///   `base_model.model.<name>` (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`);
/// - `adapter_config.json`: PEFT's `LoraConfig` keys (LoRA and ReLoRA), so
///   `PeftModel.from_pretrained(base, dir)` rebuilds the same model;
/// - `subspace_adapter.json`: the `AdapterSettings` themselves (every method, PEFT's or not).
///
/// Loading reads `subspace_adapter.json` when present, else PEFT's `adapter_config.json`
/// (an adapter `peft` saved), refusing in one line what this engine does not run (DoRA,
/// biases, `modules_to_save`, per-layer patterns, target modules a LLaMA does not have).
extension Checkpoint {
    public static let adapterWeightsFile = "adapter_model.safetensors"
    public static let adapterConfigFile = "adapter_config.json"
    public static let adapterSettingsFile = "subspace_adapter.json"
    /// PEFT's prefix of saved adapter tensor names.
    static let peftPrefix = "base_model.model."

    /// Which file holds a model tensor, and under which name.
    enum WeightFile { case model, adapter }

    /// Where tensor `name` of a model is stored: an adapter base under the dense name in the
    /// model file, an adapter's own tensor (a slot tensor other than `.weight`) under PEFT's
    /// name in the adapter file, anything else as it is in the model file.
    /// CoMERA's TTM embedding tensors travel with the slots' cores, in the adapter file.
    static func storage(of name: String) -> (file: WeightFile, name: String) {
        if name.hasPrefix(TensorTrainEmbedding.prefix) { return (.adapter, peftPrefix + name) }
        guard let rest = slotSuffix(name) else { return (.model, name) }
        if rest == "weight" { return (.model, name) }
        if rest == "base_layer.weight" { return (.model, String(name.dropLast(rest.count)) + "weight") }
        return (.adapter, peftPrefix + name)
    }

    /// What follows the slot path in a slot tensor's name (`lora_A.weight`), or nil for a
    /// tensor outside the slots.
    static func slotSuffix(_ name: String) -> String? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 6, parts[0] == "model", parts[1] == "layers", Int(parts[2]) != nil,
              LlamaArchitecture.slotNames.contains(String(parts[4])), parts[3] == "self_attn" || parts[3] == "mlp"
        else { return nil }
        return parts[5...].joined(separator: ".")
    }

    /// Whether the model's slots hold anything but dense weights.
    static func hasAdapters(_ model: LlamaModel) -> Bool {
        model.parameters.contains { storage(of: $0.name).file == .adapter || $0.name.hasSuffix(".base_layer.weight") }
    }

    // MARK: Writing

    /// Writes the model's weights in the layout above (the adapter files only when
    /// `adapter` is given).
    static func writeWeights(_ model: LlamaModel, adapter: AdapterSettings?, to dir: URL) throws {
        guard let adapter else { return try writeWeights(model, to: dir.appendingPathComponent(modelFile)) }
        var main: [(String, Tensor)] = [], extra: [(String, Tensor)] = []
        for p in model.parameters {
            let s = storage(of: p.name)
            if s.file == .model { main.append((s.name, p.value)) } else { extra.append((s.name, p.value)) }
        }
        for (file, tensors) in [(modelFile, main), (adapterWeightsFile, extra)] {
            let url = dir.appendingPathComponent(file)
            do { try SafeTensorsFile.write(tensors, metadata: ["format": "pt"], to: url) } catch {
                throw CheckpointError(.io, url, "cannot write weights (\(error))")
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let settingsURL = dir.appendingPathComponent(adapterSettingsFile)
        do { try writeFile(try enc.encode(adapter), to: settingsURL) } catch let e as CheckpointError { throw e } catch {
            throw CheckpointError(.io, settingsURL, "cannot encode the adapter settings (\(error))")
        }
        if let peft = PEFTAdapterConfig(adapter) {
            try writeFile(try peft.json(), to: dir.appendingPathComponent(adapterConfigFile))
        }
    }

    // MARK: Reading

    /// The adapter settings stored in `dir` (ours, else PEFT's for a base model of `layers`
    /// layers; nil reads the layer count from `dir/config.json`), or nil when it holds none.
    public static func loadAdapterSettings(from dir: URL, layers: Int? = nil) throws -> AdapterSettings? {
        let ours = dir.appendingPathComponent(adapterSettingsFile), peft = dir.appendingPathComponent(adapterConfigFile)
        if fileKind(ours) != nil {
            let data = try readFile(ours)
            do { return try JSONDecoder().decode(AdapterSettings.self, from: data) } catch {
                throw CheckpointError(.corruptFile, ours, "is not valid adapter settings (\(describe(error)))")
            }
        }
        guard fileKind(peft) != nil else { return nil }
        let n = try layers ?? loadConfig(from: dir).config.layers
        do { return try PEFTAdapterConfig.settings(json: try readFile(peft), layers: n) } catch let e as ConfigurationError {
            throw CheckpointError(.unsupportedConfig, peft, e.message)
        }
    }

    /// Reads a model's weights stored in the layout above (base in `dir`, adapter tensors in
    /// `adapterDir`, which is `dir` for our own checkpoints), keyed by the model's names;
    /// every tensor checked for presence and shape, nothing unknown accepted.
    static func readWeights(from dir: URL, adapterDir: URL, specs: [some ParameterInfo], tied: Bool) throws -> [String: Tensor] {
        var base: [ParameterSpec] = [], factors: [ParameterSpec] = []
        var modelName: [String: String] = [:]
        for p in specs {
            let s = storage(of: p.name)
            modelName[s.name] = p.name
            let stored = ParameterSpec(name: s.name, role: p.role, shape: p.shape)
            if s.file == .model { base.append(stored) } else { factors.append(stored) }
        }
        var out: [String: Tensor] = [:]
        for (name, t) in try readWeights(from: dir, specs: base, tied: tied) where modelName[name] != nil {
            out[modelName[name]!] = t
        }
        let url = adapterDir.appendingPathComponent(adapterWeightsFile)
        let tensors = try readSafeTensors(url, kind: "adapter weights")
        for p in factors {
            guard let t = tensors[p.name] else { throw CheckpointError(.missingTensor, url, "has no tensor '\(p.name)'") }
            guard t.shape == p.shape else {
                throw CheckpointError(.shapeMismatch, url, "tensor '\(p.name)' has shape \(t.shape), the base model and adapter config need \(p.shape)")
            }
            out[modelName[p.name]!] = t
        }
        let known = Set(factors.map(\.name))
        if let extra = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw CheckpointError(.unexpectedTensor, url, "has tensor '\(extra)', which the adapter config does not describe")
        }
        return out
    }
}

/// PEFT's `LoraConfig` as `adapter_config.json` holds it: written for LoRA adapters, read
/// from adapters `peft` saved.
struct PEFTAdapterConfig: Codable {
    var peft_type = "LORA"
    var task_type: String? = "CAUSAL_LM"
    var r: Int
    var lora_alpha: Float
    var lora_dropout: Float? = 0
    var use_rslora: Bool? = false
    var target_modules: Targets?
    var bias: String? = "none"
    var fan_in_fan_out: Bool? = false
    var inference_mode: Bool? = true
    var init_lora_weights: Bool? = true
    var use_dora: Bool? = false
    var modules_to_save: [String]? = nil
    var layers_to_transform: [Int]? = nil
    var rank_pattern: [String: Int]? = [:]
    var alpha_pattern: [String: Float]? = [:]
    var base_model_name_or_path: String? = nil
    // Newer PEFT options this engine does not run; read so that a set one is refused.
    var lora_bias: Bool? = nil
    var exclude_modules: Targets? = nil
    var layer_replication: [[Int]]? = nil
    var target_parameters: [String]? = nil
    var trainable_token_indices: [Int]? = nil
    var use_qalora: Bool? = nil

    /// `target_modules`: a list of module names, or one string (`all-linear`, or a regex,
    /// which this reader refuses).
    enum Targets: Codable, Equatable {
        case list([String]), string(String)
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let l = try? c.decode([String].self) { self = .list(l) } else { self = .string(try c.decode(String.self)) }
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .list(let l): try c.encode(l)
            case .string(let s): try c.encode(s)
            }
        }
    }

    /// PEFT's form of `a` (nil for methods PEFT does not have).
    init?(_ a: AdapterSettings) {
        guard a.method == .lora || a.method == .relora else { return nil }
        r = a.rank; lora_alpha = a.alpha; use_rslora = a.rsLoRA; target_modules = .list(a.targets); lora_dropout = a.dropout ?? 0
    }

    /// The slot names a PEFT `target_modules` list names: bare names (`q_proj`, matching
    /// every layer) or module paths (`model.layers.1.self_attn.q_proj`, as PEFT saves
    /// `all-linear`). A slot named by path must be named in every layer: adapters on some
    /// layers only are refused, as are names a LLaMA does not have.
    static func slotTargets(_ list: [String], layers: Int) throws -> [String] {
        var everywhere = Set<String>(), byLayer: [String: Set<Int>] = [:], unknown: [String] = []
        for entry in list {
            let parts = entry.split(separator: ".").map(String.init)
            guard let slot = parts.last, LlamaArchitecture.slotNames.contains(slot) else { unknown.append(entry); continue }
            if parts.count == 1 { everywhere.insert(slot); continue }
            // A path: [...]layers.L.<self_attn|mlp>.slot
            guard parts.count >= 4, parts[parts.count - 4] == "layers", let l = Int(parts[parts.count - 3]),
                  parts[parts.count - 2] == (LlamaArchitecture.slotNames.firstIndex(of: slot)! < 4 ? "self_attn" : "mlp")
            else { unknown.append(entry); continue }
            byLayer[slot, default: []].insert(l)
        }
        if !unknown.isEmpty {
            throw ConfigurationError(
                "the adapter targets \(unknown.prefix(3).joined(separator: ", ")), which a LLaMA model does not have (its linear slots are \(LlamaArchitecture.slotNames.joined(separator: ", "))): is it for another architecture?")
        }
        for (slot, ls) in byLayer.sorted(by: { $0.key < $1.key }) where !everywhere.contains(slot) {
            if ls != Set(0..<layers) {
                throw ConfigurationError("the adapter puts \(slot) adapters on \(ls.count) of the model's \(layers) layers; adapters on some layers only are not supported")
            }
        }
        let named = everywhere.union(byLayer.keys)
        return LlamaArchitecture.slotNames.filter { named.contains($0) }
    }

    func json() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }

    /// The settings of a PEFT-saved LoRA adapter for a base model of `layers` decoder
    /// layers, or a one-line reason it cannot run here.
    static func settings(json: Data, layers: Int) throws -> AdapterSettings {
        let c: PEFTAdapterConfig
        do { c = try JSONDecoder().decode(PEFTAdapterConfig.self, from: json) } catch {
            throw ConfigurationError("not a PEFT LoRA config (\(JSONErrorText.describe(error)))")
        }
        guard c.peft_type == "LORA" else { throw ConfigurationError("PEFT adapter type \(c.peft_type) is not supported (only LORA)") }
        if let t = c.task_type, t != "CAUSAL_LM" { throw ConfigurationError("PEFT task type \(t) is not a causal language model") }
        if c.use_dora == true { throw ConfigurationError("DoRA adapters (use_dora) are not supported") }
        if let b = c.bias, b != "none" { throw ConfigurationError("adapters with trained biases (bias \(b)) are not supported: LLaMA has no biases") }
        if c.fan_in_fan_out == true { throw ConfigurationError("fan_in_fan_out adapters (GPT-2's Conv1D layout) do not fit a LLaMA model") }
        if let m = c.modules_to_save, !m.isEmpty { throw ConfigurationError("modules_to_save (\(m.joined(separator: ", "))) is not supported") }
        if c.layers_to_transform != nil { throw ConfigurationError("layers_to_transform is not supported: adapters go in every layer") }
        if !(c.rank_pattern ?? [:]).isEmpty || !(c.alpha_pattern ?? [:]).isEmpty {
            throw ConfigurationError("per-module rank_pattern/alpha_pattern are not supported")
        }
        if c.lora_bias == true { throw ConfigurationError("adapters with a bias on lora_B (lora_bias) are not supported") }
        if c.exclude_modules != nil { throw ConfigurationError("exclude_modules is not supported: list the target modules instead") }
        if c.layer_replication != nil { throw ConfigurationError("layer_replication is not supported") }
        if c.target_parameters != nil { throw ConfigurationError("target_parameters is not supported") }
        if c.trainable_token_indices != nil { throw ConfigurationError("trainable_token_indices is not supported") }
        if c.use_qalora == true { throw ConfigurationError("QALoRA adapters (use_qalora) are not supported") }
        let targets: [String]
        switch c.target_modules {
        case .none: throw ConfigurationError("the PEFT config names no target_modules")
        case .string("all-linear"): targets = LlamaArchitecture.slotNames
        case .string(let s): throw ConfigurationError("target_modules given as a pattern ('\(s)') is not supported; list the module names")
        case .list(let l):
            targets = try slotTargets(l, layers: layers)
        }
        let s = AdapterSettings(method: .lora, rank: c.r, alpha: c.lora_alpha, rsLoRA: c.use_rslora ?? false, targets: targets, trainOthers: false)
        try s.validate()
        return s
    }
}

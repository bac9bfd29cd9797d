import Foundation
import SubspaceCore

/// Why a transformers `config.json` could not be turned into a `LlamaConfig`. Each case
/// names the offending key; `description` is one line fit for a user.
public enum HuggingFaceConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The bytes are not a JSON object.
    case invalidJSON(String)
    /// A key without a sensible default is absent (or null).
    case missingKey(String)
    /// A key holds a value of the wrong JSON type.
    case wrongType(key: String, expected: String)
    /// `model_type` is present and is not `llama`.
    case unsupportedModelType(String)
    /// `hidden_act` is not `silu`: the MLP here is SwiGLU with SiLU only.
    case unsupportedActivation(String)
    /// `attention_bias` or `mlp_bias` is true: our projections have no bias.
    case unsupportedBias(key: String)
    /// Rotary scaling other than the default (linear, dynamic, YaRN, llama3, ...).
    case unsupportedRopeScaling(String)
    /// `head_dim` differs from `hidden_size / num_attention_heads`, which our attention assumes.
    case unsupportedHeadDim(headDim: Int, expected: Int)
    /// The values are readable but describe a model that cannot exist (see `LlamaConfig.validate`).
    case invalidValue(String)

    public var description: String {
        switch self {
        case .invalidJSON(let why): return "config is not a JSON object (\(why))"
        case .missingKey(let key): return "config has no '\(key)'"
        case .wrongType(let key, let expected): return "config '\(key)' must be \(expected)"
        case .unsupportedModelType(let t): return "model_type '\(t)' is not supported (only 'llama')"
        case .unsupportedActivation(let a): return "hidden_act '\(a)' is not supported (only 'silu')"
        case .unsupportedBias(let key): return "\(key) = true is not supported (projections have no bias)"
        case .unsupportedRopeScaling(let s): return "rope scaling '\(s)' is not supported (only the default rotary embedding)"
        case .unsupportedHeadDim(let h, let e):
            return "head_dim \(h) is not supported (must equal hidden_size / num_attention_heads = \(e))"
        case .invalidValue(let why): return "config describes an impossible model: \(why)"
        }
    }
}

/// Special token ids carried by a transformers config. They do not affect the network, so
/// `LlamaConfig` does not hold them; they travel beside it so that a checkpoint written by us
/// and read by transformers (or the reverse) keeps them.
public struct SpecialTokenIds: Codable, Equatable, Sendable {
    public var bos: Int?
    /// transformers allows one end-of-sequence id or several (LLaMA 3 uses a list).
    public var eos: [Int]?
    public var pad: Int?
    public init(bos: Int? = nil, eos: [Int]? = nil, pad: Int? = nil) {
        self.bos = bos; self.eos = eos; self.pad = pad
    }
}

/// A `LlamaConfig` in transformers' vocabulary: the `config.json` that
/// `LlamaForCausalLM.from_pretrained` reads and `save_pretrained` writes.
///
/// Reading follows transformers' own defaults for absent keys (`num_key_value_heads` falls
/// back to `num_attention_heads`, `rms_norm_eps` to 1e-6, `rope_theta` to 10,000,
/// `max_position_embeddings` to 2,048, `tie_word_embeddings` to false, `initializer_range` to
/// 0.02), ignores keys that do not change the network (dropout, `use_cache`, dtype, ...) and
/// refuses, with a `HuggingFaceConfigError`, the variants our decoder does not implement:
/// rotary scaling, activations other than SiLU, biased projections, a decoupled `head_dim`.
/// The rotary base is read from transformers 5's `rope_parameters` or from the older
/// top-level `rope_theta`.
///
/// Writing emits both spellings of the version-dependent keys (`rope_theta` and
/// `rope_parameters`, `torch_dtype` and `dtype`) so transformers 4 and 5 both read the file
/// without conversion warnings.
public struct HuggingFaceLlamaConfig: Equatable, Sendable {
    public var config: LlamaConfig
    public var specialTokens: SpecialTokenIds

    public init(_ config: LlamaConfig, specialTokens: SpecialTokenIds = SpecialTokenIds()) {
        self.config = config
        self.specialTokens = specialTokens
    }

    /// Parses a transformers LLaMA `config.json` and checks that it describes a model we can build.
    public init(json data: Data) throws {
        let raw: HFConfigFile
        do {
            raw = try JSONDecoder().decode(HFConfigFile.self, from: data)
        } catch let e as HuggingFaceConfigError {
            throw e
        } catch {
            throw HuggingFaceConfigError.invalidJSON(Self.oneLine(error))
        }
        try self.init(raw)
    }

    /// The `config.json` bytes: pretty-printed, keys sorted as transformers writes them.
    public func jsonData() throws -> Data {
        let c = config
        var f = HFConfigFile()
        f.architectures = ["LlamaForCausalLM"]
        f.modelType = "llama"
        f.hiddenSize = c.dim
        f.intermediateSize = c.ffnDim
        f.numHiddenLayers = c.layers
        f.numAttentionHeads = c.heads
        f.numKeyValueHeads = c.kvHeads
        f.headDim = c.headDim
        f.vocabSize = c.vocab
        f.maxPositionEmbeddings = c.maxSeq
        f.ropeTheta = c.ropeTheta
        f.ropeParameters = RopeParameters(ropeType: "default", type: nil, ropeTheta: c.ropeTheta)
        // Through the float's shortest decimal form, so 1e-6 is written as 1e-06 rather than
        // as the binary neighbour 9.99999997e-07 that Double(Float) would give.
        f.rmsNormEps = Double("\(c.normEps)") ?? Double(c.normEps)
        f.initializerRange = Double("\(c.initStd)") ?? Double(c.initStd)
        f.tieWordEmbeddings = c.tiedEmbeddings
        f.hiddenAct = "silu"
        f.attentionBias = false
        f.mlpBias = false
        f.attentionDropout = 0
        f.torchDtype = "float32"
        f.dtype = "float32"
        f.bosTokenId = specialTokens.bos
        f.eosTokenId = specialTokens.eos
        f.padTokenId = specialTokens.pad
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(f)
    }

    private init(_ f: HFConfigFile) throws {
        if let t = f.modelType, t != "llama" { throw HuggingFaceConfigError.unsupportedModelType(t) }
        if let act = f.hiddenAct, act != "silu" { throw HuggingFaceConfigError.unsupportedActivation(act) }
        if f.attentionBias == true { throw HuggingFaceConfigError.unsupportedBias(key: "attention_bias") }
        if f.mlpBias == true { throw HuggingFaceConfigError.unsupportedBias(key: "mlp_bias") }
        if let s = f.ropeScaling, !s.isDefault { throw HuggingFaceConfigError.unsupportedRopeScaling(s.kind) }
        if let p = f.ropeParameters, !p.isDefault { throw HuggingFaceConfigError.unsupportedRopeScaling(p.kind) }

        guard let dim = f.hiddenSize else { throw HuggingFaceConfigError.missingKey("hidden_size") }
        guard let ffn = f.intermediateSize else { throw HuggingFaceConfigError.missingKey("intermediate_size") }
        guard let layers = f.numHiddenLayers else { throw HuggingFaceConfigError.missingKey("num_hidden_layers") }
        guard let heads = f.numAttentionHeads else { throw HuggingFaceConfigError.missingKey("num_attention_heads") }
        guard let vocab = f.vocabSize else { throw HuggingFaceConfigError.missingKey("vocab_size") }
        let theta = f.ropeParameters?.ropeTheta ?? f.ropeTheta ?? 10_000
        let eps = f.rmsNormEps ?? 1e-6
        let std = f.initializerRange ?? 0.02
        for (key, v) in [("rms_norm_eps", eps), ("rope_theta", theta), ("initializer_range", std)] where !v.isFinite {
            throw HuggingFaceConfigError.invalidValue("\(key) is not finite")
        }
        let c = LlamaConfig(
            dim: dim, layers: layers, heads: heads, kvHeads: f.numKeyValueHeads ?? heads, ffnDim: ffn, vocab: vocab,
            maxSeq: f.maxPositionEmbeddings ?? 2048, ropeTheta: theta, normEps: Float(eps),
            tiedEmbeddings: f.tieWordEmbeddings ?? false, initStd: Float(std))
        do { try c.validateShape() } catch let e as ConfigurationError {
            throw HuggingFaceConfigError.invalidValue(e.message)
        }
        if let hd = f.headDim, hd != c.headDim {
            throw HuggingFaceConfigError.unsupportedHeadDim(headDim: hd, expected: c.headDim)
        }
        config = c
        specialTokens = SpecialTokenIds(bos: f.bosTokenId, eos: f.eosTokenId, pad: f.padTokenId)
    }

    static func oneLine(_ error: Error) -> String {
        var text: String
        switch error {
        case DecodingError.dataCorrupted(let c): text = c.debugDescription
        case DecodingError.typeMismatch(_, let c): text = "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        default: text = String(describing: error)
        }
        text = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return text.count > 200 ? String(text.prefix(200)) + "..." : text
    }
}

extension LlamaConfig {
    /// The configuration described by a transformers LLaMA `config.json`.
    public init(huggingFaceJSON data: Data) throws {
        self = try HuggingFaceLlamaConfig(json: data).config
    }

    /// This configuration as a transformers LLaMA `config.json`.
    public func huggingFaceJSON(specialTokens: SpecialTokenIds = SpecialTokenIds()) throws -> Data {
        try HuggingFaceLlamaConfig(self, specialTokens: specialTokens).jsonData()
    }
}

// MARK: - The file's keys

/// `rope_parameters` (transformers 5) or `rope_scaling` (transformers 4): only the default
/// rotary embedding is accepted.
private struct RopeParameters: Codable {
    var ropeType: String?
    /// transformers 4's older spelling of `rope_type`.
    var type: String?
    var ropeTheta: Double?

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, ropeTheta = "rope_theta"
    }

    var kind: String { ropeType ?? type ?? "unnamed" }
    var isDefault: Bool { (ropeType ?? type ?? "default") == "default" }

    init(ropeType: String?, type: String?, ropeTheta: Double?) {
        self.ropeType = ropeType; self.type = type; self.ropeTheta = ropeTheta
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ropeType = try HFConfigFile.optional(c, .ropeType, "rope_parameters.rope_type", "a string")
        type = try HFConfigFile.optional(c, .type, "rope_scaling.type", "a string")
        ropeTheta = try HFConfigFile.optional(c, .ropeTheta, "rope_parameters.rope_theta", "a number")
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(ropeType, forKey: .ropeType)
        try c.encodeIfPresent(type, forKey: .type)
        try c.encodeIfPresent(ropeTheta, forKey: .ropeTheta)
    }
}

/// The keys of transformers' `LlamaConfig` that matter here. Every field is optional so that
/// absence can be told from a wrong type; unknown keys are ignored by `Decodable`.
private struct HFConfigFile: Codable {
    var architectures: [String]?
    var modelType: String?
    var hiddenSize: Int?
    var intermediateSize: Int?
    var numHiddenLayers: Int?
    var numAttentionHeads: Int?
    var numKeyValueHeads: Int?
    var headDim: Int?
    var vocabSize: Int?
    var maxPositionEmbeddings: Int?
    var ropeTheta: Double?
    var ropeParameters: RopeParameters?
    var ropeScaling: RopeParameters?
    var rmsNormEps: Double?
    var initializerRange: Double?
    var tieWordEmbeddings: Bool?
    var hiddenAct: String?
    var attentionBias: Bool?
    var mlpBias: Bool?
    var attentionDropout: Double?
    var torchDtype: String?
    var dtype: String?
    var bosTokenId: Int?
    var eosTokenId: [Int]?
    var padTokenId: Int?

    enum CodingKeys: String, CodingKey {
        case architectures, modelType = "model_type", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim", vocabSize = "vocab_size", maxPositionEmbeddings = "max_position_embeddings"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case rmsNormEps = "rms_norm_eps", initializerRange = "initializer_range"
        case tieWordEmbeddings = "tie_word_embeddings", hiddenAct = "hidden_act"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias", attentionDropout = "attention_dropout"
        case torchDtype = "torch_dtype", dtype, bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
        case padTokenId = "pad_token_id"
    }

    init() {}

    init(from decoder: Decoder) throws {
        let c: KeyedDecodingContainer<CodingKeys>
        do { c = try decoder.container(keyedBy: CodingKeys.self) } catch {
            throw HuggingFaceConfigError.invalidJSON("the top level is not an object")
        }
        func int(_ k: CodingKeys) throws -> Int? { try Self.optional(c, k, k.rawValue, "an integer") }
        func double(_ k: CodingKeys) throws -> Double? { try Self.optional(c, k, k.rawValue, "a number") }
        func bool(_ k: CodingKeys) throws -> Bool? { try Self.optional(c, k, k.rawValue, "true or false") }
        func string(_ k: CodingKeys) throws -> String? { try Self.optional(c, k, k.rawValue, "a string") }
        architectures = try Self.optional(c, .architectures, "architectures", "a list of strings")
        modelType = try string(.modelType)
        hiddenSize = try int(.hiddenSize)
        intermediateSize = try int(.intermediateSize)
        numHiddenLayers = try int(.numHiddenLayers)
        numAttentionHeads = try int(.numAttentionHeads)
        numKeyValueHeads = try int(.numKeyValueHeads)
        headDim = try int(.headDim)
        vocabSize = try int(.vocabSize)
        maxPositionEmbeddings = try int(.maxPositionEmbeddings)
        ropeTheta = try double(.ropeTheta)
        ropeParameters = try Self.optional(c, .ropeParameters, "rope_parameters", "an object")
        ropeScaling = try Self.optional(c, .ropeScaling, "rope_scaling", "an object or null")
        rmsNormEps = try double(.rmsNormEps)
        initializerRange = try double(.initializerRange)
        tieWordEmbeddings = try bool(.tieWordEmbeddings)
        hiddenAct = try string(.hiddenAct)
        attentionBias = try bool(.attentionBias)
        mlpBias = try bool(.mlpBias)
        attentionDropout = try double(.attentionDropout)
        torchDtype = try string(.torchDtype)
        dtype = try string(.dtype)
        bosTokenId = try int(.bosTokenId)
        padTokenId = try int(.padTokenId)
        // One id or a list of ids.
        if let one = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) {
            eosTokenId = [one]
        } else {
            eosTokenId = try Self.optional(c, .eosTokenId, "eos_token_id", "an integer or a list of integers")
        }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(architectures, forKey: .architectures)
        try c.encodeIfPresent(modelType, forKey: .modelType)
        try c.encodeIfPresent(hiddenSize, forKey: .hiddenSize)
        try c.encodeIfPresent(intermediateSize, forKey: .intermediateSize)
        try c.encodeIfPresent(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encodeIfPresent(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encodeIfPresent(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encodeIfPresent(headDim, forKey: .headDim)
        try c.encodeIfPresent(vocabSize, forKey: .vocabSize)
        try c.encodeIfPresent(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encodeIfPresent(ropeTheta, forKey: .ropeTheta)
        try c.encodeIfPresent(ropeParameters, forKey: .ropeParameters)
        try c.encodeIfPresent(rmsNormEps, forKey: .rmsNormEps)
        try c.encodeIfPresent(initializerRange, forKey: .initializerRange)
        try c.encodeIfPresent(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encodeIfPresent(hiddenAct, forKey: .hiddenAct)
        try c.encodeIfPresent(attentionBias, forKey: .attentionBias)
        try c.encodeIfPresent(mlpBias, forKey: .mlpBias)
        try c.encodeIfPresent(attentionDropout, forKey: .attentionDropout)
        try c.encodeIfPresent(torchDtype, forKey: .torchDtype)
        try c.encodeIfPresent(dtype, forKey: .dtype)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        if let eos = eosTokenId {
            if eos.count == 1 { try c.encode(eos[0], forKey: .eosTokenId) } else { try c.encode(eos, forKey: .eosTokenId) }
        }
        try c.encodeIfPresent(padTokenId, forKey: .padTokenId)
    }

    /// The value under `key`, nil when absent or null, or a `wrongType` error naming the key.
    static func optional<T: Decodable, K: CodingKey>(
        _ c: KeyedDecodingContainer<K>, _ key: K, _ name: String, _ expected: String
    ) throws -> T? {
        do {
            return try c.decodeIfPresent(T.self, forKey: key)
        } catch let e as HuggingFaceConfigError {
            throw e
        } catch {
            throw HuggingFaceConfigError.wrongType(key: name, expected: expected)
        }
    }
}

extension SpecialTokenIds {
    /// transformers' `generation_config.json` for these ids: what `model.generate()` reads for
    /// its stopping and padding tokens when the caller passes none. Without it transformers
    /// derives one from `config.json`, with a warning, and pads with nothing.
    public func generationConfigJSON() throws -> Data {
        var object: [String: Any] = ["_from_model_config": true]
        if let bos { object["bos_token_id"] = bos }
        if let eos { object["eos_token_id"] = eos.count == 1 ? eos[0] as Any : eos as Any }
        if let pad { object["pad_token_id"] = pad } else if let e = eos?.first { object["pad_token_id"] = e }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}

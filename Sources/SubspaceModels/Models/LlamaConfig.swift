import Foundation
import SubspaceCore

/// The shape of a LLaMA-style decoder.
///
/// Field names follow our Swift style; `LlamaConfig+HuggingFace` maps them to and from the
/// `config.json` keys that transformers' `LlamaConfig` reads.
public struct LlamaConfig: Codable, Equatable, Sendable {
    /// Model width (hidden size).
    public var dim: Int
    /// Number of decoder layers.
    public var layers: Int
    /// Attention heads; `dim` must be divisible by it.
    public var heads: Int
    /// Key/value heads (grouped-query attention); must divide `heads`. Equal to `heads` for
    /// ordinary multi-head attention.
    public var kvHeads: Int
    /// Hidden size of the SwiGLU MLP (intermediate size).
    public var ffnDim: Int
    /// Vocabulary size.
    public var vocab: Int
    /// Longest sequence the rotary tables are built for.
    public var maxSeq: Int
    /// Rotary base. 10,000 as in LLaMA 1/2 and GaLore's configs.
    public var ropeTheta: Double
    /// RMSNorm epsilon. GaLore's configs use 1e-6.
    public var normEps: Float
    /// Whether the LM head shares the embedding matrix.
    public var tiedEmbeddings: Bool
    /// Standard deviation of the normal initialisation (Hugging Face `initializer_range`).
    public var initStd: Float

    public init(
        dim: Int, layers: Int, heads: Int, kvHeads: Int? = nil, ffnDim: Int, vocab: Int, maxSeq: Int,
        ropeTheta: Double = 10_000, normEps: Float = 1e-6, tiedEmbeddings: Bool = false, initStd: Float = 0.02
    ) {
        self.dim = dim; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads ?? heads
        self.ffnDim = ffnDim; self.vocab = vocab; self.maxSeq = maxSeq; self.ropeTheta = ropeTheta
        self.normEps = normEps; self.tiedEmbeddings = tiedEmbeddings; self.initStd = initStd
    }

    public var headDim: Int { dim / heads }

    /// Checks that the configuration describes a model that can exist.
    public func validate() throws {
        try validateShape()
        try validateSize()
    }

    /// What makes a configuration impossible whatever the machine: non-positive sizes, heads
    /// that do not divide the width, odd head sizes, non-finite constants.
    public func validateShape() throws {
        let sizes: [(String, Int)] = [
            ("dim", dim), ("layers", layers), ("heads", heads), ("kv heads", kvHeads),
            ("ffn dim", ffnDim), ("vocab", vocab), ("max sequence", maxSeq),
        ]
        for (name, v) in sizes where v <= 0 {
            throw ConfigurationError("\(name) must be positive, got \(v)")
        }
        if dim % heads != 0 { throw ConfigurationError("dim \(dim) is not divisible by heads \(heads)") }
        if heads % kvHeads != 0 {
            throw ConfigurationError("kv heads \(kvHeads) must divide heads \(heads)")
        }
        if headDim % 2 != 0 {
            throw ConfigurationError("head size \(headDim) must be even for rotary embeddings")
        }
        if !(normEps > 0) || !normEps.isFinite { throw ConfigurationError("norm eps must be positive, got \(normEps)") }
        if !(ropeTheta > 0) || !ropeTheta.isFinite { throw ConfigurationError("rope theta must be positive") }
    }

    /// The size bounds of `validate()` alone (a configuration file is parsed with
    /// `validateShape()`, and sizes are judged where memory is known: `ResourceCheck`).
    public func validateSize() throws {
        let sizes: [(String, Int)] = [
            ("dim", dim), ("layers", layers), ("heads", heads), ("kv heads", kvHeads),
            ("ffn dim", ffnDim), ("vocab", vocab), ("max sequence", maxSeq),
        ]
        if vocab > Int(Int32.max) { throw ConfigurationError("vocab \(vocab) is too large") }
        // Bounds that keep every size computation of the engine far from Int overflow: no
        // dimension beyond Int32 (token ids and positions are Int32), and at most 2^46
        // parameters (256 TiB of float32 weights), computed in floating point so that the
        // check itself cannot overflow. Memory is checked separately (`ResourceCheck`).
        for (name, v) in sizes where v > Int(Int32.max) {
            throw ConfigurationError("\(name) \(v) is too large (at most \(Int32.max))")
        }
        let hd = Double(dim / heads)
        let perLayer = Double(dim) * hd * Double(heads + kvHeads) * 2 + 3 * Double(dim) * Double(ffnDim) + 2 * Double(dim)
        let count = Double(vocab) * Double(dim) * (tiedEmbeddings ? 1 : 2) + Double(layers) * perLayer + Double(dim)
        if count > 0x1p46 {
            throw ConfigurationError(String(format: "the model would have %.3g parameters, more than this engine can address (2^46)", count))
        }
    }

    /// One line naming the shape, for messages.
    public var summary: String {
        "dim \(dim), layers \(layers), heads \(heads) (kv \(kvHeads)), ffn \(ffnDim), vocab \(vocab), max seq \(maxSeq)"
    }

    /// Checks a batch shape against the model.
    public func validate(batch: Int, seq: Int) throws {
        if batch <= 0 { throw ConfigurationError("batch must be positive, got \(batch)") }
        if seq <= 0 { throw ConfigurationError("sequence length must be positive, got \(seq)") }
        if seq > maxSeq {
            throw ConfigurationError("sequence length \(seq) is longer than the model's maximum \(maxSeq)")
        }
        // Activations hold a few dozen values per token and layer plus the logits; bound
        // them (in floating point) so that byte counts stay far from Int overflow.
        let tokens = Double(batch) * Double(seq)
        let perToken = Double(layers) * (Double(dim) * 16 + Double(ffnDim) * 4 + Double(heads) * Double(seq) * 2) + Double(vocab) * 2
        if tokens * perToken > 0x1p50 {
            throw ConfigurationError("batch \(batch) x sequence \(seq) would need about " + String(format: "%.3g", tokens * perToken) + " activation values, more than this engine can address")
        }
    }

    /// Trainable parameter count.
    public var parameterCount: Int {
        let hd = headDim
        let attn = dim * heads * hd * 2 + dim * kvHeads * hd * 2
        let mlp = 3 * dim * ffnDim
        let perLayer = attn + mlp + 2 * dim
        return vocab * dim * (tiedEmbeddings ? 1 : 2) + layers * perLayer + dim
    }

    // MARK: Presets

    /// Named presets. `tiny` is the project's default for CPU work; `small` is the 20M-class
    /// model for method comparisons on CPU: tiny's vocabulary and context with llama60m's
    /// width and 6 layers, 23.2M parameters of which 19.0M sit in linear slots (GaLore's
    /// `llama20m` spends 16.4M of its 20M on a 32,000-token embedding and head, which a
    /// 4,096-token corpus tokenizer leaves mostly unused, and which no slot method
    /// compresses). The `llamaNNm` presets are GaLore's `configs/llama_*.json` (vocab
    /// 32,000, max sequence 1,024, eps 1e-6).
    public static let presets: [String: LlamaConfig] = [
        "tiny": LlamaConfig(dim: 256, layers: 4, heads: 4, ffnDim: 688, vocab: 4096, maxSeq: 256),
        "small": LlamaConfig(dim: 512, layers: 6, heads: 8, ffnDim: 1376, vocab: 4096, maxSeq: 256),
        "llama9m": galore(dim: 128, ffn: 352, heads: 4, layers: 4),
        "llama20m": galore(dim: 256, ffn: 688, heads: 4, layers: 4),
        "llama35m": galore(dim: 384, ffn: 1024, heads: 8, layers: 6),
        "llama60m": galore(dim: 512, ffn: 1376, heads: 8, layers: 8),
        "llama130m": galore(dim: 768, ffn: 2048, heads: 12, layers: 12),
        "llama350m": galore(dim: 1024, ffn: 2736, heads: 16, layers: 24),
        "llama1b": galore(dim: 2048, ffn: 5461, heads: 32, layers: 24),
        "llama7b": galore(dim: 4096, ffn: 11008, heads: 32, layers: 32, maxSeq: 2048),
    ]

    /// Preset names in size order.
    public static let presetNames = [
        "tiny", "small", "llama9m", "llama20m", "llama35m", "llama60m", "llama130m", "llama350m", "llama1b", "llama7b",
    ]

    private static func galore(dim: Int, ffn: Int, heads: Int, layers: Int, maxSeq: Int = 1024) -> LlamaConfig {
        LlamaConfig(dim: dim, layers: layers, heads: heads, ffnDim: ffn, vocab: 32000, maxSeq: maxSeq)
    }

    /// The preset called `name`, or a clear error listing the known ones.
    public static func preset(_ name: String) throws -> LlamaConfig {
        guard let c = presets[name] else {
            throw ConfigurationError("unknown preset '\(name)'; known: \(presetNames.joined(separator: ", "))")
        }
        return c
    }
}

import Foundation
import SubspaceCore

/// The settings of the operators that replace a model's dense linear slots: adapters on a
/// frozen base (LoRA, ReLoRA, LoRA-XS, LoRA-SB) and the low-rank parametrizations of
/// pre-training (Low-Rank, SLTrain). One type holds every method's defaults, with the
/// reasons, and the validation, so the command line, `run_config.json`, checkpoints and
/// the memory planner read the same values.
///
/// Alpha defaults by method (`Method.defaultAlpha`): LoRA and ReLoRA PEFT's `lora_alpha = 8`
/// whatever the rank; LoRA-XS and LoRA-SB alpha = r (s = 1), their references' choice;
/// Low-Rank and SLTrain 32, Glentis et al.'s and SLTrain's 60M scripts. The rank defaults to
/// PEFT's `r = 8` for every method (the low-rank parametrizations' references use d / 4:
/// pass `--adapter-rank`).
///
/// LoRA's defaults are PEFT's `LoraConfig` defaults, `r = 8` and `lora_alpha = 8`, so the scaling
/// is alpha / r = 1. Chosen over the alpha = 2r habit (alpha 16) because a run configured
/// with PEFT's defaults then means the same thing here, and because scaling 1 makes the
/// adapter's learning rate the optimizer's learning rate: with alpha tied to 2r the
/// effective step of B A doubles for a given lr, which is a silent change of
/// hyper-parameter, not a default. Targets default to all seven linear slots (PEFT's
/// `target_modules="all-linear"`, QLoRA's recommendation; PEFT's own LLaMA default is
/// `q_proj, v_proj` only, which `targets` selects).
public struct AdapterSettings: Sendable, Equatable, Codable {
    /// Which operator the target slots get.
    public enum Method: String, Codable, Sendable, CaseIterable {
        /// `LoRALinear`: frozen W0 plus trainable B A (Hu et al. 2021).
        case lora
        /// `LoRALinear` with merge-and-restart cycles (Lialin et al. 2023); the cycles are
        /// `RestartSettings` of the training run.
        case relora
        /// `LoRAXSLinear`: frozen W0, A and B from W0's truncated SVD, trainable r x r R
        /// (Balazy et al. 2024).
        case loraXS = "lora-xs"
        /// `LoRASBLinear`: LoRA-XS's shape initialised from the approximate first update of
        /// full fine-tuning (`LoRASBInitialization`; Ponkshe, Singhal et al. 2024).
        case loraSB = "lora-sb"
        /// `LowRankLinear`: W = s B A from scratch, both factors trainable (Glentis et al.'s
        /// "Low-Rank"); no base.
        case lowRank = "low-rank"
        /// `SLTrainLinear`: W = s B A + S, S on a fixed random sparse support (Han et al. 2024).
        case sltrain
        /// `TensorTrainLinear`: a TT-matrix with gated, pruned ranks (Yang et al. 2024,
        /// CoMERA); its settings are `ComeraSettings` (`AdapterSettings.comera`).
        case comera

        /// Whether the method is a parametrization for pre-training (no base) rather than an
        /// adapter on a base.
        public var isParametrization: Bool { self == .lowRank || self == .sltrain || self == .comera }

        /// Whether the tensors outside the adapters train by default: not for the adapters of
        /// fine-tuning (PEFT's default: only the adapters), yes for ReLoRA (the reference's
        /// `ReLoRaModel` freezes only the wrapped linear weights; embeddings, norms and the
        /// head train, as in pre-training) and for the pre-training parametrizations.
        public var othersTrainByDefault: Bool { self == .relora || isParametrization }

        /// Alpha when none is given (see the type's notes).
        public func defaultAlpha(rank: Int) -> Float {
            switch self {
            case .lora, .relora: return AdapterSettings.defaultAlpha
            case .loraXS, .loraSB: return Float(rank)
            case .lowRank: return LowRankLinear.Kind.defaultAlpha
            case .sltrain: return SLTrainLinear.Kind.defaultAlpha
            case .comera: return 1
            }
        }
    }

    public var method: Method
    /// The rank r of `lora_A` `[r, in]` and `lora_B` `[out, r]`.
    public var rank: Int
    /// `lora_alpha`: the adapter's output is scaled by alpha / r (alpha / sqrt(r) with rsLoRA).
    public var alpha: Float
    /// Rank-stabilised LoRA (Kalajdzievski 2023; PEFT's `use_rslora`): scale by
    /// alpha / sqrt(r), so that the update's size does not shrink as the rank grows.
    public var rsLoRA: Bool
    /// Slot names (`q_proj` ... `down_proj`, `LlamaArchitecture.slotNames`) that get an
    /// adapter, in every layer.
    public var targets: [String]
    /// Whether the embedding, norm gains, head and the slots without an adapter train; nil
    /// is the method's default (`Method.othersTrainByDefault`).
    public var trainOthers: Bool?
    /// LoRA's dropout on the adapter's input (PEFT's `lora_dropout`; nil: 0, PEFT's default).
    public var dropout: Float?
    /// SLTrain's density delta of the sparse part (nil: `SLTrainLinear.Kind.defaultDensity`).
    public var density: Float?
    /// LoRA-SB: batches whose gradient estimates the first update (nil: `defaultLoRASBBatches`).
    public var initBatches: Int?
    /// CoMERA's TT shape and objective (nil: `ComeraSettings()`'s defaults).
    public var comera: ComeraSettings?

    public static let defaultRank = 8
    public static let defaultAlpha: Float = 8
    /// LoRA-SB's gradient estimate: 8 batches (of the run's batch size). The reference
    /// accumulates over `num_samples` examples (its scripts: a few hundred to a thousand
    /// sequences); 8 batches of `train`'s default 8 x 256 tokens are 64 sequences, enough for
    /// the sign of the summed gradient to settle on the small models this engine runs
    /// while costing less than 1% of a default run.
    public static let defaultLoRASBBatches = 8

    /// `alpha` nil is the method's default (`Method.defaultAlpha(rank:)`).
    public init(
        method: Method = .lora, rank: Int = AdapterSettings.defaultRank, alpha: Float? = nil,
        rsLoRA: Bool = false, targets: [String] = LlamaArchitecture.slotNames, trainOthers: Bool? = nil
    ) {
        self.method = method; self.rank = rank; self.alpha = alpha ?? method.defaultAlpha(rank: rank); self.rsLoRA = rsLoRA
        self.targets = targets; self.trainOthers = trainOthers
    }

    /// The factor s of `y = x W0^T + s (x A^T) B^T`: alpha / r, or alpha / sqrt(r) with rsLoRA.
    public var scaling: Float { rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }

    /// Whether the tensors outside the adapters train (`trainOthers`, else the method's default).
    public var othersTrain: Bool { trainOthers ?? method.othersTrainByDefault }

    /// Refuses a rank below 1, an alpha that is not a finite positive number, and an empty,
    /// repeated or unknown target.
    public func validate() throws {
        guard rank >= 1 else { throw ConfigurationError("the adapter rank must be at least 1 (got \(rank))") }
        guard alpha.isFinite, alpha > 0 else { throw ConfigurationError("the adapter alpha must be a finite positive number (got \(alpha))") }
        guard !targets.isEmpty else { throw ConfigurationError("an adapter needs at least one target slot (\(LlamaArchitecture.slotNames.joined(separator: ", ")))") }
        for t in targets where !LlamaArchitecture.slotNames.contains(t) {
            throw ConfigurationError("unknown adapter target '\(t)': the linear slots are \(LlamaArchitecture.slotNames.joined(separator: ", "))")
        }
        guard Set(targets).count == targets.count else { throw ConfigurationError("an adapter target is named twice: \(targets.joined(separator: ","))") }
        if let dropout {
            guard method == .lora || method == .relora else { throw ConfigurationError("adapter dropout applies to lora and relora") }
            guard dropout.isFinite, dropout >= 0, dropout < 1 else { throw ConfigurationError("the adapter dropout must be in [0, 1) (got \(dropout))") }
        }
        if let density {
            guard method == .sltrain else { throw ConfigurationError("a sparse density applies to sltrain") }
            guard density.isFinite, density > 0, density <= 1 else { throw ConfigurationError("the SLTrain density must be in (0, 1] (got \(density))") }
        }
        if let initBatches {
            guard method == .loraSB else { throw ConfigurationError("initialization batches apply to lora-sb") }
            guard initBatches >= 1, initBatches <= 1 << 20 else { throw ConfigurationError("LoRA-SB needs 1 to 2^20 initialization batches (got \(initBatches))") }
        }
        if rsLoRA && !(method == .lora || method == .relora) { throw ConfigurationError("rsLoRA scaling applies to lora and relora") }
        if let comera {
            guard method == .comera else { throw ConfigurationError("tensor-train settings apply to --parametrization comera") }
            try comera.validate()
        }
    }

    /// The rank reports name: the factors' r, or CoMERA's largest TT rank.
    public var reportedRank: Int { method == .comera ? comeraSettings.rank : rank }

    /// CoMERA's settings (defaults when none were given).
    public var comeraSettings: ComeraSettings { comera ?? ComeraSettings() }

    /// Refuses a rank above min(in, out) of a target slot of `config` (the factors would
    /// hold more parameters than the matrix they adapt, and the low-rank methods that take
    /// an SVD could not).
    public func validate(for config: LlamaConfig) throws {
        try validate()
        if method == .comera, let e = comeraSettings.embedding {
            guard !config.tiedEmbeddings else {
                throw ConfigurationError("--tt-embedding needs an untied LM head (a tied head would need the whole [vocab, dim] table every step)")
            }
            _ = try e.shape(vocab: config.vocab, dim: config.dim)
        }
        let names = Set(targets)
        for slot in LlamaArchitecture(config: config).slots(layer: 0) where names.contains(slot.name) {
            if method == .comera { _ = try comeraSettings.shape(for: slot); continue }
            let limit = min(slot.inFeatures, slot.outFeatures)
            if rank > limit {
                throw ConfigurationError(
                    "adapter rank \(rank) is above min(in, out) = \(limit) of \(slot.name) [\(slot.outFeatures), \(slot.inFeatures)]")
            }
        }
    }

    /// The kind every target slot gets.
    public var kind: any LinearOperatorKind {
        switch method {
        case .lora, .relora: return LoRALinear.Kind(rank: rank, scaling: scaling, dropout: dropout ?? 0)
        case .loraXS: return LoRAXSLinear.Kind(rank: rank, alpha: alpha)
        case .loraSB: return LoRASBLinear.Kind(rank: rank, alpha: alpha)
        case .lowRank: return LowRankLinear.Kind(rank: rank, alpha: alpha)
        case .sltrain: return SLTrainLinear.Kind(rank: rank, alpha: alpha, density: density ?? SLTrainLinear.Kind.defaultDensity)
        case .comera: return TensorTrainLinear.Kind(settings: comeraSettings)
        }
    }

    /// `base`'s choices with every target slot of every layer replaced by the method's
    /// operator, and everything else frozen unless `othersTrain`.
    public func operators(over base: LinearOperators = .dense) throws -> LinearOperators {
        try validate()
        let names = Set(targets)
        var ops = base.replacing(where: { names.contains($0.name) }, with: kind)
        if method == .comera, let e = comeraSettings.embedding {
            ops = ops.withEmbedding(TensorTrainEmbedding.Kind(settings: e, threshold: comeraSettings.threshold))
        }
        return othersTrain ? ops : ops.freezingOthers()
    }
}

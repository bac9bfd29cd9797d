import Foundation
import SubspaceCore

/// The settings of the operators that replace a model's dense linear slots: adapters on a
/// frozen base (LoRA and ReLoRA) and, later in this type's life, the low-rank
/// parametrizations of pre-training. One type holds every method's defaults, with the
/// reasons, and the validation, so the command line, `run_config.json`, checkpoints and
/// the memory planner read the same values.
///
/// Defaults are PEFT's `LoraConfig` defaults, `r = 8` and `lora_alpha = 8`, so the scaling
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

        /// Whether the tensors outside the adapters train by default: not for LoRA (PEFT's
        /// fine-tuning default: only the adapters), yes for ReLoRA (the reference's
        /// `ReLoRaModel` freezes only the wrapped linear weights; embeddings, norms and the
        /// head train, as in pre-training).
        public var othersTrainByDefault: Bool { self == .relora }
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

    public static let defaultRank = 8
    public static let defaultAlpha: Float = 8

    public init(
        method: Method = .lora, rank: Int = AdapterSettings.defaultRank, alpha: Float = AdapterSettings.defaultAlpha,
        rsLoRA: Bool = false, targets: [String] = LlamaArchitecture.slotNames, trainOthers: Bool? = nil
    ) {
        self.method = method; self.rank = rank; self.alpha = alpha; self.rsLoRA = rsLoRA; self.targets = targets
        self.trainOthers = trainOthers
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
    }

    /// Refuses a rank above min(in, out) of a target slot of `config` (the factors would
    /// hold more parameters than the matrix they adapt, and the low-rank methods that take
    /// an SVD could not).
    public func validate(for config: LlamaConfig) throws {
        try validate()
        let names = Set(targets)
        for slot in LlamaArchitecture(config: config).slots(layer: 0) where names.contains(slot.name) {
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
        case .lora, .relora: return LoRALinear.Kind(rank: rank, scaling: scaling)
        }
    }

    /// `base`'s choices with every target slot of every layer replaced by the method's
    /// operator, and everything else frozen unless `othersTrain`.
    public func operators(over base: LinearOperators = .dense) throws -> LinearOperators {
        try validate()
        let names = Set(targets)
        let ops = base.replacing(where: { names.contains($0.name) }, with: kind)
        return othersTrain ? ops : ops.freezingOthers()
    }
}

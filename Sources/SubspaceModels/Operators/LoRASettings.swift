import Foundation
import SubspaceCore

/// The settings of a LoRA adapter (`LoRALinear`): rank, alpha, scaling rule and which slots
/// get one.
///
/// Defaults are PEFT's `LoraConfig` defaults, `r = 8` and `lora_alpha = 8`, so the scaling
/// is alpha / r = 1. Chosen over the alpha = 2r habit (alpha 16) because a run configured
/// with PEFT's defaults then means the same thing here, and because scaling 1 makes the
/// adapter's learning rate the optimizer's learning rate: with alpha tied to 2r the
/// effective step of B A doubles for a given lr, which is a silent change of
/// hyper-parameter, not a default. Targets default to all seven linear slots (PEFT's
/// `target_modules="all-linear"`, QLoRA's recommendation; PEFT's own LLaMA default is
/// `q_proj, v_proj` only, which `targets` selects).
public struct LoRASettings: Sendable, Equatable, Codable {
    /// The rank r of `lora_A` `[r, in]` and `lora_B` `[out, r]`.
    public var rank: Int
    /// `lora_alpha`: the adapter's output is scaled by alpha / r (alpha / sqrt(r) with rsLoRA).
    public var alpha: Float
    /// Rank-stabilised LoRA (Kalajdzievski 2023; PEFT's `use_rslora`): scale by
    /// alpha / sqrt(r), so that the update's size does not shrink as the rank grows.
    public var rsLoRA: Bool
    /// Slot names (`q_proj` ... `down_proj`, `LlamaArchitecture.slotNames`) that get an
    /// adapter, in every layer; the others stay dense and trainable.
    public var targets: [String]

    public static let defaultRank = 8
    public static let defaultAlpha: Float = 8

    public init(
        rank: Int = LoRASettings.defaultRank, alpha: Float = LoRASettings.defaultAlpha, rsLoRA: Bool = false,
        targets: [String] = LlamaArchitecture.slotNames
    ) {
        self.rank = rank; self.alpha = alpha; self.rsLoRA = rsLoRA; self.targets = targets
    }

    /// The factor s of `y = x W0^T + s (x A^T) B^T`: alpha / r, or alpha / sqrt(r) with rsLoRA.
    public var scaling: Float { rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }

    /// Refuses a rank below 1, an alpha that is not a finite positive number, and an empty,
    /// repeated or unknown target.
    public func validate() throws {
        guard rank >= 1 else { throw ConfigurationError("the LoRA rank must be at least 1 (got \(rank))") }
        guard alpha.isFinite, alpha > 0 else { throw ConfigurationError("the LoRA alpha must be a finite positive number (got \(alpha))") }
        guard !targets.isEmpty else { throw ConfigurationError("LoRA needs at least one target slot (\(LlamaArchitecture.slotNames.joined(separator: ", ")))") }
        for t in targets where !LlamaArchitecture.slotNames.contains(t) {
            throw ConfigurationError("unknown LoRA target '\(t)': the linear slots are \(LlamaArchitecture.slotNames.joined(separator: ", "))")
        }
        guard Set(targets).count == targets.count else { throw ConfigurationError("a LoRA target is named twice: \(targets.joined(separator: ","))") }
    }

    /// `base`'s choices with every target slot of every layer replaced by a LoRA operator.
    public func operators(over base: LinearOperators = .dense) throws -> LinearOperators {
        try validate()
        let names = Set(targets)
        return base.replacing(where: { names.contains($0.name) }, with: LoRALinear.Kind(rank: rank, scaling: scaling))
    }
}

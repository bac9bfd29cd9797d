import SubspaceCore
import SubspaceModels

/// Resetting an optimizer's state for some parameters in the middle of a run: what ReLoRA
/// does after each merge-and-restart and what Glentis et al.'s momentum reset does after a
/// weight refactorization.
///
/// - ReLoRA (Lialin et al. 2023; `Guitaricet/relora`, `peft_pretraining/training_utils.py`,
///   `optimizer_reset`): after merging the factors into the base and re-initialising them,
///   the factors' Adam moments describe a function that no longer exists. The reference
///   prunes them: `random_pruning_` zeroes each entry of `exp_avg` and `exp_avg_sq` with
///   probability p (its "reset" is p = 0.999, not exact zeroing), `magnitude_pruning_`
///   zeroes the entries below the per-tensor p-quantile of |value|. Adam's step counter is
///   kept, so bias correction is about 1 afterwards; the jagged learning-rate re-warm-up
///   exists for that reason.
/// - Glentis et al. 2025 (`OptimAI-Lab/Memory_Efficient_Pretraining`,
///   `torchrun_main_DDP.py`): the optimizer is rebuilt after each refactorization, so every
///   moment and the step counter start again (`.rebuild`).
///
/// The reset works on any rule through `exportState`/`importState`, so every optimizer the
/// registry builds (AdamW, 8-bit Adam, GaLore's projected Adam, Muon, ...) is reset the same
/// way: the tensors under `momentKeys` are zeroed or pruned, everything else (step counts,
/// projectors, supports) is kept. bitsandbytes-style 8-bit moments (`state1`, `state2`:
/// one code per entry) are pruned by setting codes to the map's code for 0, which is exact;
/// magnitude pruning of them is refused (the magnitude needs the block layout, which only
/// the rule knows).
public enum OptimizerStateReset: Codable, Equatable, Sendable, CustomStringConvertible {
    /// Drop the state: the next step starts as the first (step counter included).
    case rebuild
    /// Zero every moment; step counters and projectors stay.
    case zero
    /// Zero each moment entry independently with probability `fraction` (ReLoRA's
    /// `optimizer_random_pruning`).
    case randomPrune(fraction: Float)
    /// Zero the moment entries whose magnitude is below the per-tensor `fraction`-quantile
    /// (ReLoRA's `optimizer_magnitude_pruning`).
    case magnitudePrune(fraction: Float)

    /// The state keys that hold moments (PyTorch's names where the rule has a twin).
    public static let momentKeys: Set<String> = [
        "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_rows",
        "exp_avg_cols", "momentum_u", "momentum_v", "momentum_s",
    ]

    /// The command line's form (`argument`).
    public var description: String { argument }

    /// Parses the command line's form: `rebuild`, `zero`, `random:F` or `magnitude:F`
    /// (F the fraction of moment entries zeroed, in [0, 1]).
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let how = "rebuild, zero, random:F or magnitude:F (F between 0 and 1)"
        switch (parts.first ?? "", parts.count) {
        case ("rebuild", 1): self = .rebuild
        case ("zero", 1): self = .zero
        case ("random", 2), ("magnitude", 2):
            guard let f = Float(parts[1]) else { throw ConfigurationError("optimizer reset '\(text)': '\(parts[1])' is not a number; use \(how)") }
            self = parts[0] == "random" ? .randomPrune(fraction: f) : .magnitudePrune(fraction: f)
        default: throw ConfigurationError("unknown optimizer reset '\(text)'; use \(how)")
        }
        try validate()
    }

    /// The command line's form (`init(parsing:)` reads it back).
    public var argument: String {
        switch self {
        case .rebuild: return "rebuild"
        case .zero: return "zero"
        case .randomPrune(let f): return "random:\(f)"
        case .magnitudePrune(let f): return "magnitude:\(f)"
        }
    }

    /// Refuses a pruning fraction outside [0, 1].
    public func validate() throws {
        switch self {
        case .rebuild, .zero: return
        case .randomPrune(let f), .magnitudePrune(let f):
            guard f.isFinite, f >= 0, f <= 1 else {
                throw ConfigurationError("an optimizer pruning fraction must be between 0 and 1 (got \(f))")
            }
        }
    }

    /// 8-bit moment codes (`AdamMomentStorage`'s keys) and the code that stands for 0.
    static let codeKeys: [String: Float] = [
        "state1": Float(DynamicQuantizationMap.signed.zeroCode), "state2": Float(DynamicQuantizationMap.unsigned.zeroCode),
    ]

    /// Applies the reset to one moment tensor in place; `zero` is the value that stands for
    /// 0 (the zero code of an 8-bit tensor).
    func apply(to t: Tensor, rng: inout RandomStream, zero: Float = 0) {
        switch self {
        case .rebuild, .zero: t.data.update(repeating: zero, count: t.count)
        case .randomPrune(let p):
            for i in 0..<t.count where rng.uniform() < p { t.data[i] = zero }
        case .magnitudePrune(let p):
            guard t.count > 0 else { return }
            let threshold = Self.quantile(of: t, p)
            for i in 0..<t.count where abs(t.data[i]) < threshold { t.data[i] = 0 }
        }
    }

    /// The p-quantile of |t| with linear interpolation between order statistics, as
    /// `torch.quantile` (its default `interpolation="linear"`).
    static func quantile(of t: Tensor, _ p: Float) -> Float {
        var a = (0..<t.count).map { abs(t.data[$0]) }
        a.sort()
        let pos = Double(p) * Double(a.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, a.count - 1)
        let w = Float(pos - Double(lo))
        return a[lo] + (a[hi] - a[lo]) * w
    }
}

extension RoutedOptimizer {
    /// Resets the state each rule keeps for `parameters` (see `OptimizerStateReset`).
    /// Parameters that have not been stepped are left alone. Random pruning draws from
    /// `RandomStream(seed).split(name + key)`, so a reset is reproducible and independent of
    /// the order of parameters.
    /// - Throws: what a rule's `importState` throws for the modified state (it never should:
    ///   the tensors keep their keys and shapes).
    public func reset(_ parameters: [Parameter], _ how: OptimizerStateReset, seed: UInt64) throws {
        try how.validate()
        let root = RandomStream(seed: seed)
        for p in parameters {
            let rule = optimizer(for: p)
            if how == .rebuild {
                try rule.importState([:], for: p)
                continue
            }
            let state = rule.exportState(for: p)
            if state.isEmpty { continue }
            var out: [String: Tensor] = [:]
            for (key, t) in state {
                // Exported tensors may share storage with the live state: work on a copy.
                let c = t.copy()
                var rng = root.split(p.name + "/" + key)
                if OptimizerStateReset.momentKeys.contains(key) {
                    how.apply(to: c, rng: &rng)
                } else if let zero = OptimizerStateReset.codeKeys[key] {
                    if case .magnitudePrune = how {
                        throw ConfigurationError(
                            "magnitude pruning needs float optimizer moments; \(rule.name) keeps 8-bit ones: use random pruning or zeroing")
                    }
                    how.apply(to: c, rng: &rng, zero: zero)
                }
                out[key] = c
            }
            try rule.importState(out, for: p)
        }
    }
}

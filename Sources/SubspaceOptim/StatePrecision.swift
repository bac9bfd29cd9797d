import SubspaceCore
import SubspaceModels

/// The element type of an optimizer's moment buffers (`--state-precision`).
///
/// - `fp32` (the default): float32 moments, the precision of every parity test with the
///   reference implementations.
/// - `bf16`: the Adam-family moments (AdamW's m and v, the projected moments of GaLore and
///   Fira) stored as bfloat16, half the bytes, as GaLore's own C4 runs keep them (Zhao et
///   al., ICML 2024: the model and, with it, `torch.optim`'s states in bf16). The update
///   itself is float32: each element's m and v are widened, advanced and used for the step
///   in float32 exactly as in `fp32`, and only the stored moments are rounded to nearest
///   even, so one step equals the float32 step followed by rounding m and v. PyTorch's AdamW
///   over bf16 states rounds after every operation instead (its arithmetic is in the states'
///   dtype); rounding once keeps more of the update and makes the rule a function of the
///   float32 one, which is what the tests check. Master weights stay float32.
///
/// Rules whose state is not plain Adam moments (8-bit blocks, factored second moments,
/// momentum-only rules, projected factors) refuse `bf16` in one line
/// (`StatePrecisionAdjustable`, `RoutedOptimizer.useStatePrecision`).
public enum StatePrecision: String, Codable, CaseIterable, Sendable {
    case fp32, bf16

    /// Bytes per stored moment element.
    public var bytesPerElement: Int { self == .fp32 ? 4 : 2 }

    /// Parses `fp32`/`float32` or `bf16`/`bfloat16`.
    public init(parsing text: String) throws {
        switch text.lowercased() {
        case "fp32", "float32": self = .fp32
        case "bf16", "bfloat16": self = .bf16
        default: throw ConfigurationError("state precision must be fp32 or bf16, got '\(text)'")
        }
    }
}

/// A rule that can keep its moments in bfloat16 (`StatePrecision`).
public protocol StatePrecisionAdjustable: ParameterOptimizer {
    var statePrecision: StatePrecision { get }
    /// Switches the precision of states made from now on (call it before the first step).
    /// - Throws: `ConfigurationError` in one line when this configuration of the rule has no
    ///   such states (8-bit moments, amsgrad).
    func useStatePrecision(_ precision: StatePrecision) throws
    /// `exportState(for:)` with bf16 moments handed over as their live storage instead of
    /// widened copies, so a checkpoint writes them without doubling the states' memory.
    func exportStateKeepingBF16(for parameter: Parameter) -> (tensors: [String: Tensor], bf16: [String: BFloat16Tensor])
}

extension RoutedOptimizer {
    /// The rules that take `--state-precision bf16`, for messages.
    public static let bf16StateRules = "adamw, galore and fira"

    /// Sets every rule's state precision. `fp32` changes nothing; `bf16` needs every rule to
    /// be `StatePrecisionAdjustable`, and otherwise throws one line naming the rule.
    public func useStatePrecision(_ precision: StatePrecision) throws {
        guard precision != .fp32 else { return }
        for rule in optimizers {
            guard let r = rule as? StatePrecisionAdjustable else {
                throw ConfigurationError(
                    "--state-precision \(precision.rawValue) is not available for '\(rule.name)' (its states are not Adam moments); it applies to \(Self.bf16StateRules)")
            }
            try r.useStatePrecision(precision)
        }
    }

    /// The state precision of the rules, fp32 unless every rule keeps bf16 moments (the
    /// value `useStatePrecision` set).
    public var statePrecision: StatePrecision {
        let all = optimizers.map { ($0 as? StatePrecisionAdjustable)?.statePrecision ?? .fp32 }
        return all.allSatisfy { $0 == .bf16 } ? .bf16 : .fp32
    }
}

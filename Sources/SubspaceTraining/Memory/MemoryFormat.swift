import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// The element type the planner prices weights, gradients, activations and projectors in.
///
/// This engine trains in float32. `bf16` is the convention of GaLore's memory estimates (its
/// C4 runs cast the whole model to bfloat16 with no float32 master copy), so the planner can
/// be compared with them; it halves every tensor.
public enum MemoryDType: String, CaseIterable, Codable, Sendable {
    case fp32, bf16

    public var bytesPerElement: Int { self == .fp32 ? 4 : 2 }

    /// Parses `fp32`/`float32` or `bf16`/`bfloat16`.
    public init(parsing text: String) throws {
        switch text.lowercased() {
        case "fp32", "float32", "f32": self = .fp32
        case "bf16", "bfloat16": self = .bf16
        default: throw ConfigurationError("dtype must be fp32 or bf16, got '\(text)'")
        }
    }
}

/// How the planner stores the optimizer's float state tensors (moments, factors, momentum
/// buffers).
///
/// - `full`: in the planner's dtype (4 bytes per element in fp32, 2 in bf16).
/// - `blockwise8Bit`: bitsandbytes' 8-bit optimizers (Dettmers et al., "8-bit Optimizers via
///   Block-wise Quantization", ICLR 2022), the states of GaLore's 8-bit runs, priced by the
///   engine's own 8-bit state types (`StateFootprint.Storage.blockwise8Bit`, i.e.
///   `QuantizedState.byteCount`): one byte per element plus one float32 absmax per block of
///   256, and float32 for tensors under bitsandbytes' `min_8bit_size` of 4096 elements,
///   whatever the dtype. The 256-entry quantization maps are shared and not counted.
///
/// Tensors a rule already stores quantized (an 8-bit optimizer's moments, Q-GaLore's INT4
/// projector) keep their own size under either choice.
public enum StateStorage: Equatable, Sendable {
    case full
    case blockwise8Bit(StateQuantization)

    /// bitsandbytes' defaults: blocks of 256, tensors of at least 4096 elements.
    public static let bitsandbytes8Bit = StateStorage.blockwise8Bit(try! StateQuantization())

    /// `--state-bits`: 32 keeps full states, 8 is bitsandbytes' block-wise 8-bit.
    public init(bits: Int) throws {
        switch bits {
        case 32: self = .full
        case 8: self = .bitsandbytes8Bit
        default: throw ConfigurationError("state bits must be 32 or 8, got \(bits)")
        }
    }

    /// Bytes of one state tensor when the planner's dtype is `dtype`.
    public func bytes(_ entry: StateFootprint.Entry, dtype: MemoryDType) -> Int {
        guard entry.storage == .float else { return entry.bytes }
        switch self {
        case .full: return entry.elements * dtype.bytesPerElement
        case .blockwise8Bit(let q): return StateFootprint.Storage.blockwise8Bit(q).bytes(elements: entry.elements)
        }
    }
}

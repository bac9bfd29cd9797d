import SubspaceCore
import SubspaceModels

/// How 8-bit optimizer states are laid out: bitsandbytes' block-wise scheme (Dettmers et
/// al., ICLR 2022) with its optimizer defaults.
///
/// - `blockSize` 256: the block size of bitsandbytes' 8-bit block-wise optimizers
///   (`Optimizer2State.init_state`, and its CPU and CUDA kernels). The paper's experiments
///   use 2048; `--block-size 2048` gives that.
/// - `minimumSize` 4096: bitsandbytes' `min_8bit_size`. A state tensor with fewer elements
///   stays float32 (norm gains, biases and small projected moments), where 8 bits would save
///   little and cost accuracy. For GaLore-style methods the count is that of the projected
///   moment, as in galore-torch's `GaLoreAdamW8bit`, which hands bitsandbytes the projected
///   gradient.
public struct StateQuantization: Equatable, Sendable {
    public var blockSize: Int
    public var minimumSize: Int

    /// - Throws: `ConfigurationError` for a block size outside 2...1,048,576 or a negative
    ///   minimum size.
    public init(blockSize: Int = 256, minimumSize: Int = 4096) throws {
        guard blockSize >= 2, blockSize <= 1 << 20 else {
            throw ConfigurationError("8-bit block size must be in 2...1048576, got \(blockSize)")
        }
        guard minimumSize >= 0 else {
            throw ConfigurationError("minimum size for 8-bit states must be non-negative, got \(minimumSize)")
        }
        self.blockSize = blockSize
        self.minimumSize = minimumSize
    }

    /// Whether a state of `elements` elements is stored in 8 bits.
    public func quantizes(_ elements: Int) -> Bool { elements >= minimumSize }
}

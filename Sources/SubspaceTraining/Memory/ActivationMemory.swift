import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// Activation memory of one step, from `LlamaArchitecture.activationBytes`, the byte count
/// of the buffers `LlamaModel` really allocates (tested against them), by step rule:
///
/// - **backprop**: the training arena, every layer's saved tensors plus backward scratch;
/// - **forward only** (`StepRuleMemory.forwardOnly`; eval and sampling too): the inference
///   arena, one layer's buffers reused by every layer and no backward scratch, so it does
///   not grow with depth.
///
/// The training figure is affine in the layer count: L·(one layer's saved tensors) + buffers
/// that exist once (final norm, one logits chunk, backward scratch). The planner reads both
/// parts off it (the difference between one layer and none, and the zero-layer value) rather
/// than restating it.
///
/// **Activation checkpointing** (Chen et al., 2016, "Training Deep Nets with Sublinear Memory
/// Cost", at decoder-layer granularity as transformers' `gradient_checkpointing_enable`):
/// only each layer's input (N x D) is kept through the forward pass, and backward recomputes
/// one layer at a time, so the resident set is every layer's input plus one layer's full
/// working set plus the once-only buffers:
///
///     shared + perLayer + (L - 1)·N·D·bytes
///
/// The engine does not implement checkpointing; this prices what it would hold (backprop
/// only: a forward-only rule keeps nothing to checkpoint).
public enum ActivationMemory {
    /// One layer's saved tensors and the once-only buffers of the training arena, in float32
    /// bytes.
    public static func parts(config c: LlamaConfig, batch: Int, seq: Int) -> (perLayer: Int, shared: Int) {
        var none = c, one = c
        none.layers = 0
        one.layers = 1
        let shared = LlamaActivations.bytes(config: none, batch: batch, seq: seq)
        return (LlamaActivations.bytes(config: one, batch: batch, seq: seq) - shared, shared)
    }

    /// Bytes of activations for a step of `batch` x `seq` tokens under `rule`, priced in
    /// `dtype`, for the dense model of `c`.
    public static func bytes(
        config c: LlamaConfig, batch: Int, seq: Int, checkpointing: Bool = false, dtype: MemoryDType = .fp32,
        rule: StepRuleMemory = .backprop, precision: MatmulPrecision = .fp32
    ) -> Int {
        bytes(architecture: LlamaArchitecture(config: c), batch: batch, seq: seq, checkpointing: checkpointing, dtype: dtype, rule: rule,
              precision: precision)
    }

    /// Bytes of activations for a step of `batch` x `seq` tokens of the model `architecture`
    /// describes (its slot operators' own activations included), under `rule`, in `dtype`;
    /// `precision` sets the logits chunk (`LlamaArchitecture.logitChunkElements`).
    public static func bytes(
        architecture a: LlamaArchitecture, batch: Int, seq: Int, checkpointing: Bool = false, dtype: MemoryDType = .fp32,
        rule: StepRuleMemory = .backprop, precision: MatmulPrecision = .fp32
    ) -> Int {
        let c = a.config
        let float32: Int
        if rule == .backprop && checkpointing {
            let (perLayer, shared) = parts(config: c, batch: batch, seq: seq)
            let layerInput = 4 * batch * seq * c.dim
            let operators = a.activationBytes(batch: batch, seq: seq, mode: .training, precision: precision)
                - a.arenaBytes(batch: batch, seq: seq, mode: .training, precision: precision)
            float32 = shared + perLayer + max(0, c.layers - 1) * layerInput + operators
        } else {
            float32 = a.activationBytes(batch: batch, seq: seq, mode: rule.activationMode, precision: precision)
        }
        return float32 / 4 * dtype.bytesPerElement
    }
}

/// Activation memory of one training step, from `LlamaActivations.bytes(config:batch:seq:)`,
/// the byte formula of the buffers `LlamaModel` really allocates (tested against them).
///
/// That formula is affine in the layer count: L·(one layer's saved tensors) + buffers that
/// exist once (final norm, one logits chunk, backward scratch). The planner reads both parts
/// off it (the difference between one layer and none, and the zero-layer value) rather than
/// restating it.
///
/// **Activation checkpointing** (Chen et al., 2016, "Training Deep Nets with Sublinear Memory
/// Cost", at decoder-layer granularity as transformers' `gradient_checkpointing_enable`):
/// only each layer's input (N x D) is kept through the forward pass, and backward recomputes
/// one layer at a time, so the resident set is every layer's input plus one layer's full
/// working set plus the once-only buffers:
///
///     shared + perLayer + (L - 1)·N·D·bytes
///
/// The engine does not implement checkpointing; this prices what it would hold.
public enum ActivationMemory {
    /// One layer's saved tensors and the once-only buffers, in float32 bytes.
    public static func parts(config c: LlamaConfig, batch: Int, seq: Int) -> (perLayer: Int, shared: Int) {
        var none = c, one = c
        none.layers = 0
        one.layers = 1
        let shared = LlamaActivations.bytes(config: none, batch: batch, seq: seq)
        return (LlamaActivations.bytes(config: one, batch: batch, seq: seq) - shared, shared)
    }

    /// Bytes of activations for a step of `batch` x `seq` tokens, priced in `dtype`.
    public static func bytes(
        config c: LlamaConfig, batch: Int, seq: Int, checkpointing: Bool = false, dtype: MemoryDType = .fp32
    ) -> Int {
        let float32: Int
        if checkpointing {
            let (perLayer, shared) = parts(config: c, batch: batch, seq: seq)
            let layerInput = 4 * batch * seq * c.dim
            float32 = shared + perLayer + max(0, c.layers - 1) * layerInput
        } else {
            float32 = LlamaActivations.bytes(config: c, batch: batch, seq: seq)
        }
        return float32 / 4 * dtype.bytesPerElement
    }
}

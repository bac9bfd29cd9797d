extension LlamaConfig {
    /// Every trainable tensor of the `LlamaModel` this configuration builds, by name, role
    /// and shape, in Hugging Face's `named_parameters()` order, without allocating anything:
    /// the embedding, per layer the q, k, v, o projections, gate, up and down, and the two
    /// RMSNorm gains, then the final norm and (untied) the LM head. `MemoryPlanTests` checks
    /// it against a built model's `parameters`.
    public var parameterSpecs: [ParameterSpec] {
        let d = dim, hd = headDim
        var specs = [ParameterSpec(name: "model.embed_tokens.weight", role: .embedding, shape: [vocab, d])]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            specs += [
                ParameterSpec(name: p + "self_attn.q_proj.weight", role: .attention, shape: [heads * hd, d]),
                ParameterSpec(name: p + "self_attn.k_proj.weight", role: .attention, shape: [kvHeads * hd, d]),
                ParameterSpec(name: p + "self_attn.v_proj.weight", role: .attention, shape: [kvHeads * hd, d]),
                ParameterSpec(name: p + "self_attn.o_proj.weight", role: .attention, shape: [d, heads * hd]),
                ParameterSpec(name: p + "mlp.gate_proj.weight", role: .mlp, shape: [ffnDim, d]),
                ParameterSpec(name: p + "mlp.up_proj.weight", role: .mlp, shape: [ffnDim, d]),
                ParameterSpec(name: p + "mlp.down_proj.weight", role: .mlp, shape: [d, ffnDim]),
                ParameterSpec(name: p + "input_layernorm.weight", role: .norm, shape: [d]),
                ParameterSpec(name: p + "post_attention_layernorm.weight", role: .norm, shape: [d]),
            ]
        }
        specs.append(ParameterSpec(name: "model.norm.weight", role: .norm, shape: [d]))
        if !tiedEmbeddings { specs.append(ParameterSpec(name: "lm_head.weight", role: .head, shape: [vocab, d])) }
        return specs
    }
}

import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

extension LlamaConfig {
    /// Every trainable tensor of the dense `LlamaModel` this configuration builds, by name,
    /// role and shape, in Hugging Face's `named_parameters()` order, without allocating
    /// anything: the embedding, per layer the q, k, v, o projections, gate, up and down, and
    /// the two RMSNorm gains, then the final norm and (untied) the LM head. It is
    /// `LlamaArchitecture(config:).parameterSpecs`, the walk the model itself is built from;
    /// `MemoryPlanTests` checks it against a built model's `parameters`.
    public var parameterSpecs: [ParameterSpec] { LlamaArchitecture(config: self).parameterSpecs }
}

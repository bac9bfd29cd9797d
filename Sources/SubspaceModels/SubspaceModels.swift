// SubspaceModels: Layers with explicit forward and backward passes (checked by finite differences), the operators that fill a block's linear slots, and the LLaMA decoder described once by `LlamaArchitecture`. New parametrizations of a linear slot (adapters, factorised or tensor-train layers) are operators here.
//
// May depend on: SubspaceCore. Nothing here may import a layer listed after it in Package.swift.

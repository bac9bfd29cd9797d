// The library users import. `import Subspace` brings the mainline layers, each its own
// module so the package's layout is the architecture's map (see Package.swift):
//
// - SubspaceCore: tensors, BLAS and LAPACK behind one wrapper, random streams, the errors
//   every layer throws, durable files, safetensors.
// - SubspaceModels: layers (forward and backward), linear-slot operators, the LLaMA model.
// - SubspaceData: tokenizers, corpora, token files and batches.
// - SubspaceOptim: the per-parameter optimizer interface, each method's rule and settings.
// - SubspaceTraining: memory planning, checkpoints, step rules, the training run, metrics.
//
// The method-comparison suite (SubspaceBench) and methods on probation
// (SubspaceExperimental) are imported by name.
@_exported import SubspaceCore
@_exported import SubspaceData
@_exported import SubspaceModels
@_exported import SubspaceOptim
@_exported import SubspaceTraining

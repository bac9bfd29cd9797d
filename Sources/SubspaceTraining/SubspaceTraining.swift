// SubspaceTraining: What a run is made of: the memory planner, checkpoints, step rules (backprop today, forward-only rules next), the training run with its run directory, resource checks and metrics.
//
// May depend on: SubspaceCore, SubspaceModels, SubspaceData, SubspaceOptim. Nothing here may import a layer listed after it in Package.swift.

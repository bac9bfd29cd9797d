// SubspaceOptim: The per-parameter optimizer interface with typed state, routing by name and role, each method's update rule and its settings type (defaults, reasons, validation), learning-rate schedules and clipping.
//
// May depend on: SubspaceCore, SubspaceModels (for `Parameter` and its roles). Nothing here may import a layer listed after it in Package.swift.

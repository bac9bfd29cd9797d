import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// Methods on probation, kept apart from the mainline as torchtitan keeps its
/// `experiments/`: a method lands here first, with its tests, and moves into
/// `SubspaceOptim`, `SubspaceModels` (operators) or `SubspaceTraining` (step rules) once its
/// update rule is the published one, a test proves it, and a benchmark shows what it costs.
///
/// Nothing in the mainline may import this module. Its rules: one method per folder, its
/// defaults in one settings type, its differences from the reference documented, and no
/// edits to mainline files.
public enum Experimental {
    /// The methods this module offers, by name: `nano-egg`, int8 EGGROLL pre-training of a
    /// byte-level recurrent model (`NanoEgg/`, `subspace nano-egg`), a model and trainer of
    /// its own rather than an optimizer of the LLaMA engine.
    public static let methods: [String] = ["nano-egg"]
}

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
    /// The methods this module offers, by registry name. Empty: every method built so far has
    /// earned the mainline.
    public static let methods: [String] = []
}

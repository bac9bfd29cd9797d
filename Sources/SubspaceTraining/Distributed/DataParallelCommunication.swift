import SubspaceCore
import SubspaceOptim

/// What data-parallel ranks all-reduce each step (`--dp-communication`, `run_config.json`'s
/// `dpCommunication`; nil there is `automatic`).
///
/// - `full`: every gradient, whole (every method);
/// - `projected`: the projecting rules (`GradientProjecting`: GaLore, GaLore-8bit,
///   GaLore-Adafactor, ProjFactor)
///   send R = Pᵀ G between refreshes (GaLore's SVD refreshes send G once and broadcast P);
///   every other parameter its whole gradient. Exact, because those rules read G only through
///   R and the mean of the ranks' R is the R of the mean gradient.
///
/// **Default** (`automatic`): `projected` where it is exact, `full` otherwise. Exact needs a
/// projecting rule, no clipping (the clip scales by the norm of the whole mean gradient,
/// which R does not carry: ||Pᵀ G|| <= ||G||, and the other ranks' G never arrives) and no
/// objective that adjusts gradients (CoMERA's rank penalty). `train` clips at 1.0 by
/// default, so GaLore runs need `--clip 0` (galore-torch's C4 scripts do not clip either)
/// for the projected mode; asking for `projected` where it is not exact is refused in one line
/// rather than silently changing the algorithm. Fira (its residual), GUM (full-rank layers),
/// Q-GaLore (its lazy refresh compares projectors from G) and Flora (Adafactor's second moment
/// of G) read the whole gradient: they stay `full`.
public enum DataParallelCommunication: String, Codable, Sendable, CaseIterable {
    case full
    case projected
    /// Resolved at start: `projected` where exact, else `full`.
    case automatic = "auto"

    public init(parsing text: String) throws {
        guard let v = Self(rawValue: text.lowercased()) else {
            throw ConfigurationError("unknown --dp-communication '\(text)'; choose from full, projected, auto")
        }
        self = v
    }

    /// The mode a run uses: `projected` or `full`. Throws, in one line, for `projected` where
    /// it is not exact.
    /// - Parameters:
    ///   - optimizer: the run's built optimizer;
    ///   - clip: the clip norm (0: off);
    ///   - adjustsGradients: whether an objective term adjusts gradients (CoMERA).
    public func resolved(optimizer: RoutedOptimizer, name: String, clip: Float, adjustsGradients: Bool) throws -> Self {
        let why: String?
        if !optimizer.projectsGradients {
            why = "--optimizer \(name) reads whole gradients (projected: galore, galore8bit, galore-adafactor, projfactor)"
        } else if clip > 0 {
            why = "clipping reads the whole gradient's norm; add --clip 0"
        } else if adjustsGradients {
            why = "the objective's rank penalty adjusts whole gradients"
        } else {
            why = nil
        }
        switch self {
        case .full: return .full
        case .automatic: return why == nil ? .projected : .full
        case .projected:
            if let why { throw ConfigurationError("--dp-communication projected is not exact here: \(why); or use --dp-communication full") }
            return .projected
        }
    }
}

import SubspaceCore
import SubspaceModels

/// What one parameter's gradient needs to travel between data-parallel ranks at a step.
public enum GradientPayload: Equatable, Sendable {
    /// The whole gradient (every rule; the SVD-projected rules on a refresh step too).
    case full
    /// Only the projected gradient R, of this shape: the rule steps from the ranks' mean R
    /// (`GradientProjecting.update(_:projectedGradient:lrScale:)`).
    case projected([Int])
    /// The whole gradient, and then a new basis P of this shape: the SVD projector refreshes
    /// this step. One rank computes P from the mean gradient and broadcasts it
    /// (`refreshBasis`, `installBasis`), so P stays bit-identical on every rank.
    case refresh(basisShape: [Int])
}

/// The shapes a projecting rule sends for a parameter, from its description alone (what
/// the communication plan prices; nil: the full gradient every step).
public struct ProjectedShapes: Equatable, Sendable {
    /// R, all-reduced on the steps between refreshes.
    public var projected: [Int]
    /// P, broadcast on a refresh step; nil for the seeded projections (every rank draws P
    /// from the shared seed, so a refresh step sends R like any other).
    public var basis: [Int]?
    /// Steps between refreshes (T).
    public var updateGap: Int
    public init(projected: [Int], basis: [Int]?, updateGap: Int) {
        self.projected = projected; self.basis = basis; self.updateGap = updateGap
    }
}

/// A rule whose step reads the gradient only through a linear projection R = Pᵀ G (or G Pᵀ),
/// so that data-parallel ranks can all-reduce R instead of G (Zhao et al., ICML 2024, GaLore:
/// r/min(m, n) of the bytes for an m x n matrix).
///
/// **Why it is exact.** With the same P on every rank, mean_k(Pᵀ G_k) = Pᵀ mean_k(G_k): the
/// rule sees the R one process would compute from the global batch's gradient (up to the
/// rounding of the summation order). Two things must hold: P is the same everywhere, and
/// nothing else reads G. So:
/// - the SVD projectors (GaLore, GaLore-8bit, GaLore-Adafactor) need the full mean G on a refresh step
///   (`.refresh`): one rank computes the basis and broadcasts it; between refreshes they
///   take `.projected`;
/// - the seeded projectors (ProjFactor) draw P from (seed, name, step / T) on every rank
///   and take `.projected` on every step;
/// - rules that read G outside the subspace keep `.full` and do not conform: Fira (its
///   residual G - P R is scaled and applied every step), GUM (full-rank steps for a random
///   subset of layers), Q-GaLore (its lazy refresh compares consecutive projectors computed
///   from G) and Flora (its Adafactor second moment sums G² over the whole gradient, and only
///   its momentum is compressed);
/// - clipping reads the norm of the whole gradient, which the projected R does not give:
///   the trainer uses the projected payload only without clipping.
///
/// Call order per parameter and step (the trainer's `GradientReducer`): `payload`, then for
/// `.projected` `projectGradient` on the local gradient, the all-reduce of R (mean), and
/// `update(_:projectedGradient:lrScale:)`; for `.refresh`, the all-reduce of G (mean),
/// `refreshBasis` on one rank, its broadcast, `installBasis` on every rank, then the usual
/// `update(_:gradient:lrScale:)`.
public protocol GradientProjecting: ParameterOptimizer {
    /// The shapes sent for a parameter like `parameter` (nil: the full gradient).
    func projectedShapes(for parameter: some ParameterInfo) -> ProjectedShapes?
    /// What `parameter`'s coming step needs, from its state (its step count and projector).
    func payload(for parameter: Parameter) -> GradientPayload
    /// R of the coming step for this rank's gradient `gradient` (for a rule that
    /// accumulates micro-batches in projected form, the pending sum is folded in and cleared).
    func projectGradient(_ parameter: Parameter, gradient: Tensor) -> Tensor
    /// The step from the ranks' mean R (`payload` said `.projected`).
    func update(_ parameter: Parameter, projectedGradient: Tensor, lrScale: Float)
    /// The basis P the coming step's refresh would compute from `gradient` (the ranks' mean
    /// gradient), to be broadcast; the state is not changed.
    func refreshBasis(_ parameter: Parameter, gradient: Tensor) -> Tensor
    /// Leaves `basis` (a broadcast `refreshBasis`) for the coming step's refresh to take.
    func installBasis(_ parameter: Parameter, _ basis: Tensor)
}

extension RoutedOptimizer {
    /// The rule that can take `parameter`'s gradient in projected form, if any.
    public func projectingRule(for parameter: some ParameterInfo) -> GradientProjecting? {
        guard let r = optimizer(for: parameter) as? GradientProjecting, r.projectedShapes(for: parameter) != nil else { return nil }
        return r
    }

    /// Whether some rule of this optimizer projects the gradients it reads.
    public var projectsGradients: Bool { optimizers.contains { $0 is GradientProjecting } }
}

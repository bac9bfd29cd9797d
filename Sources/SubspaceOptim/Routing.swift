import SubspaceCore
import SubspaceModels

/// Chooses parameters by name, role and shape. Predicates see a `ParameterInfo`, so a
/// selector routes a bare `ParameterSpec` (the memory planner's) exactly as it routes the
/// live `Parameter`.
public struct ParameterSelector: Sendable, CustomStringConvertible {
    public let description: String
    let predicate: @Sendable (any ParameterInfo) -> Bool

    public init(_ description: String, _ predicate: @escaping @Sendable (any ParameterInfo) -> Bool) {
        self.description = description
        self.predicate = predicate
    }

    public func matches(_ p: some ParameterInfo) -> Bool { predicate(p) }

    /// Every parameter.
    public static let all = ParameterSelector("all") { _ in true }
    /// Parameters with one of `roles`.
    public static func roles(_ roles: Set<ParameterRole>) -> ParameterSelector {
        ParameterSelector("roles \(roles.map(\.rawValue).sorted())") { roles.contains($0.role) }
    }
    /// 2-D attention and MLP weights: what GaLore, Fira, Muon and friends take by default
    /// (the references select linear layers whose module name contains "attn" or "mlp").
    public static let hiddenMatrices = ParameterSelector("attention and mlp matrices") {
        ($0.role == .attention || $0.role == .mlp) && $0.shape.count == 2
    }
    /// Parameters whose name contains `fragment`.
    public static func nameContains(_ fragment: String) -> ParameterSelector {
        ParameterSelector("name contains \(fragment)") { $0.name.contains(fragment) }
    }
}

/// Sends each parameter to the first rule whose selector matches it, else to `fallback`.
///
/// This is the optimizer the trainer holds. Each rule is its own parameter group with its own
/// hyperparameters; the schedule scales all groups alike.
public final class RoutedOptimizer {
    public struct Route {
        public let selector: ParameterSelector
        public let optimizer: ParameterOptimizer
        public init(_ selector: ParameterSelector, _ optimizer: ParameterOptimizer) {
            self.selector = selector; self.optimizer = optimizer
        }
    }
    public let routes: [Route]
    public let fallback: ParameterOptimizer

    public init(routes: [Route] = [], fallback: ParameterOptimizer) {
        self.routes = routes
        self.fallback = fallback
    }

    /// The rule that owns `parameter` (a live `Parameter` or a `ParameterSpec`).
    public func optimizer(for parameter: some ParameterInfo) -> ParameterOptimizer {
        routes.first { $0.selector.matches(parameter) }?.optimizer ?? fallback
    }

    /// Every distinct rule, routes first.
    public var optimizers: [ParameterOptimizer] {
        var seen: [ObjectIdentifier] = []
        var out: [ParameterOptimizer] = []
        for o in routes.map(\.optimizer) + [fallback] where !seen.contains(ObjectIdentifier(o)) {
            seen.append(ObjectIdentifier(o)); out.append(o)
        }
        return out
    }

    /// Steps one parameter with its resident gradient (no-op without one).
    public func update(_ parameter: Parameter, lrScale: Float) {
        guard let g = parameter.grad else { return }
        optimizer(for: parameter).update(parameter, gradient: g, lrScale: lrScale)
    }

    /// Steps every parameter that has a gradient; rules that are `StepPreparing` first see
    /// all of theirs.
    public func step(_ parameters: [Parameter], lrScale: Float) {
        for rule in optimizers {
            guard let preparing = rule as? StepPreparing else { continue }
            let mine = parameters.filter { $0.grad != nil && optimizer(for: $0) === rule }
            if !mine.isEmpty { preparing.prepareStep(mine, gradients: mine.map { $0.grad! }) }
        }
        for p in parameters { update(p, lrScale: lrScale) }
    }

    /// Total bytes of optimizer state over `parameters`.
    public func stateBytes(_ parameters: [Parameter]) -> Int {
        parameters.reduce(0) { $0 + optimizer(for: $1).stateBytes(for: $1) }
    }
}

import SubspaceCore
import SubspaceModels

/// The `GradientProjecting` bookkeeping of the rules that keep one `Projector` per matrix and
/// step from R = project(G) (GaLore, GaLore-8bit, GaLore-Adafactor): R between refreshes, the
/// full gradient and a broadcast P on a refresh step (the parameter's first step and every
/// `updateGap` steps of its own count), R on every step for the seeded projection types.
/// Exact: the steps read G only through R, and the refresh's P comes from the mean gradient.
/// Each function takes the projector and step count the coming step will use (`nil` for a
/// parameter that is not a matrix).
enum ProjectorCommunication {
    static func shapes(_ proj: Projector?) -> ProjectedShapes? {
        proj.map { ProjectedShapes(projected: $0.projectedShape, basis: $0.type.isRandom ? nil : $0.matrixShape, updateGap: $0.gap) }
    }

    static func payload(_ state: (projector: Projector, step: Int)?) -> GradientPayload {
        guard let (proj, step) = state else { return .full }
        if !proj.type.isRandom && proj.needsRefresh(step: step) { return .refresh(basisShape: proj.matrixShape) }
        return .projected(proj.projectedShape)
    }

    static func project(_ state: (projector: Projector, step: Int)?, _ g: Tensor, name: String) -> Tensor {
        // A copy: a seeded projector regenerates its matrix for this step without touching
        // the rule's state (the step itself regenerates it there).
        guard let (stored, step) = state else { preconditionFailure("'\(name)' is not projected") }
        var proj = stored
        if proj.type.isRandom { proj.regenerate(step: step) }
        return proj.project(g)
    }

    static func refreshBasis(_ state: (projector: Projector, step: Int)?, _ g: Tensor, name: String) -> Tensor {
        // A copy: the basis is computed here and installed on every rank (this one included)
        // after the broadcast.
        guard let (stored, step) = state else { preconditionFailure("'\(name)' is not projected") }
        var proj = stored
        proj.refresh(gradient: g, step: step)
        return proj.matrix!
    }

    /// The projector ready for a step from an R projected with it: a seeded P regenerated
    /// (an SVD P must not be due for a refresh).
    static func prepared(_ proj: Projector?, step: Int) -> Projector? {
        guard var proj else { return nil }
        precondition(proj.type.isRandom || !proj.needsRefresh(step: step), "a projected gradient on a refresh step")
        if proj.type.isRandom { proj.regenerate(step: step) }
        return proj
    }
}

/// A rule that keeps one `Projector` per matrix and steps from R = project(G): the
/// `GradientProjecting` calls that only read the projector come from these two.
public protocol ProjectorRule: GradientProjecting {
    /// A new projector for a parameter like `p` (nil: not a matrix).
    func freshProjector(for p: some ParameterInfo) -> Projector?
    /// The projector and step count `p`'s coming step will use (nil: not a matrix).
    func comingProjector(of p: Parameter) -> (projector: Projector, step: Int)?
}

extension ProjectorRule {
    public func projectedShapes(for p: some ParameterInfo) -> ProjectedShapes? { ProjectorCommunication.shapes(freshProjector(for: p)) }
    public func payload(for p: Parameter) -> GradientPayload { ProjectorCommunication.payload(comingProjector(of: p)) }
    public func projectGradient(_ p: Parameter, gradient g: Tensor) -> Tensor {
        ProjectorCommunication.project(comingProjector(of: p), g, name: p.name)
    }
    public func refreshBasis(_ p: Parameter, gradient g: Tensor) -> Tensor {
        ProjectorCommunication.refreshBasis(comingProjector(of: p), g, name: p.name)
    }
}

extension GaLore: ProjectorRule {
    public func freshProjector(for p: some ParameterInfo) -> Projector? { settings.makeProjector(for: p) }
    public func comingProjector(of p: Parameter) -> (projector: Projector, step: Int)? {
        if let s = states[p.name] { return s.projector.map { ($0, s.step) } }
        return freshProjector(for: p).map { ($0, 0) }
    }

    public func update(_ p: Parameter, projectedGradient r: Tensor, lrScale: Float) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        defer { states[p.name] = s }
        let lr = learningRate * lrScale
        guard let step = settings.advance(projected: r, state: &s, lr: lr) else { return }
        finish(p, direction: step.n, stepSize: step.stepSize, state: &s, lr: lr)
    }

    public func installBasis(_ p: Parameter, _ basis: Tensor) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        s.projector?.install(basis, forStep: s.step)
        states[p.name] = s
    }
}

extension GaLoreAdafactor: ProjectorRule {
    public func freshProjector(for p: some ParameterInfo) -> Projector? { makeProjector(for: p) }
    public func comingProjector(of p: Parameter) -> (projector: Projector, step: Int)? {
        if let s = states[p.name] { return s.projector.map { ($0, s.moments.step) } }
        return freshProjector(for: p).map { ($0, 0) }
    }

    public func update(_ p: Parameter, projectedGradient r: Tensor, lrScale: Float) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        defer { states[p.name] = s }
        guard isAllFinite(r) else { s.skipped += 1; return }
        s.projector = ProjectorCommunication.prepared(s.projector, step: s.moments.step)
        step(p, projected: r, state: &s, lr: learningRate * lrScale)
    }

    public func installBasis(_ p: Parameter, _ basis: Tensor) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        s.projector?.install(basis, forStep: s.moments.step)
        states[p.name] = s
    }
}

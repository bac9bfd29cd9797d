import SubspaceCore
import SubspaceModels

/// GaLore (and GaLore-8bit, the same rule with 8-bit moments) under data parallelism: R
/// between refreshes, the full gradient and a broadcast P on a refresh step (every
/// `updateGap` steps of the parameter's own count, and its first step), R on every step
/// for the seeded projection types (see `GradientProjecting`). Exact: the step reads G only
/// through R, and the refresh's P comes from the mean gradient.
extension GaLore: GradientProjecting {
    public func projectedShapes(for p: some ParameterInfo) -> ProjectedShapes? {
        guard let proj = settings.makeProjector(for: p) else { return nil }
        return ProjectedShapes(projected: proj.projectedShape, basis: proj.type.isRandom ? nil : proj.matrixShape, updateGap: proj.gap)
    }

    /// The projector and step count the coming step will use (a fresh projector before the
    /// first step); nil for a parameter that is not a matrix.
    private func projector(of p: Parameter) -> (projector: Projector, step: Int)? {
        if let s = states[p.name] { return s.projector.map { ($0, s.step) } }
        return settings.makeProjector(for: p).map { ($0, 0) }
    }

    public func payload(for p: Parameter) -> GradientPayload {
        guard let (proj, step) = projector(of: p) else { return .full }
        if !proj.type.isRandom && proj.needsRefresh(step: step) { return .refresh(basisShape: proj.matrixShape) }
        return .projected(proj.projectedShape)
    }

    public func projectGradient(_ p: Parameter, gradient g: Tensor) -> Tensor {
        guard var (proj, step) = projector(of: p) else { preconditionFailure("'\(p.name)' is not projected") }
        if proj.type.isRandom { proj.regenerate(step: step) }
        return proj.project(g)
    }

    public func update(_ p: Parameter, projectedGradient r: Tensor, lrScale: Float) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        defer { states[p.name] = s }
        let lr = learningRate * lrScale
        guard let step = settings.advance(projected: r, state: &s, lr: lr) else { return }
        finish(p, direction: step.n, stepSize: step.stepSize, state: &s, lr: lr)
    }

    public func refreshBasis(_ p: Parameter, gradient g: Tensor) -> Tensor {
        guard var (proj, step) = projector(of: p) else { preconditionFailure("'\(p.name)' is not projected") }
        proj.refresh(gradient: g, step: step)
        return proj.matrix!
    }

    public func installBasis(_ p: Parameter, _ basis: Tensor) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        s.projector?.install(basis, forStep: s.step)
        states[p.name] = s
    }
}

import SubspaceCore
import SubspaceModels

/// ProjFactor under data parallelism: its P is seeded (every rank draws the same one from
/// (seed, name, step / T)), and the step reads the gradient only through Gs, so every step
/// all-reduces Gs (max(m, n)·c·r floats) and never a basis (see `GradientProjecting`). The
/// micro-batches accumulated in projected form (`MicroBatchAccumulating`) are folded into
/// the rank's Gs before it is sent: the mean over ranks of the sums is the sum of the means.
extension ProjFactor: GradientProjecting {
    public func projectedShapes(for p: some ParameterInfo) -> ProjectedShapes? {
        guard p.shape.count == 2, p.count > 0 else { return nil }
        return ProjectedShapes(projected: makeProjector(for: p).projectedShape, basis: nil, updateGap: updateGap)
    }

    public func payload(for p: Parameter) -> GradientPayload {
        projectedShapes(for: p).map { .projected($0.projected) } ?? .full
    }

    public func projectGradient(_ p: Parameter, gradient g: Tensor) -> Tensor {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        prepare(&s)
        let gs = s.pending ?? Tensor(zeros: s.projector.projectedShape)
        s.pending = nil
        Self.projectAdding(g, into: gs, projector: s.projector)
        s.projector.release()
        states[p.name] = s
        return gs
    }

    public func update(_ p: Parameter, projectedGradient gs: Tensor, lrScale: Float) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        let buffer = Tensor(zeros: [s.projector.rows, s.projector.cols])
        prepare(&s, scratch: buffer)
        step(p, projected: gs, state: &s, lr: learningRate * lrScale, buffer: buffer)
        states[p.name] = s
    }

    /// Never called: a seeded projection has no refresh step (`payload` is never `.refresh`).
    public func refreshBasis(_ p: Parameter, gradient: Tensor) -> Tensor {
        preconditionFailure("ProjFactor's projection is seeded; it has no basis to broadcast")
    }

    public func installBasis(_ p: Parameter, _ basis: Tensor) {
        preconditionFailure("ProjFactor's projection is seeded; it has no basis to broadcast")
    }
}

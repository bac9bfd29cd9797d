import SubspaceCore
import SubspaceModels

/// Fira (Chen et al., NeurIPS 2025, arXiv 2410.01623; `pip install fira`, 1.0.2): GaLore
/// plus the part of the gradient outside the subspace, scaled like Adam would scale it.
///
/// With GaLore's projected step (`ProjectedAdam`: R = project(G), Adam moments on R,
/// N = M / (sqrt(V) + eps), lr_t = lr·sqrt(1 - b2^t)/(1 - b1^t)):
///
///     S   = G - P Pᵀ G                                  (the residual outside the subspace)
///     phi = ||N||_d / (||R||_d + 1e-8)                  (norm-based scaling, one factor per
///                                                         row or column of the un-projected side)
///     S  <- phi ⊙ S
///     norm-growth limiter (gamma = 1.01): if ||S|| > gamma·s_prev, S <- S·gamma·s_prev/||S||;
///                                         s_prev <- ||S|| (after limiting; the first step only records it)
///     W  <- W - lr_t·(scale·projectBack(N) + S) ;  W <- W - lr·wd·W
///
/// The norms in phi run over the projected (rank) dimension, one factor per row of G when
/// the right side is projected (R is m x r) and per column when the left side is (R is
/// r x n): the reference's "column-wise" scaling in the paper's orientation. `.matrix` gives
/// the paper's Fira-matrix ablation, one factor ||N||_F / (||R||_F + 1e-8).
///
/// **Paper vs code.** fira 1.0.2 computes the residual as G − alpha·P Pᵀ G (it reuses
/// `project_back`, which multiplies by alpha), so with alpha ≠ 1 part of the in-subspace
/// gradient leaks into S; the paper defines the residual as (I − P Pᵀ) G. We default to the
/// paper (`Residual.paper`) and offer the code's form as `Residual.reference`, which the
/// parity fixtures use. With scale 1 the two coincide. The limiter (1e-8 guard, record
/// after limiting) follows the code, which agrees with the paper's rule.
///
/// Defaults: those of `GaLore` (lr 1e-3, eps 1e-6, wd 0, rank 128, gap 200, scale 0.25 as in
/// Fira's 60M–350M scripts), gamma 1.01. State: GaLore's plus one scalar (s_prev, key
/// `scaling_grad`). Each step needs one m x n temporary for S, as the reference does.
/// Non-finite gradients are skipped as in GaLore.
public final class Fira: ParameterwiseOptimizer<Fira.State>, StepPreparing {
    public enum Residual: String, Sendable, CaseIterable {
        /// (I − P Pᵀ) G, the paper's definition (default).
        case paper
        /// G − scale · P Pᵀ G, fira 1.0.2's code.
        case reference
    }

    public enum Scaling: String, Sendable, CaseIterable {
        /// One factor per row/column of the un-projected side (paper's default, the code's).
        case columnwise
        /// One factor for the whole matrix (the paper's "Fira-matrix" ablation).
        case matrix
    }

    public struct State {
        public var base: ProjectedAdam.State
        /// ||S|| of the previous step after limiting (nil before the first, and for
        /// parameters that are not matrices).
        public var scalingNorm: Float?
    }

    public var settings: ProjectedAdam
    public var residual: Residual
    public var scaling: Scaling
    /// Norm-growth limit per step; nil disables the limiter.
    public var gamma: Float?
    public override var name: String { "fira" }

    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-6,
        weightDecay: Float = 0, rank: Int = 128, updateGap: Int = 200, scale: Float = 0.25,
        projection: ProjectionType = .std, seed: UInt64 = 0,
        residual: Residual = .paper, scaling: Scaling = .columnwise, gamma: Float? = 1.01
    ) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw ConfigurationError("learning rate must be positive, got \(learningRate)")
        }
        if let gamma, !(gamma >= 1 && gamma.isFinite) {
            throw ConfigurationError("Fira's norm-growth limit gamma must be at least 1, got \(gamma)")
        }
        settings = try ProjectedAdam(
            rank: rank, updateGap: updateGap, scale: scale, projection: projection, seed: seed,
            beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
        self.residual = residual; self.scaling = scaling; self.gamma = gamma
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State { State(base: settings.makeState(for: p), scalingNorm: nil) }
    /// Runs this step's refresh SVDs side by side (`Projector.prepareRefreshes`).
    public func prepareStep(_ parameters: [Parameter], gradients: [Tensor]) {
        ProjectedAdam.prepareRefreshes(parameters, gradients: gradients, states: &states, base: \.base, make: makeState)
    }

    public override func bytes(of s: State) -> Int {
        s.base.bytes + (s.base.projector == nil ? 0 : MemoryLayout<Float>.size)
    }

    /// GaLore's footprint plus s_prev (one float) for matrices.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        settings.footprint(for: p) + StateFootprint(states: settings.makeProjector(for: p) == nil ? [] : [[1]])
    }

    /// GaLore's keys plus `scaling_grad` (fira's name, a 1-element tensor) for matrices.
    public override func encode(_ s: State) -> [String: Tensor] { encode(s, moments: true) }

    /// `encode`, with or without the moments (`exportStateKeepingBF16`).
    func encode(_ s: State, moments: Bool) -> [String: Tensor] {
        var out = settings.encode(s.base, moments: moments)
        if !out.isEmpty, let n = s.scalingNorm { out["scaling_grad"] = Tensor(shape: [1], values: [n]) }
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        let matrix = settings.makeProjector(for: p) != nil
        let base = try settings.decode(t, for: p, extra: matrix ? ["scaling_grad"] : [])
        guard matrix else { return State(base: base, scalingNorm: nil) }
        let n = try OptimizerStateError.tensor(t, "scaling_grad", shape: [1], parameter: p)[0]
        guard n >= 0, n.isFinite else {
            throw OptimizerStateError.invalidValue(parameter: p.name, key: "scaling_grad", reason: "\(n) is not a norm")
        }
        return State(base: base, scalingNorm: n)
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        guard let step = settings.advance(g, state: &s.base, lr: lr) else { return }
        defer {
            settings.decay(p.value, lr: lr)
            s.base.projector?.release()
        }
        guard let proj = s.base.projector else {
            settings.applyDirection(step.n, to: p.value, stepSize: step.stepSize, projector: nil)
            return
        }
        // S = G - c P R, then phi ⊙ S.
        let res = g.copy()
        proj.addBack(step.r, to: res, alpha: residual == .paper ? -1 : -proj.scale)
        scaleResidual(res, r: step.r, n: step.n, side: proj.side)
        // Norm-growth limiter.
        let norm = BLAS.nrm2(res.count, res.data)
        var limiter: Float = 1
        if let prev = s.scalingNorm, let gamma {
            limiter = max(norm / (prev + 1e-8), gamma) / gamma
        }
        s.scalingNorm = norm / limiter
        BLAS.axpy(res.count, -step.stepSize / limiter, res.data, p.value.data)
        settings.applyDirection(step.n, to: p.value, stepSize: step.stepSize, projector: proj)
    }

    /// Multiplies the residual by phi = ||N|| / (||R|| + 1e-8), per row of G (right side: R
    /// is m x r), per column (left side: R is r x n), or once (`.matrix`).
    private func scaleResidual(_ res: Tensor, r: Tensor, n: Tensor, side: Projector.Side) {
        let rows = res.shape[0], cols = res.shape[1]
        if scaling == .matrix {
            let phi = BLAS.nrm2(n.count, n.data) / (BLAS.nrm2(r.count, r.data) + 1e-8)
            FastMath.scale(res.data, res.count, phi)
            return
        }
        if side == .right {
            let k = r.shape[1]
            for i in 0..<rows {
                let phi = BLAS.nrm2(k, n.data + i * k) / (BLAS.nrm2(k, r.data + i * k) + 1e-8)
                FastMath.scale(res.data + i * cols, cols, phi)
            }
        } else {
            let k = r.shape[0]
            var nn = [Double](repeating: 0, count: cols), rr = [Double](repeating: 0, count: cols)
            for i in 0..<k {
                for j in 0..<cols {
                    let a = Double(n.data[i * cols + j]), b = Double(r.data[i * cols + j])
                    nn[j] += a * a; rr[j] += b * b
                }
            }
            let phi = (0..<cols).map { Float(nn[$0].squareRoot()) / (Float(rr[$0].squareRoot()) + 1e-8) }
            for i in 0..<rows {
                let row = res.data + i * cols
                for j in 0..<cols { row[j] *= phi[j] }
            }
        }
    }
}

/// `fira`: Fira on the attention and MLP matrices, AdamW on the rest (see `GaLoreSettings`):
/// GaLore's settings plus the residual form.
public struct FiraSettings: MethodSettings {
    public var adam: AdamWSettings
    public var projection: ProjectionSettings
    /// `Fira.Residual`: "paper" (default), (I - PPᵀ)G as the paper writes it.
    public var residual: Fira.Residual
    public var unprojected: UnprojectedSettings

    /// GaLore's defaults (`GaLoreSettings`; Fira's reference is built on galore-torch and
    /// keeps its hyperparameters) and the paper's residual.
    public static let defaults = try! FiraSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        residual = try OptimizerRegistry.choice(o.firaResidual, default: Fira.Residual.paper, option: "Fira residual")
        adam = AdamWSettings(o, defaults: GaLoreSettings.adamDefaults)
        projection = try ProjectionSettings(o, defaults: .galore)
        unprojected = try UnprojectedSettings(o, projected: adam)
    }

    public func validate() throws {
        try adam.validate()
        try projection.validate()
        try unprojected.adamw.validate()
    }

    public func build() throws -> RoutedOptimizer {
        let fira = try Fira(
            learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, weightDecay: adam.weightDecay,
            rank: projection.rank, updateGap: projection.updateGap, scale: projection.scale ?? 1,
            projection: projection.projectionType, seed: projection.projectionSeed, residual: residual)
        fira.settings.basisAlgorithm = projection.svdBasis ?? .gram
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, fira)], fallback: try unprojected.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "fira", adam, projection, ["residual": residual]),
         unprojected.group]
    }
}

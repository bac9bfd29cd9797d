import Foundation
import SubspaceCore
import SubspaceModels

/// ProjFactor, the optimizer of VLoRP (Wang et al., ICML 2025, "Memory-Efficient LLM Training
/// by Various-Grained Low-Rank Projection of Gradients"; BIGKnight/VLoRP `optim/projfactor.py`):
/// a seeded random projection at granularity c, the first moment and the gradient
/// accumulation kept in the projected space, and an Adafactor-style factored second moment in
/// the original space.
///
/// **Granularity.** An m x n gradient G is viewed (same row-major storage) as X of shape
/// (m·c) x (n/c) when m >= n, projected on the right, Gs = X Pᵀ with P of shape r x (n/c);
/// or (m/c) x (n·c) when m < n, projected on the left, Gs = Pᵀ X with P (m/c) x r. Either way
/// Gs holds max(m, n)·c·r values (c = 1 is ordinary row-wise projection; larger c projects
/// finer slices at the same budget c·r). P has N(0, 1/r) entries (`ProjectionType.gaussian`,
/// or ±1/sqrt(r) with `rademacher`), is a pure function of (seed, parameter name, step / T)
/// and is regenerated, never stored; back(Gs) = scale · reshape(Gs P or P Gs) to m x n, and
/// E[back(Gs)] = scale · G. (VLoRP draws P with N(0, 1) entries and divides by r on the way
/// back: the same back projection.) c must divide n (m >= n) or m (m < n); otherwise the
/// largest divisor below c is used; r is clamped to the smaller side of X.
///
/// One step t (from 1), with Gs the projected gradient summed over the step's micro-batches:
///
///     Ms <- b1 Ms + (1 - b1) Gs                                  (projected first moment)
///     Go = back(Gs) ;  row <- b2 row + (1 - b2) Σ_j Go_ij²  (m) ;  col <- b2 col + (1 - b2) Σ_i Go_ij²  (n)
///     V_ij = row_i col_j / Σ_i row_i                             (rank-1 second moment, original space)
///     W <- W - lr·sqrt(1 - b2^t)/(1 - b1^t) · back(Ms) / (sqrt(V) + eps)      (`Correction.reference`)
///     W <- W - lr·wd·W                                           (after the update, uncorrected lr)
///
/// **Paper vs code.** VLoRP's code (above, the default) uses Adam's bias correction
/// sqrt(1 - b2^t)/(1 - b1^t) with eps added to sqrt(V). The paper's algorithm as rendered in the
/// material available to us writes (1 - b2^t)/(1 - b1^t) and sqrt(V + eps); that is offered as
/// `Correction.paper` but not made the default, because we could not check it against the
/// paper itself and it is not Adam's correction (it shrinks early steps by ~sqrt(1 - b2^t)).
/// Where we could check, we follow the paper and not the code: (1) the code draws a fresh seed
/// for *every micro-batch* of a refresh step (it resamples inside `project` whenever
/// update_step % T == 0), so with gradient accumulation those micro-batches are projected
/// with different matrices and summed, and projected back with the last one; here every
/// micro-batch of a step uses the step's P. (2) The code takes seeds from torch's global RNG;
/// ours are reproducible. As in both, the momentum is *not* transferred when P is resampled.
///
/// **Gradient accumulation in projected form.** The rule conforms to `MicroBatchAccumulating`:
/// `accumulate` adds a micro-batch's projection to a pending Gs (max(m, n)·c·r floats) and
/// the full gradient can be freed; `update` adds the last micro-batch and steps. In per-layer
/// mode (`Trainer`, no clipping) this keeps the gradient memory of every projected matrix at
/// max(m, n)·c·r floats between micro-batches instead of m·n, which is VLoRP's point; in
/// ordinary mode the trainer sums full gradients and the rule projects the sum once
/// (identical up to rounding). The pending sum is state while a step is open (counted in
/// `stateBytes` and `pendingBytes`) and is not checkpointed (checkpoints are taken between
/// steps).
///
/// **Defaults** are VLoRP's `ProjFactor`: lr 1e-3, betas (0.9, 0.999), eps 1e-6, weight
/// decay 0, rank 32, T 100, scale 1, c 1, gaussian. Its `run.sh` uses c 256, r 1, T 30,
/// scale 0.25.
///
/// **State** per m x n matrix: max(m, n)·c·r (Ms) + m + n floats and a step count; nothing for P.
/// Checkpoint keys: `step`, `exp_avg`, `exp_avg_sq_row`, `exp_avg_sq_col`. A step whose
/// gradient has a NaN or infinity is skipped (its pending sum is dropped). Matrices only.
public final class ProjFactor: ParameterwiseOptimizer<ProjFactor.State>, MicroBatchAccumulating {
    public enum Correction: String, CaseIterable, Sendable {
        /// lr·sqrt(1 - b2^t)/(1 - b1^t), eps outside the square root (VLoRP's code; default).
        case reference
        /// lr·(1 - b2^t)/(1 - b1^t), eps inside the square root (the paper's algorithm as
        /// rendered in the material we had).
        case paper
    }

    /// The reshaped view of one parameter.
    public struct Geometry: Equatable, Sendable {
        public let rows: Int, cols: Int
        /// Effective granularity (a divisor of the projected dimension, at most the requested c).
        public let granularity: Int
        /// Effective rank.
        public let rank: Int
        /// X's shape: (m·c) x (n/c) or (m/c) x (n·c).
        public let reshaped: [Int]
    }

    public struct State {
        /// Updates made.
        public var step: Int = 0
        /// Projected first moment Ms (the projector's `projectedShape`).
        public var momentum: Tensor
        /// Row and column second-moment factors in the original space (m and n).
        public var row: Tensor
        public var col: Tensor
        /// The projection on the reshaped matrix; its matrix is kept only while a step is open.
        public var projector: Projector
        /// Gs of the micro-batches accumulated so far in the open step.
        public var pending: Tensor?
        /// Steps skipped for a non-finite gradient (not saved).
        public var skipped: Int = 0

        public var bytes: Int { momentum.byteCount + row.byteCount + col.byteCount + (pending?.byteCount ?? 0) }
    }

    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public var rank: Int
    public var updateGap: Int
    public var scale: Float
    public var granularity: Int
    public var projection: ProjectionType
    public var seed: UInt64
    public var correction: Correction
    /// Whether `Trainer` may hand micro-batch gradients over early (see `MicroBatchAccumulating`).
    public var accumulateProjected: Bool
    public override var name: String { "projfactor" }

    /// - Throws: `ConfigurationError` for impossible settings.
    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-6, weightDecay: Float = 0,
        rank: Int = 32, updateGap: Int = 100, scale: Float = 1, granularity: Int = 1, projection: ProjectionType = .gaussian,
        seed: UInt64 = 0, correction: Correction = .reference, accumulateProjected: Bool = true
    ) throws {
        guard learningRate > 0, learningRate.isFinite else { throw ConfigurationError("learning rate must be positive, got \(learningRate)") }
        guard beta1 >= 0, beta1 < 1 else { throw ConfigurationError("beta1 must be in [0, 1), got \(beta1)") }
        guard beta2 >= 0, beta2 < 1 else { throw ConfigurationError("beta2 must be in [0, 1), got \(beta2)") }
        guard eps > 0, eps.isFinite else { throw ConfigurationError("eps must be positive, got \(eps)") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw ConfigurationError("weight decay must be non-negative, got \(weightDecay)") }
        guard rank > 0 else { throw ConfigurationError("projection rank must be positive, got \(rank)") }
        guard updateGap > 0 else { throw ConfigurationError("projection update gap must be positive, got \(updateGap)") }
        guard scale > 0, scale.isFinite else { throw ConfigurationError("projection scale must be positive, got \(scale)") }
        guard granularity >= 1 else { throw ConfigurationError("projfactor granularity must be at least 1, got \(granularity)") }
        guard projection.isRandom else {
            throw ConfigurationError("projfactor needs a random projection (gaussian or rademacher), got \(projection.rawValue)")
        }
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay; self.rank = rank
        self.updateGap = updateGap; self.scale = scale; self.granularity = granularity; self.projection = projection
        self.seed = seed; self.correction = correction; self.accumulateProjected = accumulateProjected
        super.init(learningRate: learningRate)
    }

    /// The reshaped view of an m x n matrix (see the type's comment).
    public func geometry(rows m: Int, cols n: Int) -> Geometry {
        let split = m >= n ? n : m
        var c = min(granularity, split)
        while split % c != 0 { c -= 1 }
        let shape = m >= n ? [m * c, n / c] : [m / c, n * c]
        return Geometry(rows: m, cols: n, granularity: c, rank: min(rank, shape[0], shape[1]), reshaped: shape)
    }

    public func makeProjector(for p: some ParameterInfo) -> Projector {
        precondition(p.shape.count == 2 && p.count > 0, "ProjFactor takes 2-D parameters; '\(p.name)' has shape \(p.shape)")
        let geo = geometry(rows: p.shape[0], cols: p.shape[1])
        return try! Projector(type: projection, shape: geo.reshaped, rank: geo.rank, gap: updateGap, scale: scale, seed: seed, label: p.name)
    }

    public override func makeState(for p: Parameter) -> State {
        let proj = makeProjector(for: p)
        return State(
            momentum: Tensor(zeros: proj.projectedShape), row: Tensor(zeros: [p.shape[0]]), col: Tensor(zeros: [p.shape[1]]),
            projector: proj)
    }

    public override func bytes(of s: State) -> Int { s.bytes }

    /// The projected first moment and the row and column factors. The projection is seeded
    /// (nothing stored); `pending`, the projected micro-batch sum held while a step is open
    /// under gradient accumulation, is not counted (it replaces a gradient, not state).
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        guard p.shape.count == 2, p.count > 0 else { return nil }
        return StateFootprint(states: [makeProjector(for: p).projectedShape, [p.shape[0]], [p.shape[1]]])
    }

    // MARK: Projection

    /// Makes sure `s.projector` holds P of the open step (refresh index step / T), regenerating
    /// it if needed. `scratch` is any tensor of the reshaped shape (random projections never
    /// read it).
    func prepare(_ s: inout State, scratch: Tensor? = nil) {
        let index = s.step / updateGap
        if s.projector.matrix != nil && s.projector.refreshIndex == index { return }
        // An uninitialised allocation is never touched: it only carries the shape.
        let shapeCarrier = scratch ?? Tensor(uninitialized: [s.projector.rows, s.projector.cols])
        s.projector.release()
        s.projector.refresh(gradient: shapeCarrier, step: index * updateGap)
    }

    /// `out += project(g)`: the m x n gradient read as the reshaped X, projected with the
    /// projector's current P, accumulated in place (no temporary).
    public static func projectAdding(_ g: Tensor, into out: Tensor, projector: Projector) {
        let p = projector.matrix!, rows = projector.rows, cols = projector.cols, r = projector.rank
        precondition(g.count == rows * cols && out.shape == projector.projectedShape)
        if projector.side == .right {
            // (rows x r) += X (rows x cols) · Pᵀ, P is r x cols.
            BLAS.gemm(transB: true, m: rows, n: r, k: cols, a: g.data, lda: cols, b: p.data, ldb: cols, beta: 1, c: out.data, ldc: r)
        } else {
            // (r x cols) += Pᵀ · X, P is rows x r.
            BLAS.gemm(transA: true, m: r, n: cols, k: rows, a: p.data, lda: r, b: g.data, ldb: cols, beta: 1, c: out.data, ldc: cols)
        }
    }

    // MARK: MicroBatchAccumulating

    public func accumulatesCompressed(_ p: Parameter) -> Bool { accumulateProjected && p.shape.count == 2 }

    public func accumulate(_ p: Parameter, gradient g: Tensor) {
        var s = states.removeValue(forKey: p.name) ?? makeState(for: p)
        prepare(&s)
        if s.pending == nil { s.pending = Tensor(zeros: s.projector.projectedShape) }
        Self.projectAdding(g, into: s.pending!, projector: s.projector)
        states[p.name] = s
    }

    public func pendingBytes(for p: Parameter) -> Int { states[p.name]?.pending?.byteCount ?? 0 }

    public func discardPending() {
        for key in Array(states.keys) where states[key]?.pending != nil {
            states[key]!.pending = nil
            states[key]!.projector.release()
        }
    }

    // MARK: Step

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        let buffer = Tensor(zeros: [s.projector.rows, s.projector.cols])  // m x n storage
        prepare(&s, scratch: buffer)
        let gs = s.pending ?? Tensor(zeros: s.projector.projectedShape)
        s.pending = nil
        Self.projectAdding(g, into: gs, projector: s.projector)
        step(p, projected: gs, state: &s, lr: lr, buffer: buffer)
    }

    /// The step from the step's projected gradient Gs (`s.projector` prepared; `buffer` m x n
    /// zeros). Releases P.
    func step(_ p: Parameter, projected gs: Tensor, state s: inout State, lr: Float, buffer: Tensor) {
        let m = p.shape[0], n = p.shape[1]
        defer { s.projector.release() }
        guard isAllFinite(gs) else { s.skipped += 1; return }
        s.step += 1
        let b1 = beta1, b2 = beta2
        let md = s.momentum.data, gd = gs.data
        for i in 0..<gs.count { md[i] = b1 * md[i] + (1 - b1) * gd[i] }

        // Second moment of back(Gs), row and column sums of squares in the original m x n view.
        s.projector.addBack(gs, to: buffer, alpha: scale)
        let (rowSums, colSums) = Self.squareSums(buffer.data, rows: m, cols: n)
        let row = s.row.data, col = s.col.data
        var total = 0.0
        for i in 0..<m {
            row[i] = b2 * row[i] + (1 - b2) * Float(rowSums[i])
            total += Double(row[i])
        }
        for j in 0..<n { col[j] = b2 * col[j] + (1 - b2) * Float(colSums[j]) }

        // Direction back(Ms) / (sqrt(V) + eps) into the weights.
        buffer.zero()
        s.projector.addBack(s.momentum, to: buffer, alpha: scale)
        let t = Double(s.step)
        let bc1 = 1 - Foundation.pow(Double(b1), t), bc2 = 1 - Foundation.pow(Double(b2), t)
        if total > 0 {
            let stepSize = Float(Double(lr) * (correction == .reference ? bc2.squareRoot() : bc2) / bc1)
            let rowFactor = (0..<m).map { Float((Double(row[$0]) / total).squareRoot()) }
            let colFactor = (0..<n).map { col[$0].squareRoot() }
            let w = p.value.data, d = buffer.data, e = eps, paper = correction == .paper
            defer { withExtendedLifetime(buffer) {} }  // `d` points into it
            rowFactor.withUnsafeBufferPointer { rf in
                colFactor.withUnsafeBufferPointer { cf in
                    Parallel.ranges(m, grain: max(1, (1 << 15) / max(n, 1))) { range in
                        for i in range {
                            let a = rf[i], base = i * n
                            if paper {
                                for j in 0..<n {
                                    let v = a * cf[j]
                                    w[base + j] -= stepSize * d[base + j] / (v * v + e).squareRoot()
                                }
                            } else {
                                for j in 0..<n { w[base + j] -= stepSize * d[base + j] / (a * cf[j] + e) }
                            }
                        }
                    }
                }
            }
        }
        if weightDecay > 0 { FastMath.scale(p.value.data, p.count, 1 - lr * weightDecay) }
    }

    /// Row sums and column sums of x² for a rows x cols matrix, in Double; columns are summed
    /// per row chunk and combined in chunk order (deterministic).
    static func squareSums(_ x: UnsafePointer<Float>, rows: Int, cols: Int) -> ([Double], [Double]) {
        let chunks = AdafactorRule.rowChunks(rows: rows, cols: cols)
        var rowSums = [Double](repeating: 0, count: rows)
        var partial = [Double](repeating: 0, count: chunks.count * cols)
        rowSums.withUnsafeMutableBufferPointer { rs in
            partial.withUnsafeMutableBufferPointer { ps in
                Parallel.perform(chunks.count) { c in
                    let acc = ps.baseAddress! + c * cols
                    for i in chunks[c] {
                        var s = 0.0
                        let xr = x + i * cols
                        for j in 0..<cols {
                            let v = Double(xr[j] * xr[j])
                            s += v; acc[j] += v
                        }
                        rs[i] = s
                    }
                }
            }
        }
        var colSums = [Double](repeating: 0, count: cols)
        for c in 0..<chunks.count { for j in 0..<cols { colSums[j] += partial[c * cols + j] } }
        return (rowSums, colSums)
    }

    // MARK: Checkpoints

    public override func encode(_ s: State) -> [String: Tensor] {
        if s.step == 0 { return [:] }
        return [
            "step": Tensor(shape: [1], values: [Float(s.step)]), "exp_avg": s.momentum,
            "exp_avg_sq_row": s.row, "exp_avg_sq_col": s.col,
        ]
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        var s = makeState(for: p)
        try OptimizerStateError.checkKeys(t, required: ["step", "exp_avg", "exp_avg_sq_row", "exp_avg_sq_col"], parameter: p)
        s.step = try decodeStepCount(t, parameter: p)
        s.momentum = try OptimizerStateError.tensor(t, "exp_avg", shape: s.momentum.shape, parameter: p)
        s.row = try OptimizerStateError.tensor(t, "exp_avg_sq_row", shape: s.row.shape, parameter: p)
        s.col = try OptimizerStateError.tensor(t, "exp_avg_sq_col", shape: s.col.shape, parameter: p)
        return s
    }
}

/// `projfactor`: ProjFactor on the attention and MLP matrices and torch-style AdamW with the
/// same lr, betas, eps and weight decay on everything else, as VLoRP's `ProjFactor` wrapper
/// does.
public struct ProjFactorSettings: MethodSettings {
    public var adam: AdamWSettings
    /// rank, gap, scale, a random projection type and seed.
    public var projection: ProjectionSettings
    /// Projection granularity c.
    public var granularity: Int
    /// `ProjFactor.Correction` (`--variant`): "reference" (default) or "paper".
    public var correction: ProjFactor.Correction

    /// VLoRP's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-6, weight decay 0, rank 32,
    /// gap 100, scale 1, c 1, Gaussian projections, the reference's correction.
    public static let defaults = try! ProjFactorSettings(resolving: OptimizerOptions())

    public static let adamDefaults = AdamWSettings(learningRate: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0)
    public static let projectionDefaults = ProjectionSettings(rank: 32, updateGap: 100, scale: 1, projectionType: .gaussian, svdBasis: nil)

    public init(resolving o: OptimizerOptions) throws {
        correction = try OptimizerRegistry.choice(o.variant, default: ProjFactor.Correction.reference, option: "projfactor variant")
        adam = AdamWSettings(o, defaults: Self.adamDefaults)
        projection = try ProjectionSettings(o, defaults: Self.projectionDefaults)
        granularity = o.granularity ?? 1
    }

    public func validate() throws {
        try adam.validate()
        try projection.validate()
    }

    public func build() throws -> RoutedOptimizer {
        let pf = try ProjFactor(
            learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, weightDecay: adam.weightDecay,
            rank: projection.rank, updateGap: projection.updateGap, scale: projection.scale ?? 1, granularity: granularity,
            projection: projection.projectionType, seed: projection.projectionSeed, correction: correction)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, pf)], fallback: try adam.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "projfactor", adam, projection,
               ["granularity": SettingValue.int(granularity), "correction": .string(correction.rawValue)]),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adam)]
    }
}

import SubspaceCore
import SubspaceModels

/// MoFaSGD, Momentum Factorized SGD (Mahdavinia & Mahdavi, TMLR 2025, "Low-rank Momentum
/// Factorization for Memory Efficient Training", arXiv 2507.08091; pmahdavi/MoFaSGD): the
/// momentum of an m x n matrix is kept as a rank-r SVD U diag(S) Vᵀ (U m x r, V n x r) and
/// updated every step without ever forming an m x n matrix other than the gradient.
///
/// One step with gradient G (c = 1 - beta for `Variant.paper`, 1 for `.reference`):
///
///     [U | c·G V]  = U' R_U      (thin QR, m x 2r)
///     [V | c·Gᵀ U] = V' R_V      (thin QR, n x 2r)
///     B = [[beta·diag(S) - c·Uᵀ G V, I_r], [I_r, 0]]             (2r x 2r)
///     (U'', S'', V'') = SVD_r(R_U B R_Vᵀ) ;  U+ = U' U'', S+ = S'', V+ = V' V''
///
/// so that U+ diag(S+) V+ᵀ is exactly the rank-r truncated SVD of
/// beta·U diag(S) Vᵀ + c·(UUᵀG + GVVᵀ - UUᵀGVVᵀ), the momentum decayed plus the gradient's
/// projection onto the tangent space of the rank-r matrices at the current momentum. Then
///
///     W <- W (1 - lr wd) - lr · ( U+ D V+ᵀ + eta2 · (I - UUᵀ) G (I - VVᵀ) )
///
/// with D = diag(1[S+ > eps]) (`Update.paper`, the paper's spectrally normalised step
/// U+ V+ᵀ) or D = diag(min(1/S+, maxReciprocal)) over S+ > eps (`Update.reference`, the
/// reference code's default `use_ones_for_nonzero_s=False`). The complement term uses the
/// previous factors U, V (the reference's default `use_current_projection=False`) and is off
/// by default (eta2 = 0, the paper's update and the nanoGPT config's).
///
/// **Initialisation** is the truncated SVD of the weight itself, as the reference
/// (`MomentumFactor`) does, not zero: at the first step the momentum is W's best rank-r
/// approximation.
///
/// **Paper vs reference** (`Variant`): the paper averages the momentum, M <- beta M +
/// (1 - beta) G (`.paper`, default); the code adds the projected gradient unscaled,
/// M <- beta M + G (`.reference`). With the spectrally normalised update the two differ
/// only in how much the initial, weight-derived momentum weighs against the gradients.
/// Not implemented from the reference: its Nesterov option (off by default) and the beta
/// warm-up schedule of its nanoGPT config.
///
/// **Defaults**: lr 1e-2 (the reference class), beta 0.95 and rank 32 (its nanoGPT config,
/// `configs/optimizers/mfsgd.yaml`), eta2 0, eps 1e-10 and maxReciprocal 1e4 (the class;
/// the config uses 5), no weight decay (the reference has none). The rank is capped at
/// min(m, n) per matrix.
///
/// **State** per m x n matrix: r(m + n + 1) floats (U, S, V) and a step count; no second
/// moment. Checkpoint keys: `step`, `momentum_u`, `momentum_s`, `momentum_v`. A gradient with
/// a NaN or infinity is skipped (nothing changes).
public final class MoFaSGD: ParameterwiseOptimizer<MoFaSGD.State> {
    public enum Update: String, CaseIterable, Sendable {
        /// U Vᵀ over the singular values above eps (the paper).
        case paper
        /// U diag(1/S) Vᵀ, 1/S clamped at `maxReciprocal` (the reference code's default).
        case reference
    }

    public enum Variant: String, CaseIterable, Sendable {
        /// M <- beta M + (1 - beta) P(G) (the paper).
        case paper
        /// M <- beta M + P(G) (the reference code).
        case reference
    }

    public struct State {
        public var step: Int = 0
        /// m x r, orthonormal columns.
        public var u: Tensor
        /// r singular values, descending.
        public var s: Tensor
        /// n x r, orthonormal columns.
        public var v: Tensor
        /// Non-finite gradients skipped (not saved in checkpoints).
        public var skipped: Int = 0

        public var bytes: Int { u.byteCount + s.byteCount + v.byteCount }
    }

    public var beta: Float
    public var rank: Int
    public var eta2: Float
    public var update: Update
    public var variant: Variant
    /// Singular values at or below this count as zero in the update.
    public var eps: Float
    /// Largest 1/S used by `Update.reference`.
    public var maxReciprocal: Float
    public var weightDecay: Float
    public override var name: String { "mofasgd" }

    /// - Throws: `ConfigurationError` for impossible settings.
    public init(
        learningRate: Float = 1e-2, beta: Float = 0.95, rank: Int = 32, eta2: Float = 0, update: Update = .paper,
        variant: Variant = .paper, eps: Float = 1e-10, maxReciprocal: Float = 1e4, weightDecay: Float = 0
    ) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw ConfigurationError("learning rate must be positive, got \(learningRate)")
        }
        guard beta >= 0, beta < 1 else { throw ConfigurationError("mofasgd momentum (beta) must be in [0, 1), got \(beta)") }
        guard rank > 0 else { throw ConfigurationError("mofasgd rank must be positive, got \(rank)") }
        guard eta2 >= 0, eta2.isFinite else { throw ConfigurationError("mofasgd eta2 must be non-negative, got \(eta2)") }
        guard eps >= 0, eps.isFinite else { throw ConfigurationError("mofasgd eps must be non-negative, got \(eps)") }
        guard maxReciprocal > 0 else { throw ConfigurationError("mofasgd's largest 1/S must be positive, got \(maxReciprocal)") }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw ConfigurationError("weight decay must be non-negative, got \(weightDecay)")
        }
        self.beta = beta; self.rank = rank; self.eta2 = eta2; self.update = update; self.variant = variant
        self.eps = eps; self.maxReciprocal = maxReciprocal; self.weightDecay = weightDecay
        super.init(learningRate: learningRate)
    }

    /// The matrix view of `p` (vectors are 1 x n) and its effective rank min(r, m, n).
    public func dimensions(_ p: some ParameterInfo) -> (rows: Int, columns: Int, rank: Int) {
        let n = p.shape.last ?? 1, m = p.shape.count <= 1 ? 1 : p.count / max(n, 1)
        return (m, n, max(1, min(rank, m, n)))
    }

    /// The truncated SVD of the current weight (the reference's initial momentum). A weight
    /// LAPACK cannot factor (non-finite) starts from zero singular values on the coordinate
    /// axes instead.
    public override func makeState(for p: Parameter) -> State {
        let (m, n, r) = dimensions(p)
        let w = p.value.shape == [m, n] ? p.value : p.value.reshaped([m, n])
        if let f = try? Linalg.svd(w) {
            let t = LowRankFactors.truncate(u: f.u, s: f.s, vt: f.vt, rank: r)
            return State(u: t.u, s: t.s, v: t.vt.transposed())
        }
        let u = Tensor(zeros: [m, r]), v = Tensor(zeros: [n, r])
        for j in 0..<r { u.data[j * r + j] = 1; v.data[j * r + j] = 1 }
        return State(u: u, s: Tensor(zeros: [r]), v: v)
    }

    public override func bytes(of s: State) -> Int { s.bytes }

    /// U (m x r), S (r) and V (n x r).
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let (m, n, r) = dimensions(p)
        return StateFootprint(states: [[m, r], [r], [n, r]])
    }

    public override func encode(_ s: State) -> [String: Tensor] {
        if s.step == 0 { return [:] }
        return ["step": Tensor(shape: [1], values: [Float(s.step)]), "momentum_u": s.u, "momentum_s": s.s, "momentum_v": s.v]
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        try OptimizerStateError.checkKeys(t, required: ["step", "momentum_u", "momentum_s", "momentum_v"], parameter: p)
        let (m, n, r) = dimensions(p)
        var s = State(
            u: try OptimizerStateError.tensor(t, "momentum_u", shape: [m, r], parameter: p),
            s: try OptimizerStateError.tensor(t, "momentum_s", shape: [r], parameter: p),
            v: try OptimizerStateError.tensor(t, "momentum_v", shape: [n, r], parameter: p))
        s.step = try MLorc.decodeStep(t, parameter: p)
        return s
    }

    /// `a` (rows x ca) next to `b` (rows x cb), b scaled by `scale`: a rows x (ca + cb) matrix.
    static func concatenate(_ a: Tensor, _ b: Tensor, scale: Float) -> Tensor {
        let rows = a.shape[0], ca = a.shape[1], cb = b.shape[1], c = ca + cb
        let out = Tensor(uninitialized: [rows, c])
        for i in 0..<rows {
            for j in 0..<ca { out.data[i * c + j] = a.data[i * ca + j] }
            for j in 0..<cb { out.data[i * c + ca + j] = scale * b.data[i * cb + j] }
        }
        return out
    }

    /// One momentum-factor update (the type's comment) from `s` and the m x n gradient `g`,
    /// given G V (m x r), Gᵀ U (n x r) and Uᵀ G V (r x r). Returns nil if LAPACK fails.
    func updatedFactors(_ s: State, gv: Tensor, gtu: Tensor, utgv: Tensor, r: Int) -> (u: Tensor, s: Tensor, v: Tensor)? {
        let c: Float = variant == .paper ? 1 - beta : 1
        guard let qu = try? Linalg.qr(Self.concatenate(s.u, gv, scale: c)),
              let qv = try? Linalg.qr(Self.concatenate(s.v, gtu, scale: c)) else { return nil }
        let r2 = 2 * r
        let b = Tensor(zeros: [r2, r2])
        for i in 0..<r {
            for j in 0..<r { b.data[i * r2 + j] = -c * utgv.data[i * r + j] }
            b.data[i * r2 + i] += beta * s.s.data[i]
            b.data[i * r2 + r + i] = 1
            b.data[(r + i) * r2 + i] = 1
        }
        let mid = qu.r.matmul(b).matmul(qv.r, transposeOther: true)  // ku x kv
        guard let f = try? Linalg.svd(mid), f.s.count >= r else { return nil }
        let t = LowRankFactors.truncate(u: f.u, s: f.s, vt: f.vt, rank: r)
        return (qu.q.matmul(t.u), t.s, qv.q.matmul(t.vt, transposeOther: true))
    }

    /// The weights D of the update U D Vᵀ for singular values `s`.
    public func updateWeights(_ s: Tensor) -> [Float] {
        (0..<s.count).map { i in
            let si = s.data[i]
            guard si > eps else { return 0 }
            return update == .paper ? 1 : min(1 / si, maxReciprocal)
        }
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        guard isAllFinite(g) else { s.skipped += 1; return }
        let (m, n, r) = dimensions(p)
        let gm = g.shape == [m, n] ? g : g.reshaped([m, n])
        let gv = gm.matmul(s.v)  // m x r
        let gtu = gm.matmul(s.u, transposeSelf: true)  // n x r
        let utgv = s.u.matmul(gv, transposeSelf: true)  // r x r
        guard let next = updatedFactors(s, gv: gv, gtu: gtu, utgv: utgv, r: r) else { s.skipped += 1; return }
        let old = s
        s.step += 1
        s.u = next.u; s.s = next.s; s.v = next.v

        let pd = p.value.data
        if weightDecay != 0 { FastMath.scale(pd, p.count, 1 - lr * weightDecay) }
        // W -= lr · U D Vᵀ
        let d = updateWeights(s.s)
        let ud = Tensor(uninitialized: [m, r])
        for i in 0..<m { for j in 0..<r { ud.data[i * r + j] = s.u.data[i * r + j] * d[j] } }
        withExtendedLifetime((ud, s.v)) {
            BLAS.gemm(transB: true, m: m, n: n, k: r, alpha: -lr, a: ud.data, lda: r, b: s.v.data, ldb: r, beta: 1, c: pd, ldc: n)
        }
        // W -= lr·eta2·(G - U(GᵀU)ᵀ - (GV - U UᵀGV) Vᵀ), with the previous U, V.
        if eta2 != 0 {
            let a = lr * eta2
            let x = old.u.matmul(utgv)  // m x r
            for i in 0..<x.count { x.data[i] = gv.data[i] - x.data[i] }
            withExtendedLifetime((gm, old, gtu, x)) {
                BLAS.axpy(p.count, -a, gm.data, pd)
                BLAS.gemm(transB: true, m: m, n: n, k: r, alpha: a, a: old.u.data, lda: r, b: gtu.data, ldb: r, beta: 1, c: pd, ldc: n)
                BLAS.gemm(transB: true, m: m, n: n, k: r, alpha: a, a: x.data, lda: r, b: old.v.data, ldb: r, beta: 1, c: pd, ldc: n)
            }
        }
    }
}

/// `mofasgd`: MoFaSGD on the attention and MLP matrices (`.hiddenMatrices`) and AdamW on
/// embeddings, head and norms (the reference's `train_gpt.py` split).
public struct MoFaSGDSettings: MethodSettings {
    public var learningRate: Float
    /// The momentum beta (`--momentum`).
    public var momentum: Float
    public var rank: Int
    /// Weight of the complement term (I - UUᵀ) G (I - VVᵀ).
    public var eta2: Float
    /// `MoFaSGD.Update`: "paper" (U Vᵀ, default) or "reference" (U diag(1/S) Vᵀ).
    public var update: MoFaSGD.Update
    /// `MoFaSGD.Variant` (`--variant`): "paper" (beta-averaged momentum, default) or "reference".
    public var variant: MoFaSGD.Variant
    public var weightDecay: Float
    /// lr `--adam-lr`, `--betas`, `--eps` and the same weight decay.
    public var adamw: AdamWSettings

    /// The reference's nanoGPT configuration (`mfsgd.yaml`): lr 1e-2, beta 0.95, rank 32,
    /// eta2 0; the paper's update and momentum; weight decay 0; the AdamW side at
    /// `AdamWSettings.standard` (lr 1e-3).
    public static let defaults = try! MoFaSGDSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        update = try OptimizerRegistry.choice(o.mofasgdUpdate, default: MoFaSGD.Update.paper, option: "mofasgd update")
        variant = try OptimizerRegistry.choice(o.variant, default: MoFaSGD.Variant.paper, option: "mofasgd variant")
        learningRate = o.learningRate ?? 1e-2
        momentum = o.momentum ?? 0.95
        rank = o.rank ?? 32
        eta2 = o.eta2 ?? 0
        weightDecay = o.weightDecay ?? 0
        var side = o
        side.learningRate = o.adamLearningRate
        adamw = AdamWSettings(side, defaults: .standard)
    }

    /// The AdamW side's checks; MoFaSGD's own are `MoFaSGD`'s.
    public func validate() throws { try adamw.validate() }

    public func build() throws -> RoutedOptimizer {
        let mofasgd = try MoFaSGD(
            learningRate: learningRate, beta: momentum, rank: rank, eta2: eta2, update: update, variant: variant,
            weightDecay: weightDecay)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, mofasgd)], fallback: try adamw.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "mofasgd", MoFaSGDView(self)),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adamw)]
    }
}

struct MoFaSGDView: Encodable {
    var learningRate: Float, momentum: Float, rank: Int, eta2: Float, update: MoFaSGD.Update, variant: MoFaSGD.Variant, weightDecay: Float
    init(_ s: MoFaSGDSettings) {
        learningRate = s.learningRate; momentum = s.momentum; rank = s.rank; eta2 = s.eta2; update = s.update
        variant = s.variant; weightDecay = s.weightDecay
    }
}

import CSupport
import SubspaceCore
import SubspaceModels

/// MLorc, Momentum Low-rank compression (Shen et al., AISTATS 2026, arXiv 2506.01897;
/// weishen-git/MLorc): the optimizer's moments are stored between steps as rank-r
/// randomized SVDs and reconstructed in full for each step, so the update itself is the
/// base rule's full-rank update. One rule, two bases.
///
/// **MLorc-AdamW** (`Base.adamW`), at step t (from 1) for an m x n matrix with gradient G:
///
///     M~ = Um diag(Sm) Vmᵀ ;  V~ = Uv diag(Sv) Vvᵀ               (reconstruct, m x n)
///     V~ <- relu(V~) + 1[V~ < 0] · mean(|V~[V~ < 0]|)             (non-negativity fix)
///     M = b1 M~ + (1 - b1) G ;  V = b2 V~ + (1 - b2) G²
///     W <- W (1 - lr wd) - lr/(1 - b1^t) · M / (sqrt(V)/sqrt(1 - b2^t) + eps)
///     (Um, Sm, Vm) = RSVD_r(M) ;  (Uv, Sv, Vv) = RSVD_r(V)
///
/// The step uses this step's uncompressed M and V; only what is carried to the next step is
/// compressed. The Adam arithmetic is `AdamW.kernel` itself (the reconstructions play the
/// roles of `exp_avg` and `exp_avg_sq`), so with zero factors (step 1) or an exact
/// reconstruction the step is torch's AdamW step bit for bit.
///
/// **The non-negativity fix** is applied where the reference code applies it: to the
/// reconstructed previous second moment, before the gradient is folded in. A rank-r
/// reconstruction of a non-negative matrix can have negative entries; each is replaced by
/// the mean magnitude of the negative entries (non-negative entries are unchanged), so
/// sqrt(V) stays real and a negative entry does not become a zero denominator.
///
/// **MLorc-Lion** (`Base.lion`), with `LionRule`'s arithmetic on the reconstruction:
///
///     M~ = Um diag(Sm) Vmᵀ
///     W <- W (1 - lr wd) - lr · sign(b1 M~ + (1 - b1) G)
///     (Um, Sm, Vm) = RSVD_r(b2 M~ + (1 - b2) G)
///
/// **Paper vs reference code** (`Variant`): the paper's Algorithm writes AdamW as
/// W_t = W_{t-1} - lr (m̂/(sqrt(v̂) + eps) + wd W_{t-1}), i.e. torch's AdamW (decay of the
/// old weights, eps added to sqrt(v̂)): `.paper`, the default. The code (`MLorc_AdamW.py`)
/// uses transformers' form, lr sqrt(1 - b2^t)/(1 - b1^t) · M/(sqrt(V) + eps), and decays the
/// already updated weights afterwards (W <- W - lr wd W), which `.reference` reproduces; for
/// Lion `.reference` likewise decays after the sign step. Both differ only at the size of
/// eps and of lr² wd.
///
/// **RSVD** (`LowRankFactors.compress`, `Linalg.randomizedSVD`): a Gaussian test matrix of
/// r + p columns, `powerIterations` rounds of subspace iteration, then the exact SVD of the
/// small projected matrix, truncated to r. Defaults are the reference's: oversampling p = 0
/// and one power iteration (`torch.pca_lowrank(q = r + p, niter = 1)`, its `torchapi=True`
/// default for MLorc_AdamW; MLorc_Lion calls its own QR-based RSVD, which has no power
/// iteration: `--power-iters 0`). The test matrices are drawn from a stream that is a pure
/// function of (seed, parameter name, step), so nothing random is stored and a resumed run
/// draws the same matrices.
///
/// **Defaults** (reference class defaults where the paper gives none): rank 4 (the paper's
/// headline rank), AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8; Lion betas (0.95, 0.98).
/// Weight decay defaults to 0 (the paper's fine-tuning runs; the reference classes default to
/// 0.01 for AdamW and 0.05 for Lion). The rank is capped at min(m, n) per matrix.
///
/// **State** per m x n matrix: r(m + n + 1) floats per compressed moment, so 2r(m + n + 1)
/// for MLorc-AdamW and r(m + n + 1) for MLorc-Lion, plus a step count; each step also holds
/// m x n temporaries for the reconstructions. Checkpoint keys: `step`, `exp_avg_u`,
/// `exp_avg_s`, `exp_avg_vt` and, for AdamW, `exp_avg_sq_u`, `exp_avg_sq_s`, `exp_avg_sq_vt`.
/// A gradient with a NaN or infinity is skipped (nothing changes).
public final class MLorc: ParameterwiseOptimizer<MLorc.State> {
    public enum Base: Equatable, Sendable {
        /// Adam's moments and step (`AdamW.kernel` / `AdamMoments`).
        case adamW(beta1: Float, beta2: Float, eps: Float)
        /// Lion's momentum and sign step (`LionRule`).
        case lion(LionRule)
    }

    public enum Variant: String, CaseIterable, Sendable {
        /// The paper's AdamW / Lion update (torch form, decay of the old weights first).
        case paper
        /// The reference code's: transformers-style Adam step, decay applied after the step.
        case reference
    }

    public struct State {
        public var step: Int = 0
        /// The compressed first moment.
        public var momentum: LowRankFactors
        /// The compressed second moment (AdamW only).
        public var secondMoment: LowRankFactors?
        /// Non-finite gradients skipped (not saved in checkpoints).
        public var skipped: Int = 0
        /// Negative entries replaced by the non-negativity fix in the last step (diagnostics).
        public var lastNegativeCount: Int = 0

        public var bytes: Int { momentum.byteCount + (secondMoment?.byteCount ?? 0) }
    }

    public let base: Base
    public var rank: Int
    public var oversampling: Int
    public var powerIterations: Int
    public var weightDecay: Float
    public var variant: Variant
    /// Seed of the randomized SVD's test matrices.
    public var seed: UInt64
    public override var name: String {
        if case .lion = base { return "mlorc-lion" }
        return "mlorc-adamw"
    }

    /// - Throws: `ConfigurationError` for impossible settings.
    public init(
        learningRate: Float = 1e-3, base: Base = .adamW(beta1: 0.9, beta2: 0.999, eps: 1e-8), rank: Int = 4,
        oversampling: Int = 0, powerIterations: Int = 1, weightDecay: Float = 0, variant: Variant = .paper,
        seed: UInt64 = 0
    ) throws {
        switch base {
        case .adamW(let b1, let b2, let eps):
            try OptimizerRegistry.check(learningRate, beta1: b1, beta2: b2, eps: eps, wd: weightDecay)
        case .lion(let rule):
            try OptimizerRegistry.check(learningRate, beta1: rule.beta1, beta2: rule.beta2, eps: 1, wd: weightDecay)
        }
        guard rank > 0 else { throw ConfigurationError("mlorc rank must be positive, got \(rank)") }
        guard oversampling >= 0 else { throw ConfigurationError("mlorc oversampling must be non-negative, got \(oversampling)") }
        guard powerIterations >= 0 else {
            throw ConfigurationError("mlorc power iterations must be non-negative, got \(powerIterations)")
        }
        self.base = base; self.rank = rank; self.oversampling = oversampling; self.powerIterations = powerIterations
        self.weightDecay = weightDecay; self.variant = variant; self.seed = seed
        super.init(learningRate: learningRate)
    }

    /// The matrix view of `p` (vectors are 1 x n) and its effective rank min(r, m, n).
    public func dimensions(_ p: some ParameterInfo) -> (rows: Int, columns: Int, rank: Int) {
        let n = p.shape.last ?? 1, m = p.shape.count <= 1 ? 1 : p.count / max(n, 1)
        return (m, n, max(1, min(rank, m, n)))
    }

    var keepsSecondMoment: Bool { if case .adamW = base { return true } else { return false } }

    public override func makeState(for p: Parameter) -> State {
        let (m, n, r) = dimensions(p)
        return State(
            momentum: LowRankFactors(rows: m, columns: n, rank: r),
            secondMoment: keepsSecondMoment ? LowRankFactors(rows: m, columns: n, rank: r) : nil)
    }

    public override func bytes(of s: State) -> Int { s.bytes }

    /// U (m x r), S (r) and Vt (r x n) per compressed moment: two for AdamW, one for Lion.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let (m, n, r) = dimensions(p)
        let factors: [[Int]] = [[m, r], [r], [r, n]]
        return StateFootprint(states: keepsSecondMoment ? factors + factors : factors)
    }

    public override func encode(_ s: State) -> [String: Tensor] {
        if s.step == 0 { return [:] }
        var out = ["step": Tensor(shape: [1], values: [Float(s.step)])]
        s.momentum.encode(prefix: "exp_avg", into: &out)
        s.secondMoment?.encode(prefix: "exp_avg_sq", into: &out)
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        let keys = ["step"] + LowRankFactors.keys(prefix: "exp_avg") + (keepsSecondMoment ? LowRankFactors.keys(prefix: "exp_avg_sq") : [])
        try OptimizerStateError.checkKeys(t, required: keys, parameter: p)
        let (m, n, r) = dimensions(p)
        var s = State(
            momentum: try LowRankFactors.decode(t, prefix: "exp_avg", rows: m, columns: n, rank: r, parameter: p),
            secondMoment: keepsSecondMoment
                ? try LowRankFactors.decode(t, prefix: "exp_avg_sq", rows: m, columns: n, rank: r, parameter: p) : nil)
        s.step = try Self.decodeStep(t, parameter: p)
        return s
    }

    /// A saved `step` tensor as a step count (exact up to 2^24).
    static func decodeStep(_ t: [String: Tensor], parameter p: Parameter) throws -> Int {
        let step = try OptimizerStateError.tensor(t, "step", shape: [1], parameter: p)[0]
        guard step >= 1, step <= 16_777_216, step == step.rounded() else {
            throw OptimizerStateError.invalidValue(parameter: p.name, key: "step", reason: "\(step) is not a step count")
        }
        return Int(step)
    }

    /// The reconstruction U diag(S) Vᵀ as a tensor of `shape` (zeros before the first step,
    /// when the factors are zero).
    static func reconstruction(_ f: LowRankFactors, shape: [Int], step: Int) -> Tensor {
        let out = Tensor(zeros: shape)
        if step > 0 { f.reconstruct(into: out) }
        return out
    }

    /// MLorc's non-negativity fix, in place: every negative entry becomes the mean magnitude
    /// of the negative entries. Returns how many were replaced. The sum is kept in 16 Double
    /// lanes (entry i in lane i mod 16) added in lane order, the AVX-512 kernel's order
    /// (vecmath.c), so the two paths agree bit for bit.
    @discardableResult
    public static func rectify(_ v: Tensor, avx512: Bool = VectorISA.avx512) -> Int {
        let d = v.data
        if avx512 { return subspace_rectify_avx512(d, v.count) }
        var lanes = [Double](repeating: 0, count: 16), count = 0
        for i in 0..<v.count where d[i] < 0 { lanes[i & 15] -= Double(d[i]); count += 1 }
        if count == 0 { return 0 }
        let mean = Float(lanes.reduce(0, +) / Double(count))
        for i in 0..<v.count where d[i] < 0 { d[i] = mean }
        return count
    }

    /// The stream of the randomized SVDs of `p` at step `step`.
    public func stream(for p: Parameter, step: Int) -> RandomStream {
        RandomStream(seed: seed).split(p.name, index: UInt64(step))
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        guard isAllFinite(g) else { s.skipped += 1; return }
        let (rows, columns, r) = dimensions(p)
        let previousStep = s.step
        s.step += 1
        let t = s.step
        let m = Self.reconstruction(s.momentum, shape: p.shape, step: previousStep)
        var v: Tensor? = nil
        switch base {
        case .adamW(let b1, let b2, let eps):
            let vt = Self.reconstruction(s.secondMoment!, shape: p.shape, step: previousStep)
            s.lastNegativeCount = Self.rectify(vt)
            v = vt
            let bc1 = 1 - pow(b1, Float(t)), bc2 = 1 - pow(b2, Float(t))
            withExtendedLifetime((m, vt)) {
                switch variant {
                case .paper:
                    AdamW.kernel(
                        p: p.value.data, g: g.data, m: m.data, v: vt.data, vMax: nil, count: p.count, lr: lr,
                        beta1: b1, beta2: b2, eps: eps, weightDecay: weightDecay, stepSize: lr / bc1,
                        bc2Sqrt: bc2.squareRoot())
                case .reference:
                    // transformers' AdamW step with its decay after, in one sweep (AVX-512 where
                    // present); a negative decay, which that kernel skips, is applied after.
                    AdamW.huggingFaceKernel(
                        p: p.value.data, g: g.data, m: m.data, v: vt.data, vMax: nil, count: p.count, lr: lr,
                        beta1: b1, beta2: b2, eps: eps, weightDecay: weightDecay, step: t)
                    if weightDecay < 0 { FastMath.scale(p.value.data, p.count, 1 - lr * weightDecay) }
                }
            }
        case .lion(let rule):
            switch variant {
            case .paper:
                rule.step(parameter: p.value, gradient: g, momentum: m, lr: lr, weightDecay: weightDecay)
            case .reference:
                rule.step(parameter: p.value, gradient: g, momentum: m, lr: lr, weightDecay: 0)
                if weightDecay != 0 { FastMath.scale(p.value.data, p.count, 1 - lr * weightDecay) }
            }
        }
        // Compress what is carried to the next step.
        var rng = stream(for: p, step: t)
        if let f = LowRankFactors.compress(
            m, rows: rows, columns: columns, rank: r, oversampling: oversampling, powerIterations: powerIterations, rng: &rng) {
            s.momentum = f
        }
        if let v, let f = LowRankFactors.compress(
            v, rows: rows, columns: columns, rank: r, oversampling: oversampling, powerIterations: powerIterations, rng: &rng) {
            s.secondMoment = f
        }
    }
}

/// MLorc's compression settings: rank, randomized-SVD oversampling and power iterations,
/// the variant and the RSVD's seed.
public struct MLorcCompression: Codable, Equatable, Sendable {
    public var rank: Int
    public var oversampling: Int
    public var powerIterations: Int
    /// `MLorc.Variant` (`--variant`): "paper" (default) or "reference".
    public var variant: MLorc.Variant
    /// Seed of the randomized SVD (`--proj-seed`).
    public var projectionSeed: UInt64

    /// The reference's: rank 4, oversampling 0, one power iteration, the paper's variant.
    public static let defaults = MLorcCompression(rank: 4, oversampling: 0, powerIterations: 1, variant: .paper, projectionSeed: 0)

    public init(rank: Int, oversampling: Int, powerIterations: Int, variant: MLorc.Variant, projectionSeed: UInt64) {
        self.rank = rank; self.oversampling = oversampling; self.powerIterations = powerIterations
        self.variant = variant; self.projectionSeed = projectionSeed
    }

    public init(_ o: OptimizerOptions) throws {
        let d = Self.defaults
        self.init(
            rank: o.rank ?? d.rank, oversampling: o.oversampling ?? d.oversampling,
            powerIterations: o.powerIterations ?? d.powerIterations,
            variant: try OptimizerRegistry.choice(o.variant, default: d.variant, option: "mlorc variant"),
            projectionSeed: o.projectionSeed ?? d.projectionSeed)
    }
}

/// `mlorc-adamw`: MLorc-AdamW on the attention and MLP matrices (`.hiddenMatrices`) and
/// AdamW with the same lr, betas, eps and weight decay on embeddings, head and norms (the
/// reference skips non-matrices; its NLU script passes only the 2-D target modules).
public struct MLorcAdamWSettings: MethodSettings {
    public var adam: AdamWSettings
    public var compression: MLorcCompression

    /// AdamW's defaults (`AdamWSettings.standard`: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    /// weight decay 0) and `MLorcCompression.defaults`.
    public static let defaults = try! MLorcAdamWSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        adam = AdamWSettings(o, defaults: .standard)
        compression = try MLorcCompression(o)
    }

    /// AdamW's checks; the compression's are `MLorc`'s.
    public func validate() throws { try adam.validate() }

    public func build() throws -> RoutedOptimizer {
        let c = compression
        let mlorc = try MLorc(
            learningRate: adam.learningRate, base: .adamW(beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps),
            rank: c.rank, oversampling: c.oversampling, powerIterations: c.powerIterations,
            weightDecay: adam.weightDecay, variant: c.variant, seed: c.projectionSeed)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, mlorc)], fallback: try adam.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "mlorc-adamw", adam, compression),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adam)]
    }
}

/// `mlorc-lion`: MLorc-Lion on the attention and MLP matrices, AdamW on the rest.
public struct MLorcLionSettings: MethodSettings {
    /// The Lion side: lr, betas, weight decay.
    public var lion: LionSettings
    public var compression: MLorcCompression
    /// lr `--adam-lr`, betas (0.9, 0.999) (`--betas` are Lion's), `--eps`, the weight decay.
    public var adamw: AdamWSettings

    /// The reference's: Lion lr 1e-4 (its README's; Lion wants a 3-10x smaller rate than
    /// AdamW), betas (0.95, 0.98), weight decay 0; `MLorcCompression.defaults`; the AdamW
    /// side at `AdamWSettings.standard`.
    public static let defaults = try! MLorcLionSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        lion = LionSettings(learningRate: o.learningRate ?? 1e-4, beta1: o.beta1 ?? 0.95, beta2: o.beta2 ?? 0.98, weightDecay: o.weightDecay ?? 0)
        compression = try MLorcCompression(o)
        var side = o
        side.learningRate = o.adamLearningRate
        side.beta1 = nil; side.beta2 = nil
        adamw = AdamWSettings(side, defaults: .standard)
    }

    /// The AdamW side's checks; the Lion side's and the compression's are `MLorc`'s.
    public func validate() throws { try adamw.validate() }

    public func build() throws -> RoutedOptimizer {
        let c = compression
        let mlorc = try MLorc(
            learningRate: lion.learningRate, base: .lion(LionRule(beta1: lion.beta1, beta2: lion.beta2)),
            rank: c.rank, oversampling: c.oversampling, powerIterations: c.powerIterations,
            weightDecay: lion.weightDecay, variant: c.variant, seed: c.projectionSeed)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, mlorc)], fallback: try adamw.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "mlorc-lion", lion, compression),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adamw)]
    }
}

import SubspaceCore
import SubspaceModels

/// Flora (Hao, Cao & Mou, ICML 2024, "Flora: Low-Rank Adapters Are Secretly Gradient
/// Compressors"; BorealisAI/flora-opt): Adafactor on the full gradient with its first moment
/// kept in a random low-rank projection that is resampled every kappa steps.
///
/// One step at step count t (from 1) for an m x n matrix with gradient G:
///
///     Adafactor second moment of G (`AdafactorRule.advance`: m + n floats)
///     U = G / sqrt(v_hat)                              (normalised update, not yet clipped)
///     A_k: seeded random projection of refresh index k (`Projector`, gaussian N(0, 1/r) by
///          default, std side rule: C = U A_kᵀ (m x r) when m >= n, C = A_kᵀ U (r x n) otherwise);
///          down_k(X) = `project`, up_k(C) = `projectBack` with scale 1
///     k_old = (t - 1) / kappa ; k = t / kappa
///     if k != k_old (t % kappa == 0):  C <- down_k(up_k_old(C))      (momentum transfer,
///                                          computed as C·(A_old A_kᵀ) or (A_k A_oldᵀ)ᵀ·C, r x r)
///     C <- b1 C + (1 - b1) down_k(U)
///     D = up_k(C)                                      (Variant.paper, default)
///       = (1 - b1) U + b1 up_k_old(C_prev)             (Variant.reference: flora-opt's code mixes the
///                                                       fresh U uncompressed with the decompressed old
///                                                       momentum, before the transfer)
///     D <- D / max(1, RMS(D) / clipThreshold)
///     W <- W - stepSize·wd·W ;  W <- W - stepSize·D
///
/// with stepSize transformers' `_get_lr` (`AdafactorRule.stepSize`). The projections are never
/// stored: A_k is a pure function of (seed, parameter name, k) and is regenerated when needed
/// (flora-opt derives integer seeds per parameter with `next_seed`; the stream differs, the
/// distribution is the same). Both variants share the compressed-momentum recursion and
/// agree exactly when b1 = 0; they differ in what is decompressed for the step. The paper's
/// Algorithm 2 decompresses the new momentum, m_t A_t; the momentum is taken over Adafactor's
/// normalised update, as flora-opt (and transformers' Adafactor beta1) does.
///
/// **Which parameters get compressed momentum** (flora-opt's `factored_momentum`): matrices
/// with b1 > 0, rank <= min(m, n) and max(m, n) / min(m, n) <= `maxAspectRatio` (4, "rule out
/// embeddings"). Others keep an uncompressed first moment (D = M = b1 M + (1 - b1) U, the two
/// variants coincide), or none when b1 is nil or 0 (then Flora is Adafactor with the clip
/// taken on U).
///
/// **Defaults** are flora-opt's `Flora` constructor where it has one, and its replication
/// script's momentum run otherwise: no relative step, parameter scaling on (step =
/// lr·max(1e-3, RMS(W))), decay rate -0.8, clip 1, eps (1e-30, 1e-3), weight decay 0,
/// kappa 1000; lr 1e-3, b1 0.9 and rank 256 from `replicate.sh` (flora-opt's own defaults are
/// lr None, b1 None and rank None, i.e. plain Adafactor).
///
/// **State** per compressed m x n matrix: r·max(m, n) (C) + m + n (Adafactor's factors) floats
/// and a step count; nothing for the projection. Checkpoint keys: Adafactor's (`step`,
/// `exp_avg_sq_row`, `exp_avg_sq_col` or `exp_avg_sq`) plus `exp_avg` (C, or the full first
/// moment). A gradient with a NaN or infinity is skipped (nothing changes).
public final class Flora: ParameterwiseOptimizer<Flora.State> {
    public enum Variant: String, CaseIterable, Sendable {
        /// The paper's Algorithm 2: the step decompresses the updated momentum (default).
        case paper
        /// flora-opt's code: (1 - b1) U + b1 · up(previous momentum).
        case reference
    }

    public struct State {
        /// Adafactor's second moment and step count (no first moment: Flora keeps its own).
        public var moments: AdafactorMoments
        /// The first moment: compressed (the projector's `projectedShape`) when `projector` is
        /// set, full otherwise; nil without momentum.
        public var momentum: Tensor?
        /// Describes the random projection (its matrix is never kept between steps).
        public var projector: Projector?
        /// Non-finite gradients skipped (not saved in checkpoints).
        public var skipped: Int = 0

        public var bytes: Int { moments.byteCount + (momentum?.byteCount ?? 0) + (projector?.bytes ?? 0) }
    }

    /// Adafactor's rule; its `beta1` must be nil (Flora's first moment is `beta1` below).
    public var rule: AdafactorRule
    public var beta1: Float?
    public var rank: Int
    /// Steps between resamplings of the projection (kappa).
    public var kappa: Int
    public var projection: ProjectionType
    public var seed: UInt64
    public var variant: Variant
    public var weightDecay: Float
    /// Matrices more elongated than this keep uncompressed momentum.
    public var maxAspectRatio: Float
    public override var name: String { "flora" }

    /// - Parameter learningRate: the external rate (required unless `rule.relativeStep`).
    /// - Throws: `ConfigurationError` for impossible settings.
    public init(
        learningRate: Float? = 1e-3, rule: AdafactorRule = AdafactorRule(relativeStep: false, scaleParameter: true),
        beta1: Float? = 0.9, rank: Int = 256, kappa: Int = 1000, projection: ProjectionType = .gaussian,
        seed: UInt64 = 0, variant: Variant = .paper, weightDecay: Float = 0, maxAspectRatio: Float = 4
    ) throws {
        guard rule.beta1 == nil else {
            throw ConfigurationError("flora keeps its own first moment: pass beta1 to Flora, not to its Adafactor rule")
        }
        guard rule.relativeStep || learningRate != nil else {
            throw ConfigurationError("flora without the relative step needs a learning rate")
        }
        if let lr = learningRate, !(lr > 0 && lr.isFinite) { throw ConfigurationError("learning rate must be positive, got \(lr)") }
        if let b1 = beta1, !(b1 >= 0 && b1 < 1) { throw ConfigurationError("beta1 must be in [0, 1), got \(b1)") }
        guard rank > 0 else { throw ConfigurationError("flora rank must be positive, got \(rank)") }
        guard kappa > 0 else { throw ConfigurationError("flora resampling interval (kappa) must be positive, got \(kappa)") }
        guard projection.isRandom else {
            throw ConfigurationError("flora needs a random projection (gaussian or rademacher), got \(projection.rawValue)")
        }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw ConfigurationError("weight decay must be non-negative, got \(weightDecay)")
        }
        guard maxAspectRatio >= 1 else { throw ConfigurationError("flora's aspect-ratio limit must be at least 1") }
        self.rule = rule; self.beta1 = beta1; self.rank = rank; self.kappa = kappa; self.projection = projection
        self.seed = seed; self.variant = variant; self.weightDecay = weightDecay; self.maxAspectRatio = maxAspectRatio
        super.init(learningRate: learningRate ?? 1)
    }

    /// Whether the rule keeps a first moment at all.
    public var usesMomentum: Bool { (beta1 ?? 0) > 0 }

    /// Whether `p`'s first moment is compressed (see the type's comment).
    public func compressesMomentum(_ p: some ParameterInfo) -> Bool {
        guard usesMomentum, p.shape.count == 2 else { return false }
        let lo = min(p.shape[0], p.shape[1]), hi = max(p.shape[0], p.shape[1])
        return lo > 0 && rank <= lo && Float(hi) / Float(lo) <= maxAspectRatio
    }

    /// The projection descriptor for `p` (nil when its momentum is not compressed).
    public func makeProjector(for p: some ParameterInfo) -> Projector? {
        guard compressesMomentum(p) else { return nil }
        return try? Projector(type: projection, shape: p.shape, rank: rank, gap: kappa, scale: 1, seed: seed, label: p.name)
    }

    /// A copy of `projector` holding the matrix of refresh index `index` (regenerated; `g` is
    /// any tensor of the parameter's shape, which random projections ignore).
    public func basis(_ projector: Projector, index: Int, gradient g: Tensor) -> Projector {
        var q = projector
        q.refresh(gradient: g, step: index * kappa)
        return q
    }

    /// The compressed momentum `c` moved from `old`'s basis to `new`'s:
    /// down_new(up_old(c)), computed through an r x r matrix (no m x n temporary).
    public static func transfer(_ c: Tensor, from old: Projector, to new: Projector) -> Tensor {
        let a = old.matrix!, b = new.matrix!
        if old.side == .right {
            // C is m x r and up(C) = C A: C' = C (A_old A_newᵀ).
            return c.matmul(a.matmul(b, transposeOther: true))
        } else {
            // C is r x n and up(C) = A C (A is m x r): C' = (A_newᵀ A_old) C.
            return b.matmul(a, transposeSelf: true).matmul(c)
        }
    }

    public override func makeState(for p: Parameter) -> State {
        let proj = makeProjector(for: p)
        let momentum: Tensor? = usesMomentum ? Tensor(zeros: proj?.projectedShape ?? p.shape) : nil
        return State(moments: rule.makeMoments(shape: p.shape), momentum: momentum, projector: proj)
    }

    public override func bytes(of s: State) -> Int { s.bytes }

    /// Adafactor's second moment for the full shape, the first moment (compressed when the
    /// matrix qualifies) and the projector's stored part (nothing: it is seeded).
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let proj = makeProjector(for: p)
        let momentum: [[Int]] = usesMomentum ? [proj?.projectedShape ?? p.shape] : []
        return rule.footprint(shape: p.shape) + StateFootprint(states: momentum) + (proj?.footprint ?? .none)
    }

    public override func encode(_ s: State) -> [String: Tensor] {
        if s.moments.step == 0 { return [:] }
        var out = s.moments.encode()
        if let m = s.momentum { out["exp_avg"] = m }
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        var s = makeState(for: p)
        let momentKeys = Array(s.moments.encode().keys)
        try OptimizerStateError.checkKeys(t, required: momentKeys + (usesMomentum ? ["exp_avg"] : []), parameter: p)
        s.moments = try AdafactorMoments.decode(t.filter { $0.key != "exp_avg" }, shape: p.shape, rule: rule, parameter: p)
        if let m = s.momentum {
            s.momentum = try OptimizerStateError.tensor(t, "exp_avg", shape: m.shape, parameter: p)
        }
        return s
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        guard isAllFinite(g) else { s.skipped += 1; return }
        let parameterRMS = rule.scaleParameter ? AdafactorRule.rms(p.value) : 0
        rule.advance(g, moments: &s.moments)
        let t = s.moments.step
        let stepSize = rule.stepSize(step: t, learningRate: lr, parameterRMS: parameterRMS)
        let d = rule.normalized(g, moments: s.moments)  // U, becomes the direction D in place
        if let b1 = beta1, b1 > 0, let c = s.momentum {
            if let proj = s.projector {
                let oldIndex = (t - 1) / kappa, newIndex = t / kappa
                let old = basis(proj, index: oldIndex, gradient: g)
                let new = newIndex == oldIndex ? old : basis(proj, index: newIndex, gradient: g)
                let down = new.project(d)
                if variant == .reference {
                    FastMath.scale(d.data, d.count, 1 - b1)
                    old.addBack(c, to: d, alpha: b1)
                }
                if newIndex != oldIndex { c.assign(Self.transfer(c, from: old, to: new)) }
                withExtendedLifetime(down) {
                    let cd = c.data, dd = down.data
                    for i in 0..<c.count { cd[i] = b1 * cd[i] + (1 - b1) * dd[i] }
                }
                if variant == .paper {
                    d.zero()
                    new.addBack(c, to: d, alpha: 1)
                }
            } else {
                let md = c.data, dd = d.data
                Parallel.ranges(d.count, grain: 1 << 15) { r in
                    for i in r {
                        md[i] = b1 * md[i] + (1 - b1) * dd[i]
                        dd[i] = md[i]
                    }
                }
            }
        }
        let scale = stepSize / rule.clipDivisor(rms: AdafactorRule.rms(d))
        if weightDecay != 0 { FastMath.scale(p.value.data, p.count, 1 - stepSize * weightDecay) }
        // Tensors free their storage on release: keep `d` alive while BLAS reads its pointer.
        withExtendedLifetime(d) { BLAS.axpy(p.count, -scale, d.data, p.value.data) }
    }
}

/// `flora`: Flora for every parameter, as flora-opt is used (`Flora(model.parameters())`;
/// embeddings, the head and vectors keep uncompressed momentum by its aspect-ratio and
/// shape rules), on an Adafactor rule.
public struct FloraSettings: MethodSettings {
    public var adafactor: AdafactorRuleSettings
    /// Flora's own first moment (0 turns momentum off).
    public var beta1: Float
    /// rank, `updateGap` = kappa (the resampling interval), a random projection type and seed.
    public var projection: ProjectionSettings
    /// `Flora.Variant`: "paper" (default) or "reference".
    public var variant: Flora.Variant
    public var weightDecay: Float

    /// flora-opt's defaults: lr 1e-3, beta1 0.9, rank 256, kappa 1000, Gaussian projections,
    /// the paper's variant, weight decay 0; Adafactor without the relative step but with
    /// parameter scaling (flora-opt's), transformers' eps, clip threshold and decay rate.
    public static let defaults = try! FloraSettings(resolving: OptimizerOptions())

    /// flora-opt's rank 256 and kappa 1000 with Gaussian projections (no scale, no SVD).
    public static let projectionDefaults = ProjectionSettings(rank: 256, updateGap: 1000, scale: nil, projectionType: .gaussian, svdBasis: nil)

    public init(resolving o: OptimizerOptions) throws {
        adafactor = try AdafactorRuleSettings(
            o, method: "flora", relativeStep: false, scaleParameter: true, beta1: nil, defaultLearningRate: 1e-3)
        variant = try OptimizerRegistry.choice(o.variant, default: Flora.Variant.paper, option: "flora variant")
        beta1 = o.beta1 ?? 0.9
        projection = try ProjectionSettings(o, defaults: Self.projectionDefaults)
        weightDecay = o.weightDecay ?? 0
    }

    /// The Adafactor rule's checks; the rest are `Flora`'s.
    public func validate() throws { try adafactor.validate() }

    public func build() throws -> RoutedOptimizer {
        let flora = try Flora(
            learningRate: adafactor.learningRate, rule: adafactor.rule, beta1: beta1, rank: projection.rank,
            kappa: projection.updateGap, projection: projection.projectionType, seed: projection.projectionSeed,
            variant: variant, weightDecay: weightDecay)
        return RoutedOptimizer(fallback: flora)
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.all, rule: "flora", self)]
    }
}

import SubspaceCore
import SubspaceModels

/// Q-GaLore (Zhang, Jaiswal, Yin, Liu, Zhao, Tian & Wang, "Q-GaLore: Quantized GaLore with
/// INT4 Projection and Layer-Adaptive Low-Rank Gradients", arXiv 2407.08296;
/// VITA-Group/Q-GaLore, `q-galore-torch` 1.0): GaLore-8bit whose projector is stored in
/// INT4 and refreshed lazily.
///
/// For each matrix W with gradient G, at step t (counted from 0 before the update, as
/// GaLore's projector sees it) and the matrix's current gap T:
///
///     if no P yet or t % T == 0:
///         P' = SVD basis of G (as `Projector`, sign-normalized); v = P's first singular vector
///         s  = cos(v_prev, v), kept in a window of the last k values  (lazy subspace refresh)
///         if the window is full and similar: T <- gamma · T
///         P  = INT4(P')                    (`GroupQuantizedTensor`, groups of 256, per-group
///                                            scale and zero point)
///     R = project(G) with P dequantized
///     8-bit Adam on R (bitsandbytes' step, `ProjectedAdam` with `StateQuantization`)
///     W <- W - lr/(1 - b1^t) · scale · projectBack(M / (sqrt(V)/sqrt(1 - b2^t) + eps)) ;  W <- W - lr·wd·W
///
/// **Lazy refresh: paper vs code.** The paper doubles a layer's gap when the cosine
/// similarity between successive projectors stays at or above 40% over k checks. The code
/// keeps the last `queue_size` = 5 similarities of the first singular vector (P's first row
/// on the right side, first column on the left) and multiplies the gap by `gamma_proj` = 2
/// whenever their *mean* is at least `cos_threshold` = 0.4, at every refresh once the window
/// is full (so a stable layer keeps doubling). `LazyRule.paper` (default) requires every
/// similarity in the window to reach the threshold; `LazyRule.reference` is the code's mean.
/// Both compare the first singular vectors, in float32 before quantization, as the code does;
/// our sign normalization of singular vectors makes the signed cosine meaningful.
///
/// **Scope.** Q-GaLore also keeps the weights in INT8 (groups of 256, stochastic rounding);
/// that is not done here: weights stay float32, so this is Q-GaLore's optimizer (INT4
/// projector, lazy refresh, 8-bit states) on full-precision weights. Only the SVD projection
/// types can be quantized (the random ones store nothing); the reference supports `std`
/// only. A group may be shorter than 256 at the end of P (the reference requires r·min(m, n)
/// to be a multiple of the group size).
///
/// Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8 and block size 256 / minimum size 4096 for
/// the 8-bit states (bitsandbytes' `AdamW8bit`, which Q-GaLore subclasses), weight decay 0
/// (Q-GaLore's scripts), rank 128, gap 200, scale 0.25 (GaLore's C4 settings, which Q-GaLore
/// keeps), INT4 with groups of 256, threshold 0.4, window 5, gamma 2 (`run_pretrain.py`).
///
/// State per m x n matrix: the 8-bit moments of R (2r·max(m, n) bytes plus 8 per block),
/// ceil(r·min(m, n)/2) bytes of INT4 codes plus 5 bytes per group (float32 scale, one-byte
/// zero point), the previous first singular vector (min(m, n) floats for `std`) and the
/// similarity window (at most k floats). During a step P is dequantized into a float working
/// copy that is dropped afterwards. Checkpoint keys: `step`, the moment keys, `ortho_matrix`
/// (codes), `ortho_matrix_scales`, `ortho_matrix_zeros`, `update_proj_gap`, `svd_count` and,
/// once there are any, `past_ortho_vector` and `queue` (the reference's attribute names).
public final class QGaLore: ParameterwiseOptimizer<QGaLore.State> {
    public enum LazyRule: String, Sendable, CaseIterable {
        /// Every similarity in the full window at or above the threshold (the paper's
        /// wording; default).
        case paper
        /// The window's mean at or above the threshold (q-galore-torch's code).
        case reference
    }

    public struct State {
        /// Step count, moments and (for matrices) a projector that describes P's shape and
        /// side but holds no matrix between steps.
        public var base: ProjectedAdam.State
        /// P in `bits`-bit codes; nil before the first step and for non-matrices.
        public var basis: GroupQuantizedTensor?
        /// The current refresh gap T.
        public var gap: Int
        /// The first singular vector at the last refresh.
        public var previousVector: [Float]?
        /// The last (at most `queueSize`) cosine similarities.
        public var similarities: [Float] = []
        /// SVD refreshes so far.
        public var refreshes: Int = 0
    }

    public var settings: ProjectedAdam
    public var bits: Int, groupSize: Int
    public var threshold: Float, queueSize: Int, growth: Int
    public var rule: LazyRule
    public override var name: String { "qgalore" }

    /// - Throws: `ConfigurationError` for impossible hyperparameters or a random projection
    ///   type.
    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
        weightDecay: Float = 0, rank: Int = 128, updateGap: Int = 200, scale: Float = 0.25,
        projection: ProjectionType = .std, seed: UInt64 = 0, bits: Int = 4, groupSize: Int = 256,
        threshold: Float = 0.4, queueSize: Int = 5, growth: Int = 2, rule: LazyRule = .paper,
        quantization: StateQuantization? = nil
    ) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw ConfigurationError("learning rate must be positive, got \(learningRate)")
        }
        guard !projection.isRandom else {
            throw ConfigurationError("qgalore quantizes a stored SVD projector; projection type '\(projection.rawValue)' stores none")
        }
        try GroupQuantizedTensor.validate(bits: bits, groupSize: groupSize)
        guard threshold >= -1, threshold <= 1 else {
            throw ConfigurationError("qgalore similarity threshold must be in [-1, 1], got \(threshold)")
        }
        guard queueSize >= 1 else { throw ConfigurationError("qgalore queue size must be at least 1, got \(queueSize)") }
        guard growth >= 1 else { throw ConfigurationError("qgalore gap growth factor must be at least 1, got \(growth)") }
        settings = try ProjectedAdam(
            rank: rank, updateGap: updateGap, scale: scale, projection: projection, seed: seed,
            beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
        settings.quantization = try quantization ?? StateQuantization()
        self.bits = bits; self.groupSize = groupSize
        self.threshold = threshold; self.queueSize = queueSize; self.growth = growth; self.rule = rule
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State {
        State(base: settings.makeState(for: p), gap: settings.updateGap)
    }

    public override func bytes(of s: State) -> Int {
        s.base.moments.bytes + (s.basis?.bytes ?? 0)
            + MemoryLayout<Float>.size * ((s.previousVector?.count ?? 0) + s.similarities.count)
    }

    /// After one step: the 8-bit moments, the quantized P and the first singular vector
    /// (the similarity window is still empty; it grows to `queueSize` floats).
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let base = settings.footprint(for: p)
        guard let proj = settings.makeProjector(for: p) else { return base }
        return StateFootprint(
            states: base.states + [StateFootprint.Entry([proj.side == .left ? proj.rows : proj.cols])],
            projectors: [StateFootprint.Entry(proj.matrixShape, .groupQuantized(bits: bits, groupSize: groupSize))])
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        for i in 0..<g.count where !g.data[i].isFinite {
            s.base.skipped += 1
            return
        }
        guard var proj = s.base.projector else {
            let step = settings.adamStep(g, state: &s.base, lr: lr)
            settings.applyDirection(step.n, to: p.value, stepSize: step.stepSize, projector: nil)
            settings.decay(p.value, lr: lr)
            return
        }
        if s.basis == nil || s.base.step % s.gap == 0 {
            // `proj` holds no matrix, so `refresh` runs the SVD (or, for a zero gradient
            // with no P yet, starts from the coordinate axes).
            let refreshed = proj.refresh(gradient: g, step: s.base.step)
            if refreshed || s.basis == nil, let fresh = proj.matrix {
                if refreshed { observe(fresh, side: proj.side, state: &s) }
                s.basis = GroupQuantizedTensor(quantizing: fresh, bits: bits, groupSize: groupSize)
            }
        }
        guard let basis = s.basis else { return }
        do {
            try proj.decode(["ortho_matrix": basis.dequantized()], for: p)
        } catch {
            preconditionFailure("dequantized projector does not fit its own shape: \(error)")
        }
        let r = proj.project(g)
        let step = settings.adamStep(r, state: &s.base, lr: lr)
        settings.applyDirection(step.n, to: p.value, stepSize: step.stepSize, projector: proj)
        settings.decay(p.value, lr: lr)
    }

    /// The lazy-refresh bookkeeping for a freshly computed P.
    func observe(_ p: Tensor, side: Projector.Side, state s: inout State) {
        let v = Self.firstVector(p, side: side)
        if let prev = s.previousVector {
            s.similarities.append(Self.cosine(prev, v))
            if s.similarities.count > queueSize { s.similarities.removeFirst(s.similarities.count - queueSize) }
            if s.similarities.count == queueSize && similar(s.similarities) {
                let (grown, overflow) = s.gap.multipliedReportingOverflow(by: growth)
                s.gap = overflow ? Int.max / 2 : min(grown, 1 << 40)
            }
        }
        s.previousVector = v
        s.refreshes += 1
    }

    /// Whether a full window of similarities passes `rule`.
    func similar(_ window: [Float]) -> Bool {
        switch rule {
        case .paper: return window.allSatisfy { $0 >= threshold }
        case .reference: return window.reduce(0.0) { $0 + Double($1) } / Double(window.count) >= Double(threshold)
        }
    }

    /// P's first singular vector: its first column (left side, P is m x r) or first row
    /// (right side, P is r x n).
    static func firstVector(_ p: Tensor, side: Projector.Side) -> [Float] {
        let rows = p.shape[0], cols = p.shape[1]
        return side == .left ? (0..<rows).map { p.data[$0 * cols] } : Array(UnsafeBufferPointer(start: p.data, count: cols))
    }

    /// x·y / max(|x| |y|, 1e-8), in double (torch's cosine_similarity up to rounding).
    static func cosine(_ x: [Float], _ y: [Float]) -> Float {
        var dot = 0.0, xx = 0.0, yy = 0.0
        for i in 0..<x.count {
            dot += Double(x[i]) * Double(y[i]); xx += Double(x[i]) * Double(x[i]); yy += Double(y[i]) * Double(y[i])
        }
        return Float(dot / max((xx * yy).squareRoot(), 1e-8))
    }

    // MARK: Checkpoints

    public override func encode(_ s: State) -> [String: Tensor] {
        if s.base.step == 0 { return [:] }
        var out = s.base.moments.encode()
        out["step"] = Tensor(shape: [1], values: [Float(s.base.step)])
        guard let basis = s.basis else { return out }
        let q = basis.encode()
        out["ortho_matrix"] = q.codes
        out["ortho_matrix_scales"] = q.scales
        out["ortho_matrix_zeros"] = q.zeros
        out["update_proj_gap"] = Tensor(shape: [1], values: [Float(s.gap)])
        out["svd_count"] = Tensor(shape: [1], values: [Float(s.refreshes)])
        if let v = s.previousVector { out["past_ortho_vector"] = Tensor(shape: [v.count], values: v) }
        if !s.similarities.isEmpty { out["queue"] = Tensor(shape: [s.similarities.count], values: s.similarities) }
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        let proj = settings.makeProjector(for: p)
        let shape = proj?.projectedShape ?? p.shape
        let projectorKeys = ["ortho_matrix", "ortho_matrix_scales", "ortho_matrix_zeros", "update_proj_gap", "svd_count"]
        try OptimizerStateError.checkKeys(
            t, required: ["step"] + AdamMomentStorage.keys(elements: shape.reduce(1, *), quantization: settings.quantization)
                + (proj == nil ? [] : projectorKeys),
            optional: proj == nil ? [] : ["past_ortho_vector", "queue"], parameter: p)
        func count(_ key: String, max: Float) throws -> Int {
            let x = try OptimizerStateError.tensor(t, key, shape: [1], parameter: p)[0]
            guard x >= 0, x <= max, x == x.rounded() else {
                throw OptimizerStateError.invalidValue(parameter: p.name, key: key, reason: "\(x) is not a count")
            }
            return Int(x)
        }
        let step = try count("step", max: 16_777_216)
        let moments = try AdamMomentStorage.decode(t, shape: shape, quantization: settings.quantization, parameter: p)
        var s = State(base: ProjectedAdam.State(step: step, moments: moments, projector: proj), gap: settings.updateGap)
        guard let proj else { return s }
        s.basis = try GroupQuantizedTensor.decode(
            codes: t["ortho_matrix"]!, scales: t["ortho_matrix_scales"]!, zeros: t["ortho_matrix_zeros"]!,
            shape: proj.matrixShape, bits: bits, groupSize: groupSize, parameter: p, key: "ortho_matrix")
        s.gap = try count("update_proj_gap", max: Float(1 << 40))
        guard s.gap >= 1 else {
            throw OptimizerStateError.invalidValue(parameter: p.name, key: "update_proj_gap", reason: "0 is not a gap")
        }
        s.refreshes = try count("svd_count", max: 16_777_216)
        if t["past_ortho_vector"] != nil {
            let n = proj.side == .left ? proj.rows : proj.cols
            let v = try OptimizerStateError.tensor(t, "past_ortho_vector", shape: [n], parameter: p).array
            guard v.allSatisfy(\.isFinite) else {
                throw OptimizerStateError.invalidValue(parameter: p.name, key: "past_ortho_vector", reason: "not finite")
            }
            s.previousVector = v
        }
        if let q = t["queue"] {
            guard q.shape.count == 1, q.count >= 1, q.count <= queueSize, q.array.allSatisfy({ $0.isFinite && abs($0) <= 1.001 }) else {
                throw OptimizerStateError.invalidValue(
                    parameter: p.name, key: "queue", reason: "expected 1...\(queueSize) similarities, got shape \(q.shape)")
            }
            s.similarities = q.array
        }
        return s
    }
}

/// `qgalore`: Q-GaLore on the attention and MLP matrices, `AdamW8bit` with the same lr,
/// betas, eps and weight decay on everything else, the reference's single 8-bit optimizer
/// with two parameter groups.
public struct QGaLoreSettings: MethodSettings {
    public var adam: AdamWSettings
    public var projection: ProjectionSettings
    /// Bits per projector entry (1, 2, 4 or 8).
    public var projectionBits: Int
    /// Entries per quantization group of P.
    public var projectionGroupSize: Int
    /// Cosine similarity of successive first singular vectors at which the gap grows.
    public var lazyThreshold: Float
    /// Similarities looked at.
    public var lazyQueueSize: Int
    /// Factor the gap grows by.
    public var lazyGrowth: Int
    /// `QGaLore.LazyRule` (`--variant`): "paper" (every similarity passes, default) or
    /// "reference" (their mean).
    public var lazyRule: QGaLore.LazyRule
    public var quantization: QuantizationSettings
    /// `AdamW8bit` with the same values.
    public var unprojected: AdamW8bitSettings

    /// Q-GaLore's `run_pretrain.py`: lr 1e-3, betas (0.9, 0.999), eps 1e-8 (bitsandbytes'),
    /// weight decay 0 (its scripts'); `ProjectionSettings.galore`; INT4 projectors in groups
    /// of 256 (the paper's INT4 with the group size of its quantizer); lazy refresh at
    /// threshold 0.4 over a window of 5, doubling the gap (`cos_threshold`, `queue_size`,
    /// `gamma_proj`); the paper's all-similarities rule; bitsandbytes' 8-bit layout.
    public static let defaults = try! QGaLoreSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        unprojected = AdamW8bitSettings(o, weightDecay: 0)
        adam = unprojected.adamw
        quantization = unprojected.quantization
        projection = try ProjectionSettings(o, defaults: .galore)
        projectionBits = o.projectionBits ?? 4
        projectionGroupSize = o.projectionGroupSize ?? 256
        lazyThreshold = o.lazyThreshold ?? 0.4
        lazyQueueSize = o.lazyQueueSize ?? 5
        lazyGrowth = o.lazyGrowth ?? 2
        lazyRule = try OptimizerRegistry.choice(o.variant, default: QGaLore.LazyRule.paper, option: "--variant")
    }

    /// Shared checks here; the bits, group size and lazy-refresh limits are `QGaLore`'s.
    public func validate() throws {
        try adam.validate()
        try projection.validate()
        try quantization.validate()
    }

    public func build() throws -> RoutedOptimizer {
        let q = try QGaLore(
            learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, weightDecay: adam.weightDecay,
            rank: projection.rank, updateGap: projection.updateGap, scale: projection.scale ?? 1,
            projection: projection.projectionType, seed: projection.projectionSeed,
            bits: projectionBits, groupSize: projectionGroupSize, threshold: lazyThreshold, queueSize: lazyQueueSize,
            growth: lazyGrowth, rule: lazyRule, quantization: try quantization.make())
        q.settings.basisAlgorithm = projection.svdBasis ?? .gram
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, q)], fallback: try unprojected.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "qgalore", adam, projection, quantization, QGaLoreView(self)),
         unprojected.group(ResolvedOptimizer.Group.others)]
    }
}

/// Q-GaLore's own values, for descriptions.
struct QGaLoreView: Encodable {
    var projectionBits: Int, projectionGroupSize: Int, lazyThreshold: Float, lazyQueueSize: Int, lazyGrowth: Int
    var lazyRule: QGaLore.LazyRule
    init(_ s: QGaLoreSettings) {
        projectionBits = s.projectionBits; projectionGroupSize = s.projectionGroupSize; lazyThreshold = s.lazyThreshold
        lazyQueueSize = s.lazyQueueSize; lazyGrowth = s.lazyGrowth; lazyRule = s.lazyRule
    }
}

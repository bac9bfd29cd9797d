import SubspaceCore
import SubspaceModels

/// MKOR, the momentum-enabled Kronecker-factor optimizer with rank-1 updates (Mozaffari,
/// Li, Zhang, Mehri Dehnavi, NeurIPS 2023, arXiv 2306.01685; `Mohammad-Mozaffari/mkor`).
///
/// For a linear slot y = W x with W [out, in], MKOR approximates the Fisher block by a
/// Kronecker product L ⊗ R of an output-gradient factor L [out, out] and an input factor
/// R [in, in], each an exponential running average of rank-1 statistics (the batch means
/// of `SlotStatistics`: g for L, a for R), and keeps only their inverses, updated every
/// `factorInterval` steps by Sherman–Morrison (`InverseFactor`), never inverted. Every step:
///
///     U = L⁻¹ G R⁻¹
///     U <- U · ‖G‖_F / ‖U‖_F                  (the preconditioned step keeps the gradient's norm)
///
/// and U goes to the inner first-order rule (`Inner`: Adam or SGD with momentum, the
/// reference's two choices), which owns the learning rate, momentum and weight decay. The
/// rules are reused by composition: MKOR keeps an `AdamW.State` or `SGD.State` per parameter
/// and calls `AdamW.apply` / `SGD.apply` with U in place of G.
///
/// Statistics come from the model's slot observers (`SlotStatisticsConsumer`): the step rule
/// attaches them on factor-update steps only. Without statistics for a parameter (a rule
/// stepped outside `BackpropStep`, or the first steps of a factor interval) the current
/// factors are used; at the start they are the identity, so U = G.
///
/// A parameter that is not a matrix gets the inner rule alone. Statistics are keyed by the
/// slot's weight (`<slot path>.weight`), so only dense slots are preconditioned; other
/// matrices routed here would see identity factors.
///
/// **State** per [out, in] matrix: L⁻¹ (out²) and R⁻¹ (in²) in float32 (the reference keeps
/// them in fp16 on GPUs) plus the inner rule's (Adam 2·out·in, SGD with momentum out·in).
/// Checkpoint keys: `left_inverse`, `right_inverse`, `reset_pending` (1 float) and the inner
/// rule's own (`step`, `exp_avg`, `exp_avg_sq` or `momentum_buffer`); with MKOR-H also
/// `mkor_h_switch` (`MKORHybridSwitch`), and after the switch no factors.
public final class MKOR: ParameterwiseOptimizer<MKOR.State>, SlotStatisticsConsumer, LossObserving {
    /// The first-order rule that steps the preconditioned gradient.
    public enum Inner: String, CaseIterable, Codable, Sendable {
        /// `AdamW` (torch semantics; decoupled weight decay).
        case adam
        /// `SGD` with momentum (torch semantics).
        case sgd
    }

    public struct State {
        /// L⁻¹ [out, out] and R⁻¹ [in, in]; nil for non-matrices and after MKOR-H's switch.
        public var left: Tensor?
        public var right: Tensor?
        /// The next factor update is a reset (an entry exceeded the threshold).
        public var resetPending = false
        public var adam: AdamW.State?
        public var sgd: SGD.State?
    }

    public let inner: Inner
    /// The inner rules (their learning rate is ignored: MKOR passes its own).
    public let adamRule: AdamW
    public let sgdRule: SGD
    public var factor: InverseFactor
    /// Steps between factor updates (the reference's `inv_freq`).
    public var factorInterval: Int
    /// Clamp of the statistics (the reference's `clipping_value`).
    public var statisticsClip: Float
    /// MKOR-H's switch; nil for plain MKOR.
    public private(set) var hybrid: MKORHybridSwitch?
    /// Statistics gathered this step, by weight name.
    private var pending: [String: SlotStatistics] = [:]

    public override var name: String { hybrid == nil ? "mkor" : "mkor-h" }

    public init(
        learningRate: Float, inner: Inner, adam: AdamW, sgd: SGD, factor: InverseFactor, factorInterval: Int,
        statisticsClip: Float = 100, hybrid: MKORHybridSwitch? = nil
    ) {
        self.inner = inner; self.adamRule = adam; self.sgdRule = sgd; self.factor = factor
        self.factorInterval = factorInterval; self.statisticsClip = statisticsClip; self.hybrid = hybrid
        super.init(learningRate: learningRate)
    }

    /// Whether MKOR-H has switched to the inner rule alone.
    public var switched: Bool { hybrid?.switched ?? false }

    // MARK: Statistics

    public func wantsStatistics(atStep step: Int) -> Bool {
        pending.removeAll(keepingCapacity: true)
        return !switched && step % factorInterval == 0
    }

    private func statistics(_ slot: LinearSlotSpec) -> String { "\(slot.path).weight" }

    public func observeInput(_ slot: LinearSlotSpec, _ x: ActivationView) {
        let key = statistics(slot)
        var s = pending.removeValue(forKey: key) ?? SlotStatistics(inFeatures: slot.inFeatures, outFeatures: slot.outFeatures)
        s.addInput(x)
        pending[key] = s
    }

    public func observeOutputGradient(_ slot: LinearSlotSpec, _ dy: ActivationView) {
        let key = statistics(slot)
        var s = pending.removeValue(forKey: key) ?? SlotStatistics(inFeatures: slot.inFeatures, outFeatures: slot.outFeatures)
        s.addOutputGradient(dy)
        pending[key] = s
    }

    public func observeLoss(_ loss: Float) { hybrid?.observe(loss) }

    /// Hands statistics over directly (tests, or a caller without a model).
    public func setStatistics(_ s: SlotStatistics, for parameterName: String) { pending[parameterName] = s }

    // MARK: The rule

    public override func makeState(for p: Parameter) -> State {
        var s = State()
        if p.shape.count == 2 && !switched {
            s.left = InverseFactor.identity(p.shape[0])
            s.right = InverseFactor.identity(p.shape[1])
        }
        switch inner {
        case .adam: s.adam = adamRule.makeState(for: p)
        case .sgd: s.sgd = sgdRule.makeState(for: p)
        }
        return s
    }

    /// One factor update from `stats`: a reset if one is pending, else Sherman–Morrison on
    /// both inverses; then the threshold check for both factors of the layer.
    public func updateFactors(_ s: inout State, with stats: SlotStatistics) {
        guard let left = s.left, let right = s.right else { return }
        if s.resetPending {
            factor.reset(left)
            factor.reset(right)
        } else {
            let (a, g) = stats.vectors(clip: statisticsClip)
            factor.update(right, with: a.data)
            factor.update(left, with: g.data)
        }
        s.resetPending = factor.needsReset(left) || factor.needsReset(right)
    }

    /// L⁻¹ G R⁻¹ rescaled to ‖G‖ (a new tensor), or `g` itself when the product has no norm
    /// to rescale (zero or not finite: the reference skips those too).
    public static func precondition(_ g: Tensor, left: Tensor, right: Tensor) -> Tensor {
        let m = g.shape[0], n = g.shape[1]
        let t = Tensor(uninitialized: g.shape), u = Tensor(uninitialized: g.shape)
        BLAS.gemm(m: m, n: n, k: m, a: left.data, lda: m, b: g.data, ldb: n, c: t.data, ldc: n)
        BLAS.gemm(m: m, n: n, k: n, a: t.data, lda: n, b: right.data, ldb: n, c: u.data, ldc: n)
        let gn = BLAS.nrm2(g.count, g.data), un = BLAS.nrm2(u.count, u.data)
        guard un > 0, un.isFinite, gn.isFinite else { return g }
        FastMath.scale(u.data, u.count, gn / un)
        return u
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        let stats = pending.removeValue(forKey: p.name)
        var direction = g
        if switched {
            s.left = nil; s.right = nil; s.resetPending = false
        } else if let left = s.left, let right = s.right {
            if let stats, stats.isComplete { updateFactors(&s, with: stats) }
            direction = MKOR.precondition(g, left: left, right: right)
        }
        switch inner {
        case .adam:
            var a = s.adam ?? adamRule.makeState(for: p)
            adamRule.apply(p, gradient: direction, state: &a, lr: lr)
            s.adam = a
        case .sgd:
            var b = s.sgd ?? sgdRule.makeState(for: p)
            sgdRule.apply(p, gradient: direction, state: &b, lr: lr)
            s.sgd = b
        }
    }

    // MARK: Memory and checkpoints

    public override func bytes(of s: State) -> Int {
        (s.left?.byteCount ?? 0) + (s.right?.byteCount ?? 0) + (s.adam.map(adamRule.bytes(of:)) ?? 0)
            + (s.sgd.map(sgdRule.bytes(of:)) ?? 0)
    }

    /// The inner rule's state plus, for a matrix, L⁻¹ [out, out] and R⁻¹ [in, in] (the
    /// MKOR phase; MKOR-H frees the factors when it switches).
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let innerState = inner == .adam ? adamRule.stateFootprint(for: p) : sgdRule.stateFootprint(for: p)
        guard let innerState else { return nil }
        guard p.shape.count == 2 else { return innerState }
        return StateFootprint(states: [[p.shape[0], p.shape[0]], [p.shape[1], p.shape[1]]]) + innerState
    }

    static let factorKeys = ["left_inverse", "right_inverse", "reset_pending"]

    public override func encode(_ s: State) -> [String: Tensor] {
        var out = s.adam.map(adamRule.encode) ?? s.sgd.map(sgdRule.encode) ?? [:]
        if !switched, let left = s.left, let right = s.right {
            out["left_inverse"] = left
            out["right_inverse"] = right
            out["reset_pending"] = Tensor(shape: [1], values: [s.resetPending ? 1 : 0])
        }
        if let hybrid { out[MKORHybridSwitch.key] = hybrid.encode() }
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        var rest = t
        var restoredSwitch: MKORHybridSwitch?
        if let hybrid {
            guard let h = rest.removeValue(forKey: MKORHybridSwitch.key) else {
                throw OptimizerStateError.missingTensor(parameter: p.name, key: MKORHybridSwitch.key)
            }
            restoredSwitch = try hybrid.decoded(h, parameter: p)
        }
        let isSwitched = restoredSwitch?.switched ?? false
        var s = State()
        if p.shape.count == 2 && !isSwitched {
            s.left = try OptimizerStateError.tensor(rest, "left_inverse", shape: [p.shape[0], p.shape[0]], parameter: p)
            s.right = try OptimizerStateError.tensor(rest, "right_inverse", shape: [p.shape[1], p.shape[1]], parameter: p)
            let flag = try OptimizerStateError.tensor(rest, "reset_pending", shape: [1], parameter: p)[0]
            guard flag == 0 || flag == 1 else {
                throw OptimizerStateError.invalidValue(parameter: p.name, key: "reset_pending", reason: "\(flag) is not 0 or 1")
            }
            s.resetPending = flag == 1
            for k in MKOR.factorKeys { rest[k] = nil }
        }
        switch inner {
        case .adam: s.adam = try adamRule.decode(rest, for: p)
        case .sgd: s.sgd = try sgdRule.decode(rest, for: p)
        }
        if let restoredSwitch { hybrid = restoredSwitch }
        return s
    }
}

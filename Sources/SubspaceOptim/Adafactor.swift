import Foundation
import SubspaceCore
import SubspaceModels

/// Adafactor's update rule (Shazeer & Stern, 2018) on one gradient-shaped buffer, with
/// `transformers.optimization.Adafactor`'s semantics, separate from any parameter so that
/// projected methods (GaLore-Adafactor runs it on the projected gradient R, Flora on the full
/// gradient with compressed momentum) can reuse it.
///
/// One step at step count t (counted from 1):
///
///     beta2_t = 1 - t^decayRate                               (decayRate -0.8)
///     u = g^2 + eps1
///     >= 2-D: row <- beta2_t row + (1 - beta2_t) mean_j u     (one value per row, shape[:-1])
///             col <- beta2_t col + (1 - beta2_t) mean_i u     (one per column, shape[:-2] + [last])
///             U = (rsqrt(row / mean(row)) x rsqrt(col)) * g   (factored estimate of g / sqrt(v))
///     1-D:    v <- beta2_t v + (1 - beta2_t) u ;  U = rsqrt(v) * g
///     U <- U / max(1, RMS(U) / clipThreshold)                 (update clipping)
///     U <- stepSize * U
///     with beta1: m <- beta1 m + (1 - beta1) U ; U = m       (momentum of the scaled update)
///
/// and the caller applies `p <- p - stepSize * weightDecay * p ; p <- p - U` (transformers'
/// weight decay: scaled by the same step size, taken before the update). The step size is
/// transformers' `_get_lr` (`stepSize(step:learningRate:parameterRMS:)`):
///
///     rel = relativeStep ? min(warmupInit ? 1e-6 t : 1e-2, 1 / sqrt(t)) : lr
///     stepSize = rel * (scaleParameter ? max(eps2, RMS(p)) : 1)
///
/// where RMS(p) is the parameter's before this step. Factored tensors with more than two
/// dimensions are factored over their last two, batched over the leading ones, as torch's
/// broadcasting does.
public struct AdafactorRule: Equatable, Sendable {
    /// Regulariser added to g^2 (transformers' `eps[0]`, 1e-30).
    public var eps1: Float
    /// Floor of the parameter RMS when `scaleParameter` is on (`eps[1]`, 1e-3).
    public var eps2: Float
    /// Largest RMS of the normalised update (1.0).
    public var clipThreshold: Float
    /// Exponent of the second-moment decay: beta2_t = 1 - t^decayRate (-0.8).
    public var decayRate: Float
    /// First-moment coefficient, or nil for no first moment (transformers' default).
    public var beta1: Float?
    /// Use the time-dependent step min(1e-2, 1/sqrt(t)) instead of an external rate.
    public var relativeStep: Bool
    /// Scale the step by the parameter's RMS (at least `eps2`).
    public var scaleParameter: Bool
    /// With `relativeStep`, warm the step up as 1e-6 t instead of starting at 1e-2.
    public var warmupInit: Bool

    public init(
        eps1: Float = 1e-30, eps2: Float = 1e-3, clipThreshold: Float = 1, decayRate: Float = -0.8,
        beta1: Float? = nil, relativeStep: Bool = true, scaleParameter: Bool = true, warmupInit: Bool = false
    ) {
        self.eps1 = eps1; self.eps2 = eps2; self.clipThreshold = clipThreshold; self.decayRate = decayRate
        self.beta1 = beta1; self.relativeStep = relativeStep; self.scaleParameter = scaleParameter
        self.warmupInit = warmupInit
    }

    /// Whether a gradient of `shape` gets the factored (row and column) second moment.
    public static func isFactored(_ shape: [Int]) -> Bool { shape.count >= 2 }

    /// Fresh state for a gradient of `shape`.
    public func makeMoments(shape: [Int]) -> AdafactorMoments {
        let factored = Self.isFactored(shape)
        return AdafactorMoments(
            step: 0,
            row: factored ? Tensor(zeros: Array(shape.dropLast())) : nil,
            col: factored ? Tensor(zeros: Array(shape.dropLast(2)) + [shape.last!]) : nil,
            full: factored ? nil : Tensor(zeros: shape),
            expAvg: beta1 != nil ? Tensor(zeros: shape) : nil)
    }

    /// The tensors `makeMoments(shape:)` allocates, by shape: row and column factors (or the
    /// full second moment for 1-D), plus the first moment with beta1.
    public func footprint(shape: [Int]) -> StateFootprint {
        let second = Self.isFactored(shape) ? [Array(shape.dropLast()), Array(shape.dropLast(2)) + [shape.last!]] : [shape]
        return StateFootprint(states: second + (beta1 != nil ? [shape] : []))
    }

    /// beta2_t = 1 - t^decayRate.
    public func beta2(step: Int) -> Float {
        Float(1 - Foundation.pow(Double(step), Double(decayRate)))
    }

    /// transformers' `_get_lr` for step `step` (already counted). `learningRate` is the
    /// external rate, or with `relativeStep` a multiplier of the relative step (1 reproduces
    /// transformers; Subspace's schedule multiplier lands here). `parameterRMS` is the RMS of
    /// the parameter before the step; it only matters with `scaleParameter`.
    public func stepSize(step: Int, learningRate: Float, parameterRMS: Float) -> Float {
        var rel = learningRate
        if relativeStep {
            let t = Double(step)
            let minStep = warmupInit ? 1e-6 * t : 1e-2
            rel = learningRate * Float(min(minStep, 1 / t.squareRoot()))
        }
        return scaleParameter ? rel * max(eps2, parameterRMS) : rel
    }

    /// ||t|| / sqrt(count) (BLAS `snrm2`, which scales to avoid overflow).
    public static func rms(_ t: Tensor) -> Float {
        guard t.count > 0 else { return 0 }
        return BLAS.nrm2(t.count, t.data) / Float(t.count).squareRoot()
    }

    /// The divisor of update clipping: max(1, rms / clipThreshold).
    public func clipDivisor(rms: Float) -> Float { max(1, rms / clipThreshold) }

    /// Counts the step and folds `g` into the second moment (the first three lines of the
    /// rule). Call once per step before `normalized`, `normalizedRMS` or `update`.
    public func advance(_ g: Tensor, moments s: inout AdafactorMoments) {
        precondition(g.shape == s.shape, "Adafactor: gradient \(g.shape) for state of \(s.shape)")
        s.step += 1
        let b2 = beta2(step: s.step), eps1 = eps1
        if let full = s.full {
            let v = full.data, gd = g.data
            Parallel.ranges(g.count, grain: 1 << 15) { r in
                for i in r { v[i] = b2 * v[i] + (1 - b2) * (gd[i] * gd[i] + eps1) }
            }
            return
        }
        let (batches, rows, cols) = Self.matrixView(g.shape)
        let row = s.row!.data, col = s.col!.data
        let chunks = Self.rowChunks(rows: rows, cols: cols)
        // Column sums per chunk in Double, combined in chunk order (deterministic).
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: max(1, chunks.count * cols))
        defer { partial.deallocate() }
        for b in 0..<batches {
            let gb = g.data + b * rows * cols
            partial.initialize(repeating: 0, count: chunks.count * cols)
            Parallel.perform(chunks.count) { c in
                let acc = partial + c * cols
                let e8 = SIMD8<Float>(repeating: eps1)
                for i in chunks[c] {
                    let gr = gb + i * cols
                    var lanes = SIMD8<Float>()
                    var j = 0
                    while j + 8 <= cols {
                        let g8 = Self.load(gr + j)
                        let u8 = g8 * g8 + e8
                        lanes += u8
                        let a8 = UnsafeMutableRawPointer(acc + j)
                        a8.storeBytes(of: a8.loadUnaligned(as: SIMD8<Double>.self) + SIMD8<Double>(u8), as: SIMD8<Double>.self)
                        j += 8
                    }
                    var rs = Double(lanes.sum())
                    while j < cols {
                        let u = gr[j] * gr[j] + eps1
                        rs += Double(u); acc[j] += Double(u)
                        j += 1
                    }
                    let ri = b * rows + i
                    row[ri] = b2 * row[ri] + (1 - b2) * Float(rs / Double(cols))
                }
            }
            for j in 0..<cols {
                var cs = 0.0
                for c in 0..<chunks.count { cs += partial[c * cols + j] }
                let ci = b * cols + j
                col[ci] = b2 * col[ci] + (1 - b2) * Float(cs / Double(rows))
            }
        }
    }

    /// The normalised update U = g / sqrt(v_hat) as a new tensor, before clipping and
    /// scaling (for rules that treat momentum or clipping differently, as Flora does).
    public func normalized(_ g: Tensor, moments s: AdafactorMoments) -> Tensor {
        let out = Tensor(uninitialized: g.shape)
        let od = out.data, gd = g.data
        forEachSegment(g, moments: s) { _, off, n, r, c in
            let r8 = SIMD8<Float>(repeating: r)
            var j = 0
            while j + 8 <= n {
                Self.store((r8 * Self.load(c + j)) * Self.load(gd + off + j), od + off + j)
                j += 8
            }
            while j < n { od[off + j] = (r * c[j]) * gd[off + j]; j += 1 }
        }
        return out
    }

    /// RMS of the normalised update without materialising it.
    public func normalizedRMS(_ g: Tensor, moments s: AdafactorMoments) -> Float {
        guard g.count > 0 else { return 0 }
        let gd = g.data
        var sums = [Double](repeating: 0, count: Parallel.workers)
        sums.withUnsafeMutableBufferPointer { sp in
            forEachSegment(g, moments: s) { c, off, n, r, cf in
                let r8 = SIMD8<Float>(repeating: r)
                var lanes = SIMD8<Float>()
                var j = 0
                while j + 8 <= n {
                    let u8 = (r8 * Self.load(cf + j)) * Self.load(gd + off + j)
                    lanes += u8 * u8
                    j += 8
                }
                var acc = Double(lanes.sum())
                while j < n { let u = (r * cf[j]) * gd[off + j]; acc += Double(u * u); j += 1 }
                sp[c] += acc
            }
        }
        return Float((sums.reduce(0, +) / Double(g.count)).squareRoot())
    }

    /// transformers' whole update after `advance`: normalised, clipped, scaled by
    /// `stepSize` and, with `beta1`, averaged into the first moment. Returns the tensor to
    /// subtract from the parameter (or to project back); with `beta1` it is the live first
    /// moment buffer itself, so read it and do not write to it.
    public func update(_ g: Tensor, moments s: AdafactorMoments, stepSize: Float) -> Tensor {
        let u = normalized(g, moments: s)
        let scale = stepSize / clipDivisor(rms: Self.rms(u))
        guard let beta1, let m = s.expAvg else {
            FastMath.scale(u.data, u.count, scale)
            return u
        }
        let md = m.data, ud = u.data
        Parallel.ranges(u.count, grain: 1 << 15) { r in
            for i in r { md[i] = beta1 * md[i] + (1 - beta1) * (ud[i] * scale) }
        }
        return m
    }

    /// The fused full-parameter step after `advance`, never materialising U: with `scale` =
    /// stepSize / clip divisor and `decay` = 1 - stepSize * weightDecay,
    /// `p <- decay p - scale U` (or through the first moment with `beta1`).
    func applyFused(to p: Tensor, gradient g: Tensor, moments s: AdafactorMoments, scale: Float, decay: Float) {
        let pd = p.data, gd = g.data
        let s8 = SIMD8<Float>(repeating: scale), d8 = SIMD8<Float>(repeating: decay)
        if let beta1, let m = s.expAvg {
            let md = m.data
            let b8 = SIMD8<Float>(repeating: beta1), nb8 = SIMD8<Float>(repeating: 1 - beta1)
            forEachSegment(g, moments: s) { _, off, n, r, c in
                let r8 = SIMD8<Float>(repeating: r)
                var j = 0
                while j + 8 <= n {
                    let k = off + j
                    let u8 = (r8 * Self.load(c + j)) * Self.load(gd + k)
                    let m8 = b8 * Self.load(md + k) + nb8 * (u8 * s8)
                    Self.store(m8, md + k)
                    Self.store(Self.load(pd + k) * d8 - m8, pd + k)
                    j += 8
                }
                while j < n {
                    let k = off + j
                    let u = (r * c[j]) * gd[k]
                    md[k] = beta1 * md[k] + (1 - beta1) * (u * scale)
                    pd[k] = pd[k] * decay - md[k]
                    j += 1
                }
            }
        } else {
            forEachSegment(g, moments: s) { _, off, n, r, c in
                let r8 = SIMD8<Float>(repeating: r)
                var j = 0
                while j + 8 <= n {
                    let k = off + j
                    let u8 = (r8 * Self.load(c + j)) * Self.load(gd + k)
                    Self.store(Self.load(pd + k) * d8 - u8 * s8, pd + k)
                    j += 8
                }
                while j < n {
                    let k = off + j
                    pd[k] = pd[k] * decay - ((r * c[j]) * gd[k]) * scale
                    j += 1
                }
            }
        }
    }

    /// Walks the normalised update U = g / sqrt(v_hat) in contiguous segments, in parallel:
    /// `body(chunk, offset, n, r, c)` covers elements offset..<offset + n, where
    /// U[offset + j] = (r * c[j]) * g[offset + j]. For a factored state a segment is a row
    /// (r its row factor rsqrt(row / mean(row)), c the column factors rsqrt(col)); for a full
    /// one it is a slice of up to 4096 elements with r = 1 and c = rsqrt(v). Segments of one
    /// `chunk` (< `Parallel.workers`) run on one thread, in order; the split depends only
    /// on the shape, so results are deterministic.
    @inline(__always)
    func forEachSegment(
        _ g: Tensor, moments s: AdafactorMoments,
        _ body: (_ chunk: Int, _ offset: Int, _ n: Int, _ r: Float, _ c: UnsafePointer<Float>) -> Void
    ) {
        precondition(g.shape == s.shape, "Adafactor: gradient \(g.shape) for state of \(s.shape)")
        if let full = s.full {
            let n = g.count, v = full.data, seg = 4096
            let f = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
            defer { f.deallocate() }
            for i in 0..<n { f[i] = 1 / v[i].squareRoot() }
            let chunks = Self.chunks((n + seg - 1) / seg, grain: 8)
            Parallel.perform(chunks.count) { c in
                for k in chunks[c] { body(c, k * seg, min(seg, n - k * seg), 1, f + k * seg) }
            }
            return
        }
        let (batches, rows, cols) = Self.matrixView(g.shape)
        let row = s.row!.data, col = s.col!.data
        let rfac = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows))
        let cfac = UnsafeMutablePointer<Float>.allocate(capacity: max(1, cols))
        defer { rfac.deallocate(); cfac.deallocate() }
        let chunks = Self.rowChunks(rows: rows, cols: cols)
        for b in 0..<batches {
            let rb = row + b * rows, cb = col + b * cols
            var rsum = 0.0
            for i in 0..<rows { rsum += Double(rb[i]) }
            let rmean = Float(rsum / Double(rows))
            for i in 0..<rows { rfac[i] = 1 / (rb[i] / rmean).squareRoot() }
            for j in 0..<cols { cfac[j] = 1 / cb[j].squareRoot() }
            let base = b * rows * cols
            Parallel.perform(chunks.count) { c in
                for i in chunks[c] { body(c, base + i * cols, cols, rfac[i], cfac) }
            }
        }
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always) static func load(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always) static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// (batches, rows, cols) of a tensor factored over its last two dimensions.
    static func matrixView(_ shape: [Int]) -> (Int, Int, Int) {
        let rows = shape[shape.count - 2], cols = shape[shape.count - 1]
        let batches = shape.dropLast(2).reduce(1, *)
        return (batches, rows, cols)
    }

    /// Contiguous row ranges of about 32K elements each, at most `Parallel.workers`.
    static func rowChunks(rows: Int, cols: Int) -> [Range<Int>] {
        chunks(rows, grain: max(1, (1 << 15) / max(cols, 1)))
    }

    static func chunks(_ n: Int, grain: Int) -> [Range<Int>] {
        let k = min(Parallel.workers, max(1, n / max(grain, 1)))
        let per = (n + k - 1) / max(k, 1)
        return stride(from: 0, to: n, by: max(per, 1)).map { $0..<min(n, $0 + per) }
    }
}

/// Adafactor's state for one gradient-shaped buffer: the step count, the factored second
/// moment (`row` and `col`) or the full one (`full`, for 1-D), and the first moment
/// (`expAvg`) when beta1 is set.
public struct AdafactorMoments {
    public var step: Int
    public var row: Tensor?
    public var col: Tensor?
    public var full: Tensor?
    public var expAvg: Tensor?

    public init(step: Int, row: Tensor?, col: Tensor?, full: Tensor?, expAvg: Tensor?) {
        self.step = step; self.row = row; self.col = col; self.full = full; self.expAvg = expAvg
    }

    /// The gradient shape this state belongs to.
    public var shape: [Int] {
        if let full { return full.shape }
        if let expAvg { return expAvg.shape }
        let r = row!.shape, c = col!.shape
        return r + [c.last!]
    }

    /// Bytes held: (rows + cols) floats per matrix when factored, else one per element,
    /// plus one per element for the first moment.
    public var byteCount: Int {
        (row?.byteCount ?? 0) + (col?.byteCount ?? 0) + (full?.byteCount ?? 0) + (expAvg?.byteCount ?? 0)
    }

    /// transformers' state keys: `step` (1-element tensor), `exp_avg_sq_row` and
    /// `exp_avg_sq_col` (factored) or `exp_avg_sq` (1-D), and `exp_avg` with beta1.
    /// transformers also keeps `RMS`, which it recomputes from the parameter before every
    /// use, so it is not saved.
    public func encode() -> [String: Tensor] {
        var out = ["step": Tensor(shape: [1], values: [Float(step)])]
        if let row { out["exp_avg_sq_row"] = row }
        if let col { out["exp_avg_sq_col"] = col }
        if let full { out["exp_avg_sq"] = full }
        if let expAvg { out["exp_avg"] = expAvg }
        return out
    }

    /// The inverse of `encode` for a gradient of `shape` under `rule`: a state saved with
    /// or without beta1 only continues a rule with the same choice.
    public static func decode(
        _ t: [String: Tensor], shape: [Int], rule: AdafactorRule, parameter p: Parameter
    ) throws -> AdafactorMoments {
        let factored = AdafactorRule.isFactored(shape)
        let keys = ["step"] + (factored ? ["exp_avg_sq_row", "exp_avg_sq_col"] : ["exp_avg_sq"])
            + (rule.beta1 != nil ? ["exp_avg"] : [])
        try OptimizerStateError.checkKeys(t, required: keys, parameter: p)
        let step = try decodeStepCount(t, parameter: p)
        func get(_ k: String, _ s: [Int]) throws -> Tensor { try OptimizerStateError.tensor(t, k, shape: s, parameter: p) }
        return AdafactorMoments(
            step: step,
            row: factored ? try get("exp_avg_sq_row", Array(shape.dropLast())) : nil,
            col: factored ? try get("exp_avg_sq_col", Array(shape.dropLast(2)) + [shape.last!]) : nil,
            full: factored ? nil : try get("exp_avg_sq", shape),
            expAvg: rule.beta1 != nil ? try get("exp_avg", shape) : nil)
    }
}

/// A `step` entry of a saved state: a 1-element tensor holding a whole number in
/// [0, 2^24] (exact in float32).
func decodeStepCount(_ t: [String: Tensor], key: String = "step", parameter p: Parameter) throws -> Int {
    let stepTensor = try OptimizerStateError.tensor(t, key, shape: [1], parameter: p)
    let step = stepTensor[0]
    guard step >= 0, step <= 16_777_216, step == step.rounded() else {
        throw OptimizerStateError.invalidValue(parameter: p.name, key: key, reason: "\(step) is not a step count")
    }
    return Int(step)
}

/// Adafactor as a per-parameter optimizer, equal to `transformers.optimization.Adafactor`
/// (see `AdafactorRule` for the rule). Every parameter shape is accepted: matrices get the
/// factored second moment, vectors the full one.
///
/// Defaults are transformers': relative step (lr None), parameter scaling, no warmup init,
/// no first moment, eps (1e-30, 1e-3), clip threshold 1.0, decay rate -0.8, weight decay 0.
/// With `relativeStep`, `learningRate` is a multiplier of the relative step (default 1,
/// which is transformers' behaviour) so that Subspace's schedule still applies; without it,
/// `learningRate` is the external rate and must be given. GaLore's script (and
/// transformers' advice for an external schedule) uses `relativeStep: false,
/// scaleParameter: false`, decay rate -0.8.
///
/// The step is fused: the normalised update is recomputed from the gradient and the
/// (rows + cols) factors in a second pass rather than stored, so the only temporaries are
/// O(rows + cols).
///
/// State: rows + cols floats per matrix (n per vector), plus rows x cols with beta1.
public final class Adafactor: ParameterwiseOptimizer<AdafactorMoments> {
    public var rule: AdafactorRule
    /// transformers' weight decay: p <- p - stepSize * weightDecay * p before the update.
    public var weightDecay: Float
    public override var name: String { "adafactor" }

    public init(learningRate: Float? = nil, rule: AdafactorRule = AdafactorRule(), weightDecay: Float = 0) {
        precondition(rule.relativeStep || learningRate != nil, "Adafactor without relativeStep needs a learning rate")
        self.rule = rule
        self.weightDecay = weightDecay
        super.init(learningRate: learningRate ?? 1)
    }

    public override func makeState(for p: Parameter) -> AdafactorMoments { rule.makeMoments(shape: p.shape) }

    public override func bytes(of s: AdafactorMoments) -> Int { s.byteCount }

    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? { rule.footprint(shape: p.shape) }

    public override func encode(_ s: AdafactorMoments) -> [String: Tensor] { s.encode() }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> AdafactorMoments {
        try AdafactorMoments.decode(t, shape: p.shape, rule: rule, parameter: p)
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout AdafactorMoments, lr: Float) {
        let parameterRMS = rule.scaleParameter ? AdafactorRule.rms(p.value) : 0
        rule.advance(g, moments: &s)
        let stepSize = rule.stepSize(step: s.step, learningRate: lr, parameterRMS: parameterRMS)
        let rms = rule.normalizedRMS(g, moments: s)
        rule.applyFused(
            to: p.value, gradient: g, moments: s, scale: stepSize / rule.clipDivisor(rms: rms),
            decay: 1 - stepSize * weightDecay)
    }
}

/// `adafactor`: Adafactor (Shazeer & Stern, 2018) for every parameter, transformers'
/// `Adafactor`. Without a learning rate it is transformers' default (relative step,
/// parameter scaling); with one it is the external-rate form that transformers recommends
/// with a schedule and GaLore's script uses (`relative_step=False, scale_parameter=False`),
/// unless `relativeStep` / `scaleParameter` say otherwise. `beta1` turns the first moment on
/// (off by default); `eps` is the g^2 regulariser (1e-30); there is no beta2 (the second
/// moment decays as 1 - t^decayRate). Weight decay defaults to 0.
public struct AdafactorSettings: MethodSettings {
    public var adafactor: AdafactorRuleSettings
    public var weightDecay: Float

    public init(adafactor: AdafactorRuleSettings, weightDecay: Float) { self.adafactor = adafactor; self.weightDecay = weightDecay }

    /// transformers' defaults: relative step and parameter scaling on, no first moment,
    /// eps 1e-30, clip threshold 1, decay rate -0.8; weight decay 0.
    public static let defaults = try! AdafactorSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        let relative = o.relativeStep ?? (o.learningRate == nil)
        if !relative && o.learningRate == nil {
            throw ConfigurationError("adafactor: without the relative step a learning rate is needed")
        }
        adafactor = try AdafactorRuleSettings(
            o, method: "adafactor", relativeStep: relative, scaleParameter: relative, beta1: o.beta1, defaultLearningRate: 0)
        weightDecay = o.weightDecay ?? 0
    }

    public func validate() throws {
        try adafactor.validate()
        try checkWeightDecay(weightDecay)
    }

    public func build() throws -> RoutedOptimizer {
        RoutedOptimizer(fallback: Adafactor(learningRate: adafactor.learningRate, rule: adafactor.rule, weightDecay: weightDecay))
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.all, rule: "adafactor", self)]
    }
}

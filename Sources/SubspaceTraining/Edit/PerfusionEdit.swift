import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// A Perfusion edit that teaches a language model a new word (Tewel et al., SIGGRAPH 2023,
/// eq. 3; the operator is `RankOneEditLinear`, the defaults `PerfusionSettings`):
///
/// 1. C, the second moment E[e eᵀ] of the slot's input over an unrelated corpus (the model's
///    own activations, forward only), plus a ridge: C = E[e eᵀ] + ridge · (tr / n) · I.
///    Uncentred, as ROME's and Perfusion's C = K Kᵀ, so that s(e) = eᵀ C⁻¹ i* / E has mean
///    square 1 / E over the corpus: the more unusual the key, the larger E and the quieter
///    the gate on ordinary text.
/// 2. i*, the locked key: the slot's input at the word's last token, averaged over every
///    occurrence in the examples. The reference keeps an EMA (decay 0.99) of each training
///    batch's concept encoding; the slot's input does not depend on the edit (it is computed
///    before the slot) and every step here sees all the examples, so that EMA is constant
///    and equal to this mean.
/// 3. C⁻¹ i* by a Cholesky solve (no inverse is formed).
/// 4. The edited model: the source's weights with the slot a `RankOneEditLinear`, everything
///    frozen but o*, which starts at W i* / sigmoid((1 - beta) / tau) so that the key itself
///    is mapped exactly as W maps it (the reference starts at W i*, which maps the key to
///    (1 - 0.08) W i* at the training beta and tau).
/// 5. o* fitted with AdamW (constant rate, no decay) on the examples' tokens after the word.
public struct PerfusionEdit {
    public let path: String
    public let settings: PerfusionSettings
    /// The source model with the slot edited.
    public let model: LlamaModel
    public let op: RankOneEditLinear
    /// The fitting loss before each AdamW step (and, last, after the final step).
    public let losses: [Float]

    /// Estimates C and i* on `source`, builds the edited model and fits o* on `examples`.
    /// `corpus` gives C (its first `settings.covarianceBatches` batches). `source` is not
    /// changed. `progress(step, loss)` is called before each step.
    /// - Throws: `ConfigurationError` for a bad setting or an unknown slot; `LinalgError`
    ///   when C is not positive definite.
    public static func fit(
        source: LlamaModel, examples: PerfusionExamples, corpus: [TokenBatch], settings: PerfusionSettings,
        progress: (Int, Float) -> Void = { _, _ in }
    ) throws -> PerfusionEdit {
        try settings.validate()
        let path = settings.slotPath(for: source.config)
        try checkSlot(path, in: source)
        guard !corpus.isEmpty else { throw ConfigurationError("the covariance corpus gives no batch") }
        let c = try inputSecondMoment(of: source, slot: path, batches: Array(corpus.prefix(settings.covarianceBatches)), ridge: settings.ridge)
        let key = try lockedKey(of: source, slot: path, examples: examples)
        let metricKey = try Linalg.choleskySolve(symmetric: c, key)
        let (model, op) = try editedModel(source: source, slot: path, key: key, metricKey: metricKey, settings: settings)
        let optimizer = AdamW(learningRate: settings.learningRate, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0)
        let batch = examples.batch()
        var losses: [Float] = []
        for step in 0..<settings.steps {
            model.zeroGradients()
            let loss = try model.forward(batch)
            progress(step, loss)
            losses.append(loss)
            model.backward()
            optimizer.update(op.output, gradient: op.output.gradient(), lrScale: 1)
        }
        model.zeroGradients()
        model.releaseActivations()
        losses.append(Float(try model.loss(batch).loss))
        return PerfusionEdit(path: path, settings: settings, model: model, op: op, losses: losses)
    }

    /// - Throws: `ConfigurationError` naming the slot forms when `path` is not one of the model's.
    public static func checkSlot(_ path: String, in model: LlamaModel) throws {
        guard model.slot(path) != nil else {
            throw ConfigurationError(
                "unknown slot '\(path)'; slots are model.layers.N.self_attn.{q,k,v,o}_proj and model.layers.N.mlp.{gate,up,down}_proj, N in 0..<\(model.config.layers)")
        }
    }

    /// Runs `model` forward only over `batches`, handing `body` the slot's input each time.
    static func observeInput(of model: LlamaModel, slot path: String, batches: [TokenBatch], _ body: @escaping (ActivationView) -> Void) throws {
        try checkSlot(path, in: model)
        let slot = model.slot(path)!
        let (saved, savedMode) = (slot.inputObserver, slot.observesForwardOnly)
        defer { slot.inputObserver = saved; slot.observesForwardOnly = savedMode }
        slot.inputObserver = { _, view in body(view) }
        slot.observesForwardOnly = true
        for b in batches { _ = try model.loss(b) }
    }

    /// C = E[e eᵀ] + ridge · (tr E[e eᵀ] / n) · I over the slot's input rows in `batches`.
    public static func inputSecondMoment(of model: LlamaModel, slot path: String, batches: [TokenBatch], ridge: Float) throws -> Tensor {
        try checkSlot(path, in: model)
        let n = model.slot(path)!.spec.inFeatures
        let c = Tensor(zeros: [n, n])
        var rows = 0
        try observeInput(of: model, slot: path, batches: batches) { x in
            BLAS.gemm(transA: true, m: n, n: n, k: x.rows, a: x.data, lda: n, b: x.data, ldb: n, beta: 1, c: c.data, ldc: n)
            rows += x.rows
        }
        guard rows > 0 else { throw ConfigurationError("no corpus rows to estimate the input covariance from") }
        var trace: Float = 0
        for k in 0..<c.count { c.data[k] /= Float(rows) }
        for k in 0..<n { trace += c.data[k * n + k] }
        for k in 0..<n { c.data[k * n + k] += ridge * max(trace / Float(n), .leastNormalMagnitude) }
        return c
    }

    /// i*: the mean of the slot's input over every occurrence's last token in `examples`.
    public static func lockedKey(of model: LlamaModel, slot path: String, examples: PerfusionExamples) throws -> Tensor {
        try checkSlot(path, in: model)
        let n = model.slot(path)!.spec.inFeatures, rows = examples.keyRows()
        let key = Tensor(zeros: [n])
        try observeInput(of: model, slot: path, batches: [examples.batch()]) { x in
            for r in rows { BLAS.axpy(n, 1 / Float(rows.count), x.data + r * n, key.data) }
        }
        return key
    }

    /// The source's weights with `slot` replaced by the edit; every tensor frozen but o*.
    static func editedModel(
        source: LlamaModel, slot path: String, key: Tensor, metricKey: Tensor, settings: PerfusionSettings
    ) throws -> (LlamaModel, RankOneEditLinear) {
        let spec = source.slot(path)!.spec
        guard let w = (source.slot(path)!.op as? any DenseMappable)?.denseWeight() else {
            throw ConfigurationError("the operator of \(path) has no dense form to edit")
        }
        let image = Tensor(zeros: [spec.outFeatures])
        BLAS.gemv(m: spec.outFeatures, n: spec.inFeatures, a: w.data, lda: spec.inFeatures, x: key.data, y: image.data)
        let open = RankOneEditLinear.sigmoid((1 - settings.beta) / settings.tau)
        let kind = RankOneEditLinear.Kind(
            key: key.array, metricKey: metricKey.array, output: image.array.map { $0 / open }, beta: settings.beta, tau: settings.tau)
        return try model(source: source, slot: path, kind: kind)
    }

    /// `source`'s function with `slot` replaced by the edit `kind`, every tensor but o* frozen.
    static func model(source: LlamaModel, slot path: String, kind: RankOneEditLinear.Kind) throws -> (LlamaModel, RankOneEditLinear) {
        try checkSlot(path, in: source)
        let model = try LlamaModel(config: source.config, operators: LinearOperators.dense.replacing([path], with: kind).freezingOthers())
        try model.loadDense(from: source)
        return (model, model.slot(path)!.op as! RankOneEditLinear)
    }

    /// s(e) = eᵀ C⁻¹ i* / E of the edited slot for every row of `batches` (the gate opens
    /// halfway at s = beta).
    public func scores(_ batches: [TokenBatch]) throws -> [Float] {
        var out: [Float] = []
        let op = self.op, n = op.inFeatures
        try Self.observeInput(of: model, slot: path, batches: batches) { x in
            for r in 0..<x.rows { out.append(BLAS.dot(n, x.data + r * n, op.metricKey.value.data) / op.energy) }
        }
        return out
    }

    /// The edit's own tensors (i*, C⁻¹ i*, o*), by their checkpoint names: what
    /// `edit.safetensors` holds; W is the source checkpoint's.
    public var tensors: [(String, Tensor)] { [op.key, op.metricKey, op.output].map { ($0.name, $0.value) } }
}

import Foundation
import SubspaceCore

/// One batch of token sequences: `tokens[b * seq + t]` is followed by `targets[b * seq + t]`.
/// A negative target is ignored by the loss.
public struct TokenBatch: Sendable {
    public var tokens: [Int32]
    public var targets: [Int32]
    public let batch: Int
    public let seq: Int

    public init(tokens: [Int32], targets: [Int32], batch: Int, seq: Int) {
        precondition(tokens.count == batch * seq && targets.count == batch * seq, "batch shape mismatch")
        self.tokens = tokens; self.targets = targets; self.batch = batch; self.seq = seq
    }
}

/// A LLaMA-style decoder (Touvron et al., 2023) with explicit forward and backward passes:
/// token embedding, `layers` blocks of (RMSNorm, rotary causal GQA attention, residual,
/// RMSNorm, SwiGLU MLP, residual), a final RMSNorm and an LM head (tied or untied), trained
/// with softmax cross-entropy. Numerically it matches transformers' `LlamaForCausalLM` in
/// float32 (see `scripts/make_llama_fixtures.py` and `LlamaParityTests`).
///
/// The seven matrices of each block are `LinearSlot`s holding a `LinearOperator` (dense by
/// default); `operators` at construction replaces any of them (a frozen base plus trainable
/// factors, a tensor-train layer, ...) without touching this file. What the model holds is
/// `architecture`, the one description that parameter specs, checkpoint names and the
/// memory planner also read.
///
/// Two activation arenas: `forward`/`backward` (training) keep every layer's activations;
/// `loss` and `logits` (forward only) run in an inference arena of one layer's buffers, or
/// borrow the training arena when one of the same shape exists, so evaluation during
/// training allocates nothing. Both give the same logits bit for bit.
public final class LlamaModel {
    public let config: LlamaConfig
    /// The description the model was built from (its config and slot operators).
    public let architecture: LlamaArchitecture
    /// Every tensor (trainable or frozen) in Hugging Face's `named_parameters()` order.
    public let parameters: [Parameter]
    /// The dense token table `[vocab, dim]`; nil when the embedding is a TTM (`tensorEmbedding`).
    public let embedding: Parameter?
    /// CoMERA's TTM embedding (`TensorTrainEmbedding`) in place of the table, or nil.
    public let tensorEmbedding: TensorTrainEmbedding?
    public let finalNorm: Parameter
    /// The LM head; the embedding itself when `config.tiedEmbeddings`.
    public let head: Parameter
    /// Every linear slot, layer by layer in `LlamaArchitecture.slotNames` order.
    public let slots: [LinearSlot]
    /// The element type of the linear products, the slots' (dense and LoRA base) and the LM
    /// head's: fp32 (default) or bf16 operands with fp32 accumulation. Weights, gradients,
    /// norms, attention, softmax and the loss stay fp32 either way. Set with `usePrecision`.
    public private(set) var precision: MatmulPrecision = .fp32
    /// Rows of the head weight the bf16 head rounds at once; nil is
    /// `LlamaArchitecture.headBlockRows` (tests set fewer, to run many blocks on a small model).
    var headBlockRowsOverride: Int?

    struct Block {
        let q, k, v, o, gate, up, down: LinearSlot
        let inputNorm, postNorm: Parameter
    }
    let blocks: [Block]
    let rope: RotaryEmbedding
    private var activations: LlamaActivations?
    private var inferenceActivations: LlamaActivations?
    private var hasForward = false

    /// A model initialised as Hugging Face LLaMA: linear and embedding weights from
    /// N(0, initStd^2), norm weights one. Each tensor draws from its own stream
    /// `RandomStream(seed).split(name)`, so initial weights do not depend on creation order
    /// (nor on which other slots were replaced).
    /// - Parameter operators: the operator kind of each linear slot (dense by default).
    /// - Throws: `ConfigurationError` for an impossible configuration, or an operator whose
    ///   shape or parameters differ from what its kind describes.
    public init(config: LlamaConfig, seed: UInt64 = 0, operators: LinearOperators = .dense) throws {
        try config.validate()
        self.config = config
        let arch = LlamaArchitecture(config: config, operators: operators)
        architecture = arch
        let initializer = ParameterInitializer(seed: seed, std: config.initStd)
        var params: [Parameter] = [], byName: [String: Parameter] = [:], slotByPath: [String: LinearSlot] = [:]
        var slots: [LinearSlot] = []
        var ttm: TensorTrainEmbedding? = nil
        func add(_ p: Parameter) throws {
            guard byName[p.name] == nil else { throw ConfigurationError("two parameters are named '\(p.name)'") }
            byName[p.name] = p
            params.append(p)
        }
        for entry in arch.entries {
            switch entry {
            case .parameter(let spec, let initial):
                try add(initial == .normal ? initializer.normal(spec) : initializer.constant(spec, 1))
            case .linear(let spec):
                let kind = operators.kind(spec)
                let slot = try LinearSlot(spec: spec, op: kind.make(for: spec, initializer: initializer))
                // The planner prices the kind's description: the operator must be what it says.
                guard slot.op.parameters.map({ ParameterSpec($0) }) == kind.parameterSpecs(for: spec) else {
                    throw ConfigurationError("the \(kind.name) operator of \(spec.path) holds other parameters than its kind describes")
                }
                for p in slot.op.parameters { try add(p) }
                slots.append(slot)
                slotByPath[spec.path] = slot
            case .tensorEmbedding(let kind):
                guard !config.tiedEmbeddings else {
                    throw ConfigurationError("a TT embedding needs an untied LM head (a tied head would need the whole [vocab, dim] table every step)")
                }
                let e = try kind.make(vocab: config.vocab, dim: config.dim, trainable: operators.othersTrainable, initializer: initializer)
                for p in e.parameters { try add(p) }
                ttm = e
            }
        }
        tensorEmbedding = ttm
        parameters = params
        self.slots = slots
        embedding = byName[LlamaArchitecture.embeddingName]
        finalNorm = byName[LlamaArchitecture.finalNormName]!
        head = config.tiedEmbeddings ? embedding! : byName[LlamaArchitecture.headName]!
        blocks = (0..<config.layers).map { l in
            func slot(_ name: String) -> LinearSlot { slotByPath["model.layers.\(l).\(name)"]! }
            return Block(
                q: slot("self_attn.q_proj"), k: slot("self_attn.k_proj"), v: slot("self_attn.v_proj"),
                o: slot("self_attn.o_proj"), gate: slot("mlp.gate_proj"), up: slot("mlp.up_proj"),
                down: slot("mlp.down_proj"), inputNorm: byName[LlamaArchitecture.inputNormName(l)]!,
                postNorm: byName[LlamaArchitecture.postNormName(l)]!)
        }
        rope = RotaryEmbedding(headDim: config.headDim, maxPositions: config.maxSeq, theta: config.ropeTheta)
    }

    /// Forgets a forward pass that `backward()` would otherwise continue (a forward-only
    /// pass, such as `extend(_:cache:)`, overwrites nothing backward reads, but the rule is
    /// the same as for `logits`).
    func cancelPendingBackward() { hasForward = false }

    /// Runs the linear products in `precision` from now on.
    /// - Throws: `ConfigurationError` when this machine cannot run bf16 products natively.
    public func usePrecision(_ precision: MatmulPrecision) throws {
        try precision.checkSupported()
        // The logits chunk depends on the precision (`LlamaArchitecture.logitChunkElements`).
        if precision != self.precision { activations = nil; inferenceActivations = nil; hasForward = false }
        self.precision = precision
        for slot in slots { slot.op.precision = precision }
    }

    /// Looks a parameter up by its Hugging Face name.
    public func parameter(named name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// Looks a linear slot up by its module path (`model.layers.3.self_attn.q_proj`).
    public func slot(_ path: String) -> LinearSlot? { slots.first { $0.spec.path == path } }

    /// Bytes of the weights (trainable and frozen).
    public var weightBytes: Int { parameters.reduce(0) { $0 + $1.value.byteCount } }
    /// Bytes of resident gradients.
    public var gradientBytes: Int { parameters.reduce(0) { $0 + ($1.grad?.byteCount ?? 0) } }
    /// Bytes of the activation arenas and of what slot operators keep (0 before the first
    /// pass).
    public var activationBytes: Int {
        (activations?.allocatedBytes ?? 0) + (inferenceActivations?.allocatedBytes ?? 0)
            + slots.reduce(0) { $0 + $1.op.activationBytes }
    }

    /// Frees the activation arenas and what slot operators keep.
    public func releaseActivations() {
        activations = nil; inferenceActivations = nil; hasForward = false
        for s in slots { s.op.releaseActivations() }
    }

    private func buffers(batch: Int, seq: Int) -> LlamaActivations {
        if let a = activations, a.batch == batch, a.seq == seq { return a }
        activations = nil
        let a = LlamaActivations(config: config, batch: batch, seq: seq, mode: .training, precision: precision)
        activations = a
        return a
    }

    /// The arena of a forward-only pass: the training arena when one of this shape exists
    /// (evaluation during training then allocates nothing), else the inference arena.
    func inferenceBuffers(batch: Int, seq: Int) -> LlamaActivations {
        if let a = activations, a.batch == batch, a.seq == seq { return a }
        if let a = inferenceActivations, a.batch == batch, a.seq == seq { return a }
        inferenceActivations = nil
        let a = LlamaActivations(config: config, batch: batch, seq: seq, mode: .inference, precision: precision)
        inferenceActivations = a
        return a
    }

    func check(_ batch: TokenBatch) throws {
        try config.validate(batch: batch.batch, seq: batch.seq)
        for t in batch.tokens where t < 0 || Int(t) >= config.vocab {
            throw ConfigurationError("token id \(t) is outside the vocabulary (size \(config.vocab))")
        }
        for t in batch.targets where Int(t) >= config.vocab {
            throw ConfigurationError("target id \(t) is outside the vocabulary (size \(config.vocab))")
        }
    }

    // MARK: Forward

    /// Runs the decoder up to the final norm (`a.xf`) in `a`; the head runs chunk by chunk in
    /// `headChunks`. The same code serves both arena layouts: per layer, `a.layer(l)` and
    /// `a.residualOut(l)` are that layer's own buffers (training) or the single reused set
    /// (inference); `mode` tells the slot operators whether a backward pass follows.
    /// `population` (forward only) gives each member's block of rows its own weights; the
    /// slots read it from `LinearSlot.population`.
    func forwardToLogits(_ batch: TokenBatch, in a: LlamaActivations, mode: ForwardMode, population: PopulationLayout? = nil) {
        a.tokenIds = batch.tokens
        a.targets = batch.targets
        let c = config, n = batch.batch * batch.seq, d = c.dim
        a.tokenIds.withUnsafeBufferPointer { tp in
            embed(tp.baseAddress!, into: a.layers.first?.x.data ?? a.xL.data, count: n, mode: mode)
            if let embedding { population?.addEmbedding(embedding.name, tokens: tp.baseAddress!, out: a.layers.first?.x.data ?? a.xL.data, count: n, dim: d) }
        }
        func norm(_ g: Parameter, _ x: Tensor, _ y: Tensor, _ rstd: Tensor) {
            guard let population else {
                return RMSNorm.forward(x: x.data, weight: g.value.data, y: y.data, rstd: rstd.data, rows: n, dim: d, eps: c.normEps)
            }
            population.rmsNorm(g.name, x: x.data, weight: g.value.data, y: y.data, rstd: rstd.data, rows: n, dim: d, eps: c.normEps)
        }
        for (l, blk) in blocks.enumerated() {
            let L = a.layer(l)
            let next = a.residualOut(l, layers: blocks.count)
            norm(blk.inputNorm, L.x, a.xn, L.rstd1)
            blk.q.forward(a.xn.data, L.q.data, rows: n, mode: mode)
            blk.k.forward(a.xn.data, L.k.data, rows: n, mode: mode)
            blk.v.forward(a.xn.data, L.v.data, rows: n, mode: mode)
            rope.apply(L.q.data, rows: n, heads: c.heads, seq: batch.seq)
            rope.apply(L.k.data, rows: n, heads: c.kvHeads, seq: batch.seq)
            a.attention.forward(q: L.q.data, k: L.k.data, v: L.v.data, out: L.att.data, probs: L.probs.data)
            L.x2.assign(L.x)
            blk.o.forward(L.att.data, L.x2.data, rows: n, accumulate: true, mode: mode)
            norm(blk.postNorm, L.x2, a.xn, L.rstd2)
            blk.gate.forward(a.xn.data, L.g.data, rows: n, mode: mode)
            blk.up.forward(a.xn.data, L.u.data, rows: n, mode: mode)
            SwiGLU.forward(g: L.g.data, u: L.u.data, h: a.hbuf.data, count: n * c.ffnDim)
            next.assign(L.x2)
            blk.down.forward(a.hbuf.data, next.data, rows: n, accumulate: true, mode: mode)
        }
        norm(finalNorm, a.xL, a.xf, a.rstdf)
    }

    /// Runs the LM head over row chunks of `a.xf`: for each chunk the logits land in
    /// `a.logits` (rows `0..<r1-r0`) and `body(r0, r1)` consumes them; `population` adds each
    /// member's delta of the head. Under `.bf16` the head weight is rounded block by block
    /// (`headForwardBF16`); a one-row chunk runs the fp32 matrix-vector product.
    func headChunks(_ a: LlamaActivations, population: PopulationLayout? = nil, _ body: (Int, Int) -> Void) {
        let n = a.batch * a.seq, d = config.dim
        var r0 = 0
        while r0 < n {
            let r1 = min(n, r0 + a.logitRows)
            if precision == .bf16, r1 - r0 > 1 {
                headForwardBF16(a, rows: r0, r1)
            } else {
                Linear.forward(x: a.xf.data + r0 * d, weight: head.value.data, y: a.logits.data, rows: r1 - r0, inFeatures: d, outFeatures: config.vocab, precision: precision)
            }
            population?.addLowRank(head.name, x: a.xf.data + r0 * d, y: a.logits.data, rows: r0..<r1, inFeatures: d, outFeatures: config.vocab)
            body(r0, r1)
            r0 = r1
        }
    }

    /// The logits `[batch * seq, vocab]` for a batch (targets are ignored). Forward only: it
    /// runs in the inference arena and cancels a pending `backward()`.
    public func logits(_ batch: TokenBatch) throws -> Tensor {
        try check(batch)
        hasForward = false
        return collectLogits(batch, in: inferenceBuffers(batch: batch.batch, seq: batch.seq), mode: .inference)
    }

    /// The logits of the training forward pass (the arena `forward` uses), for tests that
    /// compare it with the forward-only path.
    func trainingLogits(_ batch: TokenBatch) throws -> Tensor {
        try check(batch)
        hasForward = false
        return collectLogits(batch, in: buffers(batch: batch.batch, seq: batch.seq), mode: .training)
    }

    /// Runs the forward pass in arena `a` and gathers every head chunk's logits.
    private func collectLogits(_ batch: TokenBatch, in a: LlamaActivations, mode: ForwardMode) -> Tensor {
        forwardToLogits(batch, in: a, mode: mode)
        let v = config.vocab
        let out = Tensor(uninitialized: [batch.batch * batch.seq, v])
        headChunks(a) { r0, r1 in (out.data + r0 * v).update(from: a.logits.data, count: (r1 - r0) * v) }
        return out
    }

    /// Mean cross-entropy of a batch, forward only: nothing is kept for backward, and a
    /// pending `backward()` is cancelled. Runs in the inference arena (one layer's buffers,
    /// no backward scratch) unless a training arena of this shape already exists.
    public func loss(_ batch: TokenBatch) throws -> (loss: Double, tokens: Int) {
        try check(batch)
        hasForward = false
        let a = inferenceBuffers(batch: batch.batch, seq: batch.seq)
        forwardToLogits(batch, in: a, mode: .inference)
        var sum = 0.0, count = 0
        a.targets.withUnsafeBufferPointer { tp in
            headChunks(a) { r0, r1 in
                let r = CrossEntropy.forwardBackward(logits: a.logits.data, targets: tp.baseAddress! + r0, rows: r1 - r0, vocab: config.vocab, gradScale: nil)
                sum += r.sum; count += r.count
            }
        }
        return (count > 0 ? sum / Double(count) : 0, count)
    }

    /// Forward pass that prepares backward: returns the mean loss over valid targets. Use
    /// `lossScale = 1 / microBatches` under gradient accumulation.
    ///
    /// The LM head's own backward runs here, chunk by chunk with the loss: each logits chunk
    /// becomes `lossScale * dLoss/dlogits` in place and is immediately turned into its share
    /// of dL/d(final norm output) and of the head's weight gradient. So the head gradient is
    /// complete when this returns, and `backward()` starts at the final norm.
    @discardableResult
    public func forward(_ batch: TokenBatch, lossScale: Float = 1) throws -> Float {
        try check(batch)
        let a = buffers(batch: batch.batch, seq: batch.seq)
        forwardToLogits(batch, in: a, mode: .training)
        let s = a.scratch!
        let d = config.dim, v = config.vocab
        let valid = a.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        let scale = lossScale / Float(max(valid, 1))
        var sum = 0.0, count = 0
        let dHead = head.requiresGrad ? head.gradient().data : nil
        a.targets.withUnsafeBufferPointer { tp in
            if precision == .bf16, a.batch * a.seq > 1 {
                headTrainBF16(a, dx: s.dA.data, dHead: dHead) { r0, r1 in
                    let r = CrossEntropy.forwardBackward(logits: a.logits.data, targets: tp.baseAddress! + r0, rows: r1 - r0, vocab: v, gradScale: scale)
                    sum += r.sum; count += r.count
                }
                return
            }
            headChunks(a) { r0, r1 in
                let r = CrossEntropy.forwardBackward(logits: a.logits.data, targets: tp.baseAddress! + r0, rows: r1 - r0, vocab: v, gradScale: scale)
                sum += r.sum; count += r.count
                Linear.backwardInput(dy: a.logits.data, weight: head.value.data, dx: s.dA.data + r0 * d, rows: r1 - r0, inFeatures: d, outFeatures: v, precision: precision)
                if let dHead {
                    Linear.backwardWeight(dy: a.logits.data, x: a.xf.data + r0 * d, dWeight: dHead, rows: r1 - r0, inFeatures: d, outFeatures: v, precision: precision)
                }
            }
        }
        hasForward = true
        return count > 0 ? Float(sum / Double(count)) : 0
    }

    // MARK: Backward

    /// Accumulates gradients into every trainable parameter's `grad`. `onGradient` is called
    /// for each parameter as soon as its gradient for this batch is complete and backward
    /// will not read its value again (head first, embedding last; a slot's parameters in its
    /// operator's order after both of its backward calls), which is where the per-layer
    /// update mode steps and releases it.
    public func backward(onGradient: ((Parameter) -> Void)? = nil) {
        precondition(hasForward, "backward() needs a preceding forward()")
        hasForward = false
        guard let a = activations, let s = a.scratch else { return }
        let c = config, n = a.batch * a.seq, d = c.dim, f = c.ffnDim
        let notify = onGradient ?? { _ in }
        func notifySlot(_ slot: LinearSlot) { for p in slot.op.parameters { notify(p) } }
        func normGrad(_ p: Parameter) -> UnsafeMutablePointer<Float>? { p.requiresGrad ? p.gradient().data : nil }

        // Head (its gradients were formed in forward, dL/dxf is in dA) and final norm.
        if !c.tiedEmbeddings { notify(head) }
        RMSNorm.backward(dy: s.dA.data, x: a.xL.data, weight: finalNorm.value.data, rstd: a.rstdf.data, dx: s.dX.data, dWeight: normGrad(finalNorm), rows: n, dim: d, accumulate: false)
        notify(finalNorm)

        for l in stride(from: blocks.count - 1, through: 0, by: -1) {
            let blk = blocks[l], L = a.layers[l]
            // MLP: h is recomputed into hbuf for down's parameter gradients, then hbuf takes dh.
            SwiGLU.forward(g: L.g.data, u: L.u.data, h: a.hbuf.data, count: n * f)
            blk.down.observeOutputGradient(s.dX.data, rows: n)
            blk.down.accumulateGradients(dy: s.dX.data, x: a.hbuf.data, rows: n)
            blk.down.backwardInput(s.dX.data, a.hbuf.data, rows: n)
            notifySlot(blk.down)  // only after its last read: the per-layer mode updates it here
            SwiGLU.backward(dh: a.hbuf.data, g: L.g.data, u: L.u.data, dg: L.g.data, du: L.u.data, count: n * f)
            blk.gate.observeOutputGradient(L.g.data, rows: n)
            blk.up.observeOutputGradient(L.u.data, rows: n)
            blk.gate.backwardInput(L.g.data, s.dA.data, rows: n)
            blk.up.backwardInput(L.u.data, s.dA.data, rows: n, accumulate: true)
            RMSNorm.normalize(x: L.x2.data, weight: blk.postNorm.value.data, rstd: L.rstd2.data, y: a.xn.data, rows: n, dim: d)
            blk.gate.accumulateGradients(dy: L.g.data, x: a.xn.data, rows: n)
            notifySlot(blk.gate)
            blk.up.accumulateGradients(dy: L.u.data, x: a.xn.data, rows: n)
            notifySlot(blk.up)
            RMSNorm.backward(dy: s.dA.data, x: L.x2.data, weight: blk.postNorm.value.data, rstd: L.rstd2.data, dx: s.dX.data, dWeight: normGrad(blk.postNorm), rows: n, dim: d, accumulate: true)
            notify(blk.postNorm)

            // Attention.
            blk.o.observeOutputGradient(s.dX.data, rows: n)
            blk.o.backwardInput(s.dX.data, s.dA.data, rows: n)
            blk.o.accumulateGradients(dy: s.dX.data, x: L.att.data, rows: n)
            notifySlot(blk.o)
            a.attention.backward(dOut: s.dA.data, q: L.q.data, k: L.k.data, v: L.v.data, probs: L.probs.data, dq: s.dq.data, dk: s.dk.data, dv: s.dv.data)
            rope.apply(s.dq.data, rows: n, heads: c.heads, seq: a.seq, inverse: true)
            rope.apply(s.dk.data, rows: n, heads: c.kvHeads, seq: a.seq, inverse: true)
            blk.q.observeOutputGradient(s.dq.data, rows: n)
            blk.k.observeOutputGradient(s.dk.data, rows: n)
            blk.v.observeOutputGradient(s.dv.data, rows: n)
            blk.q.backwardInput(s.dq.data, s.dA.data, rows: n)
            blk.k.backwardInput(s.dk.data, s.dA.data, rows: n, accumulate: true)
            blk.v.backwardInput(s.dv.data, s.dA.data, rows: n, accumulate: true)
            RMSNorm.normalize(x: L.x.data, weight: blk.inputNorm.value.data, rstd: L.rstd1.data, y: a.xn.data, rows: n, dim: d)
            blk.q.accumulateGradients(dy: s.dq.data, x: a.xn.data, rows: n)
            notifySlot(blk.q)
            blk.k.accumulateGradients(dy: s.dk.data, x: a.xn.data, rows: n)
            notifySlot(blk.k)
            blk.v.accumulateGradients(dy: s.dv.data, x: a.xn.data, rows: n)
            notifySlot(blk.v)
            RMSNorm.backward(dy: s.dA.data, x: L.x.data, weight: blk.inputNorm.value.data, rstd: L.rstd1.data, dx: s.dX.data, dWeight: normGrad(blk.inputNorm), rows: n, dim: d, accumulate: true)
            notify(blk.inputNorm)
        }
        a.tokenIds.withUnsafeBufferPointer { tp in
            if let e = tensorEmbedding { e.backward(tokens: tp.baseAddress!, dOut: s.dX.data, count: n) }
            if let embedding, embedding.requiresGrad {
                Embedding.backward(tokens: tp.baseAddress!, dOut: s.dX.data, dTable: embedding.gradient().data, count: n, dim: d)
            }
        }
        for p in tensorEmbedding?.parameters ?? [embedding!] { notify(p) }
    }

    /// The rows of `n` tokens into `out` `[n, dim]`: from the table, or through the TTM's cores.
    func embed(_ tokens: UnsafePointer<Int32>, into out: UnsafeMutablePointer<Float>, count n: Int, mode: ForwardMode) {
        if let e = tensorEmbedding { return e.forward(tokens: tokens, out: out, count: n, mode: mode) }
        Embedding.forward(tokens: tokens, table: embedding!.value.data, out: out, count: n, dim: config.dim)
    }

    /// Zeroes every resident gradient.
    public func zeroGradients() { for p in parameters { p.zeroGradient() } }
}

extension LlamaModel {
    /// The name of the first parameter holding a NaN or infinity, or nil when all are finite.
    /// Checked before evaluating or sampling a loaded checkpoint: such weights give NaN losses
    /// and arbitrary tokens, which must be an error, not a result.
    public var nonFiniteParameter: String? {
        for p in parameters {
            let v = p.value
            for i in 0..<v.count where !v.data[i].isFinite { return p.name }
        }
        return nil
    }
}

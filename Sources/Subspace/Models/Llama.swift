import Foundation

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
public final class LlamaModel {
    public let config: LlamaConfig
    /// Every trainable tensor in Hugging Face's `named_parameters()` order.
    public let parameters: [Parameter]
    public let embedding: Parameter
    public let finalNorm: Parameter
    /// The LM head; the embedding itself when `config.tiedEmbeddings`.
    public let head: Parameter

    struct Block {
        let q, k, v, o, gate, up, down, inputNorm, postNorm: Parameter
    }
    let blocks: [Block]
    let rope: RotaryEmbedding
    private var activations: LlamaActivations?
    private var hasForward = false

    /// A model initialised as Hugging Face LLaMA: linear and embedding weights from
    /// N(0, initStd^2), norm weights one. Each tensor draws from its own stream
    /// `RandomStream(seed).split(name)`, so initial weights do not depend on creation order.
    public init(config: LlamaConfig, seed: UInt64 = 0) throws {
        try config.validate()
        self.config = config
        let root = RandomStream(seed: seed)
        let d = config.dim, hd = config.headDim
        func param(_ name: String, _ role: ParameterRole, _ shape: [Int], norm: Bool = false) -> Parameter {
            let t = norm ? Tensor(shape: shape, repeating: 1) : Tensor(uninitialized: shape)
            if !norm { var rng = root.split(name); rng.fillNormal(t, std: config.initStd) }
            return Parameter(name: name, role: role, value: t)
        }
        var params: [Parameter] = []
        embedding = param("model.embed_tokens.weight", .embedding, [config.vocab, d])
        params.append(embedding)
        var blocks: [Block] = []
        for l in 0..<config.layers {
            let p = "model.layers.\(l)."
            let b = Block(
                q: param(p + "self_attn.q_proj.weight", .attention, [config.heads * hd, d]),
                k: param(p + "self_attn.k_proj.weight", .attention, [config.kvHeads * hd, d]),
                v: param(p + "self_attn.v_proj.weight", .attention, [config.kvHeads * hd, d]),
                o: param(p + "self_attn.o_proj.weight", .attention, [d, config.heads * hd]),
                gate: param(p + "mlp.gate_proj.weight", .mlp, [config.ffnDim, d]),
                up: param(p + "mlp.up_proj.weight", .mlp, [config.ffnDim, d]),
                down: param(p + "mlp.down_proj.weight", .mlp, [d, config.ffnDim]),
                inputNorm: param(p + "input_layernorm.weight", .norm, [d], norm: true),
                postNorm: param(p + "post_attention_layernorm.weight", .norm, [d], norm: true))
            params += [b.q, b.k, b.v, b.o, b.gate, b.up, b.down, b.inputNorm, b.postNorm]
            blocks.append(b)
        }
        self.blocks = blocks
        finalNorm = param("model.norm.weight", .norm, [d], norm: true)
        params.append(finalNorm)
        if config.tiedEmbeddings {
            head = embedding
        } else {
            head = param("lm_head.weight", .head, [config.vocab, d])
            params.append(head)
        }
        parameters = params
        rope = RotaryEmbedding(headDim: hd, maxPositions: config.maxSeq, theta: config.ropeTheta)
    }

    /// Looks a parameter up by its Hugging Face name.
    public func parameter(named name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// Bytes of the weights.
    public var weightBytes: Int { parameters.reduce(0) { $0 + $1.value.byteCount } }
    /// Bytes of resident gradients.
    public var gradientBytes: Int { parameters.reduce(0) { $0 + ($1.grad?.byteCount ?? 0) } }
    /// Bytes of the cached activation buffers (0 before the first forward pass).
    public var activationBytes: Int { activations?.allocatedBytes ?? 0 }

    /// Frees the cached activation buffers.
    public func releaseActivations() { activations = nil; hasForward = false }

    private func buffers(batch: Int, seq: Int) -> LlamaActivations {
        if let a = activations, a.batch == batch, a.seq == seq { return a }
        activations = nil
        let a = LlamaActivations(config: config, batch: batch, seq: seq)
        activations = a
        return a
    }

    private func check(_ batch: TokenBatch) throws {
        try config.validate(batch: batch.batch, seq: batch.seq)
        for t in batch.tokens where t < 0 || Int(t) >= config.vocab {
            throw ConfigurationError("token id \(t) is outside the vocabulary (size \(config.vocab))")
        }
        for t in batch.targets where Int(t) >= config.vocab {
            throw ConfigurationError("target id \(t) is outside the vocabulary (size \(config.vocab))")
        }
    }

    // MARK: Forward

    /// Runs the decoder up to the final norm (`a.xf`); the head runs chunk by chunk in
    /// `headChunks`.
    private func forwardToLogits(_ batch: TokenBatch) -> LlamaActivations {
        let a = buffers(batch: batch.batch, seq: batch.seq)
        a.tokenIds = batch.tokens
        a.targets = batch.targets
        let c = config, n = batch.batch * batch.seq, d = c.dim, kv = c.kvHeads * c.headDim, f = c.ffnDim
        a.tokenIds.withUnsafeBufferPointer { tp in
            Embedding.forward(tokens: tp.baseAddress!, table: embedding.value.data, out: a.layers.first?.x.data ?? a.xL.data, count: n, dim: d)
        }
        for (l, blk) in blocks.enumerated() {
            let L = a.layers[l]
            let next = l + 1 < blocks.count ? a.layers[l + 1].x : a.xL
            RMSNorm.forward(x: L.x.data, weight: blk.inputNorm.value.data, y: a.xn.data, rstd: L.rstd1.data, rows: n, dim: d, eps: c.normEps)
            Linear.forward(x: a.xn.data, weight: blk.q.value.data, y: L.q.data, rows: n, inFeatures: d, outFeatures: d)
            Linear.forward(x: a.xn.data, weight: blk.k.value.data, y: L.k.data, rows: n, inFeatures: d, outFeatures: kv)
            Linear.forward(x: a.xn.data, weight: blk.v.value.data, y: L.v.data, rows: n, inFeatures: d, outFeatures: kv)
            rope.apply(L.q.data, rows: n, heads: c.heads, seq: batch.seq)
            rope.apply(L.k.data, rows: n, heads: c.kvHeads, seq: batch.seq)
            a.attention.forward(q: L.q.data, k: L.k.data, v: L.v.data, out: L.att.data, probs: L.probs.data)
            L.x2.assign(L.x)
            Linear.forward(x: L.att.data, weight: blk.o.value.data, y: L.x2.data, rows: n, inFeatures: d, outFeatures: d, accumulate: true)
            RMSNorm.forward(x: L.x2.data, weight: blk.postNorm.value.data, y: a.xn.data, rstd: L.rstd2.data, rows: n, dim: d, eps: c.normEps)
            Linear.forward(x: a.xn.data, weight: blk.gate.value.data, y: L.g.data, rows: n, inFeatures: d, outFeatures: f)
            Linear.forward(x: a.xn.data, weight: blk.up.value.data, y: L.u.data, rows: n, inFeatures: d, outFeatures: f)
            SwiGLU.forward(g: L.g.data, u: L.u.data, h: a.hbuf.data, count: n * f)
            next.assign(L.x2)
            Linear.forward(x: a.hbuf.data, weight: blk.down.value.data, y: next.data, rows: n, inFeatures: f, outFeatures: d, accumulate: true)
        }
        RMSNorm.forward(x: a.xL.data, weight: finalNorm.value.data, y: a.xf.data, rstd: a.rstdf.data, rows: n, dim: d, eps: c.normEps)
        return a
    }

    /// Runs the LM head over row chunks of `a.xf`: for each chunk the logits land in
    /// `a.logits` (rows `0..<r1-r0`) and `body(r0, r1)` consumes them.
    private func headChunks(_ a: LlamaActivations, _ body: (Int, Int) -> Void) {
        let n = a.batch * a.seq, d = config.dim
        var r0 = 0
        while r0 < n {
            let r1 = min(n, r0 + a.logitRows)
            Linear.forward(x: a.xf.data + r0 * d, weight: head.value.data, y: a.logits.data, rows: r1 - r0, inFeatures: d, outFeatures: config.vocab)
            body(r0, r1)
            r0 = r1
        }
    }

    /// The logits `[batch * seq, vocab]` for a batch (targets are ignored).
    public func logits(_ batch: TokenBatch) throws -> Tensor {
        try check(batch)
        let a = forwardToLogits(batch)
        hasForward = false
        let v = config.vocab
        let out = Tensor(uninitialized: [batch.batch * batch.seq, v])
        headChunks(a) { r0, r1 in (out.data + r0 * v).update(from: a.logits.data, count: (r1 - r0) * v) }
        return out
    }

    /// Mean cross-entropy of a batch, without keeping anything for backward.
    public func loss(_ batch: TokenBatch) throws -> (loss: Double, tokens: Int) {
        try check(batch)
        let a = forwardToLogits(batch)
        hasForward = false
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
        let a = forwardToLogits(batch)
        let n = a.batch * a.seq
        let d = config.dim, v = config.vocab
        let valid = a.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        let scale = lossScale / Float(max(valid, 1))
        var sum = 0.0, count = 0
        let dHead = head.requiresGrad ? head.gradient().data : nil
        a.targets.withUnsafeBufferPointer { tp in
            headChunks(a) { r0, r1 in
                let r = CrossEntropy.forwardBackward(logits: a.logits.data, targets: tp.baseAddress! + r0, rows: r1 - r0, vocab: v, gradScale: scale)
                sum += r.sum; count += r.count
                Linear.backwardInput(dy: a.logits.data, weight: head.value.data, dx: a.dA.data + r0 * d, rows: r1 - r0, inFeatures: d, outFeatures: v)
                if let dHead {
                    Linear.backwardWeight(dy: a.logits.data, x: a.xf.data + r0 * d, dWeight: dHead, rows: r1 - r0, inFeatures: d, outFeatures: v)
                }
            }
        }
        _ = n
        hasForward = true
        return count > 0 ? Float(sum / Double(count)) : 0
    }

    // MARK: Backward

    /// Accumulates gradients into every parameter's `grad`. `onGradient` is called for each
    /// parameter as soon as its gradient for this batch is complete and backward will not read
    /// its value again (head first, embedding last), which is where the per-layer update mode
    /// steps and releases it.
    public func backward(onGradient: ((Parameter) -> Void)? = nil) {
        precondition(hasForward, "backward() needs a preceding forward()")
        hasForward = false
        guard let a = activations else { return }
        let c = config, n = a.batch * a.seq, d = c.dim, kv = c.kvHeads * c.headDim, f = c.ffnDim
        let notify = onGradient ?? { _ in }
        func weightGrad(_ p: Parameter, dy: Tensor, x: Tensor, inF: Int, outF: Int) {
            guard p.requiresGrad else { return }
            Linear.backwardWeight(dy: dy.data, x: x.data, dWeight: p.gradient().data, rows: n, inFeatures: inF, outFeatures: outF)
        }
        func normGrad(_ p: Parameter) -> UnsafeMutablePointer<Float>? { p.requiresGrad ? p.gradient().data : nil }

        // Head (its gradients were formed in forward, dL/dxf is in dA) and final norm.
        if !c.tiedEmbeddings { notify(head) }
        RMSNorm.backward(dy: a.dA.data, x: a.xL.data, weight: finalNorm.value.data, rstd: a.rstdf.data, dx: a.dX.data, dWeight: normGrad(finalNorm), rows: n, dim: d, accumulate: false)
        notify(finalNorm)

        for l in stride(from: blocks.count - 1, through: 0, by: -1) {
            let blk = blocks[l], L = a.layers[l]
            // MLP: h is recomputed into hbuf for dW_down, then hbuf takes dh.
            SwiGLU.forward(g: L.g.data, u: L.u.data, h: a.hbuf.data, count: n * f)
            weightGrad(blk.down, dy: a.dX, x: a.hbuf, inF: f, outF: d)
            Linear.backwardInput(dy: a.dX.data, weight: blk.down.value.data, dx: a.hbuf.data, rows: n, inFeatures: f, outFeatures: d)
            notify(blk.down)  // only after its last read: the per-layer mode updates it here
            SwiGLU.backward(dh: a.hbuf.data, g: L.g.data, u: L.u.data, dg: L.g.data, du: L.u.data, count: n * f)
            Linear.backwardInput(dy: L.g.data, weight: blk.gate.value.data, dx: a.dA.data, rows: n, inFeatures: d, outFeatures: f)
            Linear.backwardInput(dy: L.u.data, weight: blk.up.value.data, dx: a.dA.data, rows: n, inFeatures: d, outFeatures: f, accumulateInput: true)
            RMSNorm.normalize(x: L.x2.data, weight: blk.postNorm.value.data, rstd: L.rstd2.data, y: a.xn.data, rows: n, dim: d)
            weightGrad(blk.gate, dy: L.g, x: a.xn, inF: d, outF: f)
            notify(blk.gate)
            weightGrad(blk.up, dy: L.u, x: a.xn, inF: d, outF: f)
            notify(blk.up)
            RMSNorm.backward(dy: a.dA.data, x: L.x2.data, weight: blk.postNorm.value.data, rstd: L.rstd2.data, dx: a.dX.data, dWeight: normGrad(blk.postNorm), rows: n, dim: d, accumulate: true)
            notify(blk.postNorm)

            // Attention.
            Linear.backwardInput(dy: a.dX.data, weight: blk.o.value.data, dx: a.dA.data, rows: n, inFeatures: d, outFeatures: d)
            weightGrad(blk.o, dy: a.dX, x: L.att, inF: d, outF: d)
            notify(blk.o)
            a.attention.backward(dOut: a.dA.data, q: L.q.data, k: L.k.data, v: L.v.data, probs: L.probs.data, dq: a.dq.data, dk: a.dk.data, dv: a.dv.data)
            rope.apply(a.dq.data, rows: n, heads: c.heads, seq: a.seq, inverse: true)
            rope.apply(a.dk.data, rows: n, heads: c.kvHeads, seq: a.seq, inverse: true)
            Linear.backwardInput(dy: a.dq.data, weight: blk.q.value.data, dx: a.dA.data, rows: n, inFeatures: d, outFeatures: d)
            Linear.backwardInput(dy: a.dk.data, weight: blk.k.value.data, dx: a.dA.data, rows: n, inFeatures: d, outFeatures: kv, accumulateInput: true)
            Linear.backwardInput(dy: a.dv.data, weight: blk.v.value.data, dx: a.dA.data, rows: n, inFeatures: d, outFeatures: kv, accumulateInput: true)
            RMSNorm.normalize(x: L.x.data, weight: blk.inputNorm.value.data, rstd: L.rstd1.data, y: a.xn.data, rows: n, dim: d)
            weightGrad(blk.q, dy: a.dq, x: a.xn, inF: d, outF: d)
            notify(blk.q)
            weightGrad(blk.k, dy: a.dk, x: a.xn, inF: d, outF: kv)
            notify(blk.k)
            weightGrad(blk.v, dy: a.dv, x: a.xn, inF: d, outF: kv)
            notify(blk.v)
            RMSNorm.backward(dy: a.dA.data, x: L.x.data, weight: blk.inputNorm.value.data, rstd: L.rstd1.data, dx: a.dX.data, dWeight: normGrad(blk.inputNorm), rows: n, dim: d, accumulate: true)
            notify(blk.inputNorm)
        }
        if embedding.requiresGrad {
            a.tokenIds.withUnsafeBufferPointer { tp in
                Embedding.backward(tokens: tp.baseAddress!, dOut: a.dX.data, dTable: embedding.gradient().data, count: n, dim: d)
            }
        }
        notify(embedding)
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

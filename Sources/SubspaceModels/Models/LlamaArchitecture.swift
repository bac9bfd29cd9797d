import SubspaceCore

/// The one description of a LLaMA decoder that everything else derives from: which tensors
/// and linear slots exist, in Hugging Face's `named_parameters()` order, and which activation
/// buffers a pass allocates.
///
/// - `LlamaModel` builds its parameters and slot operators by walking `entries`;
/// - `LlamaConfig.parameterSpecs` (routing, the memory planner, checkpoint names and shape
///   checks) is `parameterSpecs`, the same walk without storage;
/// - `LlamaActivations` allocates `activationBuffers(batch:seq:mode:)`, and
///   `activationBytes(batch:seq:mode:)` (the planner's activation figure) is their sum plus
///   what each slot's operator kind says it keeps.
///
/// So a slot whose operator is replaced (`LinearOperators`) changes the parameters, the
/// checkpoint's names and the activation price together, and `Llama.swift` is not edited.
/// (The shape, mirroring transformers' `LlamaForCausalLM` and mlx-swift-lm's `Llama.swift`,
/// is written once here; the forward and backward passes are in `Llama.swift`.)
public struct LlamaArchitecture: Sendable {
    public let config: LlamaConfig
    public let operators: LinearOperators

    public init(config: LlamaConfig, operators: LinearOperators = .dense) {
        self.config = config
        self.operators = operators
    }

    // MARK: Parameters and slots

    /// How a non-slot parameter starts: N(0, initStd^2) (embedding, head) or ones (norms).
    public enum Initial: Sendable { case normal, ones }

    /// One item of the model, in `named_parameters()` order.
    public enum Entry {
        /// A tensor the model uses directly (embedding, norm gains, head).
        case parameter(ParameterSpec, Initial)
        /// A linear slot; its parameters are its operator kind's.
        case linear(LinearSlotSpec)
        /// CoMERA's TTM embedding in place of the table; its parameters are its kind's.
        case tensorEmbedding(TensorTrainEmbedding.Kind)
    }

    public static let embeddingName = "model.embed_tokens.weight"
    public static let finalNormName = "model.norm.weight"
    public static let headName = "lm_head.weight"
    static func inputNormName(_ l: Int) -> String { "model.layers.\(l).input_layernorm.weight" }
    static func postNormName(_ l: Int) -> String { "model.layers.\(l).post_attention_layernorm.weight" }

    /// The slot names of a block in order: attention's four projections, then the MLP's three.
    public static let slotNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    /// The seven linear slots of decoder layer `l`, in `slotNames` order.
    public func slots(layer l: Int) -> [LinearSlotSpec] {
        let c = config, d = c.dim, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim, f = c.ffnDim
        func attn(_ n: String, _ i: Int, _ o: Int) -> LinearSlotSpec {
            LinearSlotSpec(name: n, module: "self_attn", layer: l, inFeatures: i, outFeatures: o, role: .attention)
        }
        func mlp(_ n: String, _ i: Int, _ o: Int) -> LinearSlotSpec {
            LinearSlotSpec(name: n, module: "mlp", layer: l, inFeatures: i, outFeatures: o, role: .mlp)
        }
        return [
            attn("q_proj", d, q), attn("k_proj", d, kv), attn("v_proj", d, kv), attn("o_proj", q, d),
            mlp("gate_proj", d, f), mlp("up_proj", d, f), mlp("down_proj", f, d),
        ]
    }

    /// Every slot of the model, layer by layer.
    public var allSlots: [LinearSlotSpec] { (0..<config.layers).flatMap { slots(layer: $0) } }

    /// The model's items in `named_parameters()` order: the embedding; per layer the seven
    /// slots and the two RMSNorm gains; the final norm; the LM head unless tied.
    /// Tensors outside the slots train unless `operators.othersTrainable` is false.
    public var entries: [Entry] {
        let c = config, d = c.dim, t = operators.othersTrainable
        var e: [Entry] = [operators.embedding.map { .tensorEmbedding($0) }
            ?? .parameter(ParameterSpec(name: Self.embeddingName, role: .embedding, shape: [c.vocab, d], trainable: t), .normal)]
        for l in 0..<c.layers {
            e += slots(layer: l).map { .linear($0) }
            e.append(.parameter(ParameterSpec(name: Self.inputNormName(l), role: .norm, shape: [d], trainable: t), .ones))
            e.append(.parameter(ParameterSpec(name: Self.postNormName(l), role: .norm, shape: [d], trainable: t), .ones))
        }
        e.append(.parameter(ParameterSpec(name: Self.finalNormName, role: .norm, shape: [d], trainable: t), .ones))
        if !c.tiedEmbeddings {
            e.append(.parameter(ParameterSpec(name: Self.headName, role: .head, shape: [c.vocab, d], trainable: t), .normal))
        }
        return e
    }

    /// Every tensor the model holds (trainable or frozen), by name, role and shape, in
    /// `named_parameters()` order; a built model's `parameters` has exactly these.
    public var parameterSpecs: [ParameterSpec] {
        entries.flatMap { e -> [ParameterSpec] in
            switch e {
            case .parameter(let s, _): return [s]
            case .linear(let slot): return operators.kind(slot).parameterSpecs(for: slot)
            case .tensorEmbedding(let k): return k.parameterSpecs(vocab: config.vocab, dim: config.dim, trainable: operators.othersTrainable)
            }
        }
    }

    // MARK: Activations

    /// How many copies of a buffer a pass allocates.
    public enum BufferScope: Sendable {
        /// Saved for backward: one per layer when training; a single set, reused by every
        /// layer, in inference.
        case perLayer
        /// Once in either mode.
        case shared
        /// Once, and only when training (backward scratch and the final residual, which in
        /// inference is the single layer's residual buffer).
        case trainingOnly
    }

    /// One float32 activation buffer.
    public struct Buffer: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let scope: BufferScope
        public var count: Int { shape.reduce(1, *) }
    }

    /// Rows per logits chunk: at most `logitChunkElements(precision)` logits, at least one row.
    static func logitRows(config c: LlamaConfig, tokens n: Int, precision: MatmulPrecision = .fp32) -> Int {
        max(1, min(n, logitChunkElements(precision) / c.vocab))
    }
    /// fp32: 2^24 floats (64 MiB). Smaller chunks re-pack the head weight and re-read and
    /// re-write its whole gradient once per chunk: at 2^22 (131 rows of llama60m's
    /// 32,000-word vocabulary) that cost 8% of llama60m's step (`bench/compare.sh --preset
    /// llama60m`). bf16: 2^23 (32 MiB). The bf16 head rounds its weight block by block
    /// (`Llama+HeadBF16.swift`), so the chunk no longer amortises a whole-weight copy, and
    /// the halved buffer is what brings llama60m's bf16 peak RSS under half of PyTorch
    /// autocast's (1,300 MB against 2,619 at batch 4; about 1,334 with 2^24), for two more
    /// passes over the head's gradient per step at batch 4.
    static func logitChunkElements(_ precision: MatmulPrecision) -> Int { precision == .bf16 ? 1 << 23 : 1 << 24 }
    /// Rows of the head weight rounded to bf16 at once by the bf16 head: 2^22 elements (8 MiB
    /// of bf16; 8,192 of llama60m's 32,000 rows), at most the whole vocabulary. Measured on
    /// llama60m at batch 4 (CPU seconds per step, shared machine): 2^21 cost 3% over the
    /// whole-copy head, 2^22 and 2^23 were at parity; 2^22 holds 4 MB more than 2^21, 2^23
    /// 12 MB more (peak RSS 1,294, 1,300 and 1,308 MB).
    static func headBlockRows(config c: LlamaConfig) -> Int { max(1, min(c.vocab, (1 << 22) / c.dim)) }

    /// The buffers of a pass over `batch` x `seq` tokens (N = batch * seq, D = dim,
    /// Q = heads * headDim, K = kvHeads * headDim, F = ffn, V = vocab):
    ///
    /// - per layer: residual input `x` [N, D], reciprocal RMS `rstd1` [N], `q` [N, Q], `k`,
    ///   `v` [N, K], attention probabilities `probs` [B*H*T*T], attention output `att` [N, Q],
    ///   residual after attention `x2` [N, D], `rstd2` [N], gate and up `g`, `u` [N, F]. The
    ///   normalised inputs are not kept: backward recomputes them from the residual and its
    ///   reciprocal RMS (`RMSNorm.normalize`) into the shared `xn`;
    /// - shared: final norm output `xf` [N, D] and `rstdf` [N], one chunk of logits `logits`
    ///   [R, V] with R = `logitRows` (at most 2^24 / V rows: the head and the loss run chunk by
    ///   chunk, so the N x V logits are never held at once), the normalised input `xn` [N, D]
    ///   and the MLP hidden `hbuf` [N, F];
    /// - training only: the final residual `xL` [N, D] and backward scratch `dX`, `dA`,
    ///   `dq` [N, D], `dk`, `dv` [N, K].
    /// `precision` sets the logits chunk (`logitChunkElements`).
    public func activationBuffers(batch: Int, seq: Int, precision: MatmulPrecision = .fp32) -> [Buffer] {
        let c = config, n = batch * seq, d = c.dim, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim, f = c.ffnDim
        return [
            Buffer(name: "x", shape: [n, d], scope: .perLayer),
            Buffer(name: "rstd1", shape: [n], scope: .perLayer),
            Buffer(name: "q", shape: [n, q], scope: .perLayer),
            Buffer(name: "k", shape: [n, kv], scope: .perLayer),
            Buffer(name: "v", shape: [n, kv], scope: .perLayer),
            Buffer(name: "probs", shape: [batch * c.heads * seq * seq], scope: .perLayer),
            Buffer(name: "att", shape: [n, q], scope: .perLayer),
            Buffer(name: "x2", shape: [n, d], scope: .perLayer),
            Buffer(name: "rstd2", shape: [n], scope: .perLayer),
            Buffer(name: "g", shape: [n, f], scope: .perLayer),
            Buffer(name: "u", shape: [n, f], scope: .perLayer),
            Buffer(name: "xf", shape: [n, d], scope: .shared),
            Buffer(name: "rstdf", shape: [n], scope: .shared),
            Buffer(name: "logits", shape: [Self.logitRows(config: c, tokens: n, precision: precision), c.vocab], scope: .shared),
            Buffer(name: "xn", shape: [n, d], scope: .shared),
            Buffer(name: "hbuf", shape: [n, f], scope: .shared),
            Buffer(name: "xL", shape: [n, d], scope: .trainingOnly),
            Buffer(name: "dX", shape: [n, d], scope: .trainingOnly),
            Buffer(name: "dA", shape: [n, d], scope: .trainingOnly),
            Buffer(name: "dq", shape: [n, q], scope: .trainingOnly),
            Buffer(name: "dk", shape: [n, kv], scope: .trainingOnly),
            Buffer(name: "dv", shape: [n, kv], scope: .trainingOnly),
        ]
    }

    /// Float32 bytes of the arena (`LlamaActivations`) for a pass in `mode`, without what
    /// the slots' operators keep themselves.
    public func arenaBytes(batch: Int, seq: Int, mode: ForwardMode, precision: MatmulPrecision = .fp32) -> Int {
        let layerCopies = mode == .training ? config.layers : 1
        let floats = activationBuffers(batch: batch, seq: seq, precision: precision).reduce(0) { sum, b in
            switch b.scope {
            case .perLayer: return sum + layerCopies * b.count
            case .shared: return sum + b.count
            case .trainingOnly: return sum + (mode == .training ? b.count : 0)
            }
        }
        return 4 * floats
    }

    /// Float32 bytes of activations for a pass in `mode`: the arena plus what each slot's
    /// operator kind keeps (0 for dense).
    public func activationBytes(batch: Int, seq: Int, mode: ForwardMode, precision: MatmulPrecision = .fp32) -> Int {
        if operators.allDense { return arenaBytes(batch: batch, seq: seq, mode: mode, precision: precision) }
        let n = batch * seq
        let operatorBytes = allSlots.reduce(0) { $0 + operators.kind($1).activationBytes(for: $1, rows: n, mode: mode) }
        return arenaBytes(batch: batch, seq: seq, mode: mode, precision: precision) + operatorBytes
    }
}

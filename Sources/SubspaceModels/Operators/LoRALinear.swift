import SubspaceCore

/// LoRA (Hu et al. 2021) as a slot operator: a frozen base weight W0 `[out, in]` plus
/// trainable factors A `[r, in]` and B `[out, r]`,
///
///     y = x W0^T + s (x A^T) B^T,    s = alpha / r   (alpha / sqrt(r) with rsLoRA).
///
/// An adapter is an operator, not an optimizer: whatever optimizer the run routes `lora_A`
/// and `lora_B` to trains them (their role is the slot's), and W0 has `requiresGrad ==
/// false`, so backward forms no gradient for it and routing, which steps only parameters
/// with a gradient, gives it no state.
///
/// Names follow PEFT's LoRA layer under the slot's path: `<path>.base_layer.weight`,
/// `<path>.lora_A.weight`, `<path>.lora_B.weight` (e.g.
/// `model.layers.0.self_attn.q_proj.lora_A.weight`). PEFT's `get_peft_model` reports them
/// as `base_model.model.<path>.lora_A.default.weight`; its saved adapter files drop the
/// adapter name (`.default`) and keep the `base_model.model.` prefix.
///
/// Initialisation is PEFT's default: A Kaiming-uniform with a = sqrt(5), as torch's
/// `nn.Linear` (bound 1/sqrt(in)), B zero, so a new adapter leaves the model's output as
/// it was; W0 draws from the stream a dense slot's `<path>.weight` would, so the base is
/// the dense model's weight bit for bit.
///
/// A training forward keeps t = x A^T `[rows, r]` for B's gradient (recomputed from the
/// input if absent).
///
/// Dropout (PEFT's `lora_dropout`, p = `dropout`): on training forwards the adapter reads
/// x' = x * m / (1 - p), m a Bernoulli(1 - p) mask per element, instead of x (the base
/// still reads x); inference forwards use no mask. Each training forward draws a fresh
/// mask from the stream `RandomStream(seed).split("<path>.lora_dropout", index: k)`, k the
/// count of masks drawn so far (`dropoutDraws`, which a resumed run restores), and keeps
/// it `[rows, in]` for the backward pass: dx += ((s dy B) A) * m / (1 - p), and A's and B's
/// gradients read x'. p = 0 (the default) draws nothing and computes exactly what the
/// operator did before dropout existed, bit for bit.
///
/// `merge()` folds the adapter into the base (W0 += s B A) for inference at dense speed;
/// `unmerge()` subtracts the same product (W0 -= s B A). The product is recomputed with
/// the same GEMM each time, so unmerge restores W0 to within float rounding of the sum
/// (about one ulp of |W0| + |s B A| per element), not bit for bit. While merged, the
/// operator is W0 alone: forward and input gradient use the merged weight, and the factors
/// get no gradient (train unmerged).
public final class LoRALinear: LinearOperator {
    /// W0, frozen.
    public let base: Parameter
    /// `lora_A` `[r, in]`.
    public let a: Parameter
    /// `lora_B` `[out, r]`.
    public let b: Parameter
    public let inFeatures: Int
    public let outFeatures: Int
    public let rank: Int
    /// s: alpha / r, or alpha / sqrt(r) with rsLoRA.
    public let scaling: Float
    /// The dropout probability p on the adapter's input (0: none).
    public let dropout: Float
    /// Masks drawn so far (the index of the next one's stream).
    public var dropoutDraws: UInt64 = 0
    /// True between `merge()` and `unmerge()`.
    public private(set) var isMerged = false
    let factors: ScaledFactors
    private let dropoutStream: RandomStream
    /// The last training forward's m / (1 - p) `[rows, in]` (p > 0 only).
    private var mask: Tensor?

    public var parameters: [Parameter] { [base, a, b] }
    /// bf16 runs the frozen base's two products in bf16 (fp32 accumulation); the factors'
    /// small products stay fp32.
    public var precision: MatmulPrecision = .fp32
    public var activationBytes: Int { factors.activationBytes + (mask?.byteCount ?? 0) }

    /// Wraps a base weight `[out, in]` and factors `[r, in]`, `[out, r]`; freezes the base.
    /// `dropoutStream` is the stream whose children (`split("mask", index: k)`) draw the masks.
    public init(base: Parameter, a: Parameter, b: Parameter, scaling: Float, dropout: Float = 0, dropoutStream: RandomStream = RandomStream(seed: 0)) {
        precondition(base.shape.count == 2 && a.shape.count == 2 && b.shape.count == 2, "LoRA tensors are matrices")
        precondition(a.shape[1] == base.shape[1] && b.shape[0] == base.shape[0] && b.shape[1] == a.shape[0], "LoRA shapes disagree")
        precondition(dropout >= 0 && dropout < 1, "a dropout probability lies in [0, 1)")
        self.base = base; self.a = a; self.b = b
        outFeatures = base.shape[0]; inFeatures = base.shape[1]; rank = a.shape[0]
        self.scaling = scaling
        self.dropout = dropout
        self.dropoutStream = dropoutStream
        factors = ScaledFactors(a: a, b: b, scaling: scaling)
        base.requiresGrad = false
    }

    /// Draws the next mask m / (1 - p) for `rows` rows.
    private func drawMask(rows: Int) -> Tensor {
        if mask?.shape != [rows, inFeatures] { mask = Tensor(zeros: [rows, inFeatures]) }
        let m = mask!
        var r = dropoutStream.split("mask", index: dropoutDraws)
        dropoutDraws += 1
        let keep = 1 / (1 - dropout)
        for i in 0..<m.count { m.data[i] = r.uniform() < dropout ? 0 : keep }
        return m
    }

    /// x * m, the adapter's input under the current mask.
    private func masked(_ x: UnsafePointer<Float>, _ m: Tensor) -> Tensor {
        let xd = Tensor(uninitialized: m.shape)
        for i in 0..<m.count { xd.data[i] = x[i] * m.data[i] }
        return xd
    }

    /// The mask of the pending backward pass, if dropout is on and one was drawn for `rows`.
    private func pendingMask(rows: Int) -> Tensor? {
        guard dropout > 0, let m = mask, m.shape == [rows, inFeatures] else { return nil }
        return m
    }

    public func forward(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode
    ) {
        Linear.forward(x: x, weight: base.value.data, y: y, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulate: accumulate, precision: precision)
        if isMerged || rows == 0 { return }
        if dropout > 0, mode == .training {
            let xd = masked(x, drawMask(rows: rows))
            factors.forward(xd.data, y, rows: rows, accumulate: true, mode: mode)
        } else {
            factors.forward(x, y, rows: rows, accumulate: true, mode: mode)
        }
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        Linear.backwardInput(dy: dy, weight: base.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulate, precision: precision)
        if isMerged || rows == 0 { return }
        if let m = pendingMask(rows: rows) {
            let g = Tensor(zeros: m.shape)
            factors.backwardInput(dy, g.data, rows: rows, accumulate: false)
            for i in 0..<m.count { dx[i] += g.data[i] * m.data[i] }
        } else {
            factors.backwardInput(dy, dx, rows: rows, accumulate: true)
        }
    }

    /// dA += (s dy B)^T x' and dB += s dy^T (x' A^T) (x' = x without dropout); never a
    /// gradient for W0.
    public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        if isMerged || rows == 0 { return }
        if let m = pendingMask(rows: rows) {
            let xd = masked(x, m)
            factors.accumulateGradients(dy: dy, x: xd.data, rows: rows)
        } else {
            factors.accumulateGradients(dy: dy, x: x, rows: rows)
        }
    }

    public func releaseActivations() { factors.releaseActivations(); mask = nil }

    /// W0 += sign * s B A.
    private func addProduct(sign: Float) { factors.addProduct(to: base.value, sign: sign) }

    /// Folds the adapter into the base: W0 += s B A. Throws if already merged.
    public func merge() throws {
        guard !isMerged else { throw ConfigurationError("the LoRA adapter of \(base.name) is already merged") }
        addProduct(sign: 1)
        isMerged = true
        releaseActivations()
    }

    /// Takes the adapter back out: W0 -= s B A, which restores W0 to within float rounding
    /// (see the type's notes). Throws if not merged.
    public func unmerge() throws {
        guard isMerged else { throw ConfigurationError("the LoRA adapter of \(base.name) is not merged") }
        addProduct(sign: -1)
        isMerged = false
    }

    /// ReLoRA's merge-and-restart (Lialin et al. 2023, `ReLoRaLinear.merge_and_reinit`):
    /// W0 += s B A, then A <- Kaiming-uniform drawn from `stream`, B <- 0. The function is
    /// unchanged (B A = 0 after the restart) and the next factors learn a new direction, so
    /// the sum of the restarts' products can reach a rank above r. Throws while merged.
    public func mergeAndRestart(stream: RandomStream) throws {
        guard !isMerged else { throw ConfigurationError("the LoRA adapter of \(base.name) is merged; unmerge before a restart") }
        addProduct(sign: 1)
        var r = stream
        fillKaimingUniform(a.value, fanIn: inFeatures, rng: &r)
        b.value.zero()
        releaseActivations()
    }

    /// The slot's effective dense weight, W0 + s B A (W0 itself while merged), as a new tensor.
    public func denseWeight() -> Tensor {
        let w = base.value.copy()
        if !isMerged { factors.addProduct(to: w) }
        return w
    }

    /// LoRA in a slot: rank r, scaling s and dropout p (`AdapterSettings` computes s and
    /// chooses slots).
    public struct Kind: LinearOperatorKind {
        public let rank: Int
        public let scaling: Float
        /// PEFT's `lora_dropout`; 0 (PEFT's default) is no dropout.
        public let dropout: Float

        public init(rank: Int, scaling: Float, dropout: Float = 0) {
            precondition(rank >= 1, "a LoRA rank is at least 1")
            precondition(dropout >= 0 && dropout < 1, "a dropout probability lies in [0, 1)")
            self.rank = rank; self.scaling = scaling; self.dropout = dropout
        }

        public var name: String { "lora" }

        public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            [
                ParameterSpec(name: slot.path + ".base_layer.weight", role: slot.role, shape: [slot.outFeatures, slot.inFeatures], trainable: false),
                ParameterSpec(name: slot.path + ".lora_A.weight", role: slot.role, shape: [rank, slot.inFeatures]),
                ParameterSpec(name: slot.path + ".lora_B.weight", role: slot.role, shape: [slot.outFeatures, rank]),
            ]
        }

        /// t = x A^T `[rows, r]`, and with dropout the mask `[rows, in]`, on training passes.
        public func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int {
            guard mode == .training else { return 0 }
            return MemoryLayout<Float>.size * rows * (rank + (dropout > 0 ? slot.inFeatures : 0))
        }

        public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            let specs = parameterSpecs(for: slot)
            return LoRALinear(
                base: initializer.denseBase(specs[0], for: slot),
                a: initializer.kaimingUniform(specs[1]),
                b: initializer.constant(specs[2], 0),
                scaling: scaling, dropout: dropout,
                dropoutStream: initializer.root.split(slot.path + ".lora_dropout"))
        }
    }
}

extension LlamaModel {
    /// The LoRA operators of the model's slots, in slot order.
    public var loraOperators: [LoRALinear] { slots.compactMap { $0.op as? LoRALinear } }

    /// Merges every LoRA adapter into its base (`LoRALinear.merge()`).
    /// Throws, changing nothing, if any is already merged.
    public func mergeAdapters() throws {
        let ops = loraOperators
        guard !ops.contains(where: \.isMerged) else { throw ConfigurationError("the model's LoRA adapters are already merged") }
        for op in ops { try op.merge() }
    }

    /// Unmerges every LoRA adapter (`LoRALinear.unmerge()`). Throws, changing nothing, if
    /// any is not merged.
    public func unmergeAdapters() throws {
        let ops = loraOperators
        guard ops.allSatisfy(\.isMerged) else { throw ConfigurationError("the model's LoRA adapters are not merged") }
        for op in ops { try op.unmerge() }
    }
}

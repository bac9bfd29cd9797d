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
/// input if absent). No dropout on the adapter's input: the dropout mask would have to be
/// drawn and kept per micro-batch, which this operator does not do yet.
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
    /// True between `merge()` and `unmerge()`.
    public private(set) var isMerged = false
    private var saved: Tensor?

    public var parameters: [Parameter] { [base, a, b] }
    public var activationBytes: Int { saved?.byteCount ?? 0 }

    /// Wraps a base weight `[out, in]` and factors `[r, in]`, `[out, r]`; freezes the base.
    public init(base: Parameter, a: Parameter, b: Parameter, scaling: Float) {
        precondition(base.shape.count == 2 && a.shape.count == 2 && b.shape.count == 2, "LoRA tensors are matrices")
        precondition(a.shape[1] == base.shape[1] && b.shape[0] == base.shape[0] && b.shape[1] == a.shape[0], "LoRA shapes disagree")
        self.base = base; self.a = a; self.b = b
        outFeatures = base.shape[0]; inFeatures = base.shape[1]; rank = a.shape[0]
        self.scaling = scaling
        base.requiresGrad = false
    }

    public func forward(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode
    ) {
        Linear.forward(x: x, weight: base.value.data, y: y, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulate: accumulate)
        if isMerged || rows == 0 { return }
        let t: Tensor
        if mode == .training {
            if saved?.shape != [rows, rank] { saved = Tensor(zeros: [rows, rank]) }
            t = saved!
        } else {
            t = Tensor(zeros: [rows, rank])
        }
        Linear.forward(x: x, weight: a.value.data, y: t.data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
        // y += s t B^T
        BLAS.gemm(
            transB: true, m: rows, n: outFeatures, k: rank, alpha: scaling, a: t.data, lda: rank,
            b: b.value.data, ldb: rank, beta: 1, c: y, ldc: outFeatures)
    }

    /// u = s dy B `[rows, r]`.
    private func scaledProjection(_ dy: UnsafePointer<Float>, rows: Int) -> Tensor {
        let u = Tensor(zeros: [rows, rank])
        BLAS.gemm(
            m: rows, n: rank, k: outFeatures, alpha: scaling, a: dy, lda: outFeatures,
            b: b.value.data, ldb: rank, beta: 0, c: u.data, ldc: rank)
        return u
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        Linear.backwardInput(dy: dy, weight: base.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulate)
        if isMerged || rows == 0 { return }
        let u = scaledProjection(dy, rows: rows)
        Linear.backwardInput(dy: u.data, weight: a.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: rank, accumulateInput: true)
    }

    /// dA += (s dy B)^T x and dB += s dy^T (x A^T); never a gradient for W0.
    public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        if isMerged || rows == 0 { return }
        if a.requiresGrad {
            let u = scaledProjection(dy, rows: rows)
            Linear.backwardWeight(dy: u.data, x: x, dWeight: a.gradient().data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
        }
        if b.requiresGrad {
            let t: Tensor
            if let s = saved, s.shape == [rows, rank] {
                t = s
            } else {
                t = Tensor(zeros: [rows, rank])
                Linear.forward(x: x, weight: a.value.data, y: t.data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
            }
            BLAS.gemm(
                transA: true, m: outFeatures, n: rank, k: rows, alpha: scaling, a: dy, lda: outFeatures,
                b: t.data, ldb: rank, beta: 1, c: b.gradient().data, ldc: rank)
        }
    }

    public func releaseActivations() { saved = nil }

    /// W0 += sign * s B A.
    private func addProduct(sign: Float) {
        BLAS.gemm(
            m: outFeatures, n: inFeatures, k: rank, alpha: sign * scaling, a: b.value.data, lda: rank,
            b: a.value.data, ldb: inFeatures, beta: 1, c: base.value.data, ldc: inFeatures)
    }

    /// Folds the adapter into the base: W0 += s B A. Throws if already merged.
    public func merge() throws {
        guard !isMerged else { throw ConfigurationError("the LoRA adapter of \(base.name) is already merged") }
        addProduct(sign: 1)
        isMerged = true
        saved = nil
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
        Self.kaimingUniform(a.value, inFeatures: inFeatures, rng: &r)
        b.value.zero()
        saved = nil
    }

    /// The slot's effective dense weight, W0 + s B A (W0 itself while merged), as a new tensor.
    public func denseWeight() -> Tensor {
        let w = base.value.copy()
        if !isMerged {
            BLAS.gemm(
                m: outFeatures, n: inFeatures, k: rank, alpha: scaling, a: b.value.data, lda: rank,
                b: a.value.data, ldb: inFeatures, beta: 1, c: w.data, ldc: inFeatures)
        }
        return w
    }

    /// torch's `kaiming_uniform_(a = sqrt(5))` on a `[r, in]` factor, as `nn.Linear` and
    /// PEFT initialise `lora_A`: gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / in) = 1 / sqrt(in).
    static func kaimingUniform(_ t: Tensor, inFeatures: Int, rng: inout RandomStream) {
        let bound = 1 / Float(inFeatures).squareRoot()
        rng.fillUniform(t, -bound, bound)
    }

    /// LoRA in a slot: rank r and scaling s (`AdapterSettings` computes s and chooses slots).
    public struct Kind: LinearOperatorKind {
        public let rank: Int
        public let scaling: Float

        public init(rank: Int, scaling: Float) {
            precondition(rank >= 1, "a LoRA rank is at least 1")
            self.rank = rank; self.scaling = scaling
        }

        public var name: String { "lora" }

        public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            [
                ParameterSpec(name: slot.path + ".base_layer.weight", role: slot.role, shape: [slot.outFeatures, slot.inFeatures], trainable: false),
                ParameterSpec(name: slot.path + ".lora_A.weight", role: slot.role, shape: [rank, slot.inFeatures]),
                ParameterSpec(name: slot.path + ".lora_B.weight", role: slot.role, shape: [slot.outFeatures, rank]),
            ]
        }

        public func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int {
            mode == .training ? MemoryLayout<Float>.size * rows * rank : 0
        }

        public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            let specs = parameterSpecs(for: slot)
            // W0 from the dense weight's own stream, so it equals the dense model's weight.
            let w0 = Tensor(uninitialized: specs[0].shape)
            var rw = initializer.root.split(slot.path + ".weight")
            rw.fillNormal(w0, std: initializer.std)
            let av = Tensor(uninitialized: specs[1].shape)
            var ra = initializer.root.split(specs[1].name)
            LoRALinear.kaimingUniform(av, inFeatures: slot.inFeatures, rng: &ra)
            return LoRALinear(
                base: Parameter(specs[0], value: w0),
                a: Parameter(specs[1], value: av),
                b: initializer.constant(specs[2], 0),
                scaling: scaling)
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

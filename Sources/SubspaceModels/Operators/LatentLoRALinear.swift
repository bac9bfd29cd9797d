import SubspaceCore

/// The operator shared by LoRA-XS and LoRA-SB: a frozen base W0 `[out, in]`, frozen
/// factors A `[r, in]` and B `[out, r]`, and a trainable r x r "latent" matrix R between
/// them,
///
///     y = x W0^T + s ((x A^T) R^T) B^T,   W = W0 + s B R A,   s = alpha / r.
///
/// Only R trains (r^2 parameters per slot, whatever the slot's shape); the subclasses
/// differ in how A, B and R are initialised (`LoRAXSLinear`: from the SVD of W0;
/// `LoRASBLinear`: from the SVD of an estimated first full fine-tuning update).
///
/// Names follow the LoRA-XS reference (`MohammadrezaBanaei/LoRA-XS`,
/// `utils/initialization_utils.py`, which LoRA-SB's code reuses): PEFT's LoRA layer
/// (`<path>.base_layer.weight`, `<path>.lora_A.weight`, `<path>.lora_B.weight`) plus the
/// `nn.Linear(r, r)` it attaches as `default_lora_latent_mapping`, so R is
/// `<path>.default_lora_latent_mapping.weight` and applies as t R^T.
///
/// A training forward keeps t = x A^T `[rows, r]`. Gradients, with u = s dy B:
/// dR += u^T t; dx (+)= dy W0 + (u R) A. The base gets a gradient, dW0 += dy^T x (the full
/// fine-tuning gradient of W), only while its `requiresGrad` is set, which LoRA-SB's
/// initialization does for a moment; A and B never train.
public class LatentLoRALinear: LinearOperator, DenseMappable, DenseBased {
    /// W0, frozen.
    public let base: Parameter
    /// `lora_A` `[r, in]`, frozen.
    public let a: Parameter
    /// `lora_B` `[out, r]`, frozen.
    public let b: Parameter
    /// R `[r, r]`, trainable.
    public let latent: Parameter
    public let scaling: Float
    public let rank: Int
    public let inFeatures: Int
    public let outFeatures: Int
    private var saved = SavedRows()

    public var parameters: [Parameter] { [base, a, b, latent] }
    public var activationBytes: Int { saved.byteCount }

    /// Freezes the base and both factors.
    required init(base: Parameter, a: Parameter, b: Parameter, latent: Parameter, scaling: Float) {
        let (m, n, r) = (base.shape[0], base.shape[1], a.shape[0])
        precondition(a.shape == [r, n] && b.shape == [m, r] && latent.shape == [r, r], "latent LoRA shapes disagree")
        self.base = base; self.a = a; self.b = b; self.latent = latent
        self.scaling = scaling
        rank = r; inFeatures = n; outFeatures = m
        base.requiresGrad = false; a.requiresGrad = false; b.requiresGrad = false
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode) {
        Linear.forward(x: x, weight: base.value.data, y: y, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulate: accumulate)
        if rows == 0 { return }
        let t = saved.buffer(rows: rows, columns: rank, mode: mode)
        Linear.forward(x: x, weight: a.value.data, y: t.data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
        let t2 = Tensor(zeros: [rows, rank])
        Linear.forward(x: t.data, weight: latent.value.data, y: t2.data, rows: rows, inFeatures: rank, outFeatures: rank)
        BLAS.gemm(
            transB: true, m: rows, n: outFeatures, k: rank, alpha: scaling, a: t2.data, lda: rank,
            b: b.value.data, ldb: rank, beta: 1, c: y, ldc: outFeatures)
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        Linear.backwardInput(dy: dy, weight: base.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulate)
        if rows == 0 { return }
        let u = scaledProjection(dy, b: b, scaling: scaling, rows: rows)
        let w = Tensor(zeros: [rows, rank])
        Linear.backwardInput(dy: u.data, weight: latent.value.data, dx: w.data, rows: rows, inFeatures: rank, outFeatures: rank)
        Linear.backwardInput(dy: w.data, weight: a.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: rank, accumulateInput: true)
    }

    /// dR += (s dy B)^T (x A^T); dW0 += dy^T x while the base's `requiresGrad` is set.
    public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        if rows == 0 { return }
        if base.requiresGrad {
            Linear.backwardWeight(dy: dy, x: x, dWeight: base.gradient().data, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
        }
        guard latent.requiresGrad else { return }
        let t = saved.kept(rows: rows, columns: rank) ?? projection(x, a: a, rows: rows)
        let u = scaledProjection(dy, b: b, scaling: scaling, rows: rows)
        Linear.backwardWeight(dy: u.data, x: t.data, dWeight: latent.gradient().data, rows: rows, inFeatures: rank, outFeatures: rank)
    }

    public func releaseActivations() { saved.release() }

    /// s B R A `[out, in]`.
    public func adapterWeight() -> Tensor {
        let (m, n, r) = (outFeatures, inFeatures, rank)
        let br = Tensor(zeros: [m, r])
        BLAS.gemm(m: m, n: r, k: r, a: b.value.data, lda: r, b: latent.value.data, ldb: r, beta: 0, c: br.data, ldc: r)
        let w = Tensor(zeros: [m, n])
        BLAS.gemm(m: m, n: n, k: r, alpha: scaling, a: br.data, lda: r, b: a.value.data, ldb: n, beta: 0, c: w.data, ldc: n)
        return w
    }

    /// W0 + s B R A.
    public func denseWeight() -> Tensor {
        let w = adapterWeight()
        for i in 0..<w.count { w.data[i] += base.value.data[i] }
        return w
    }

    /// The top-`rank` singular triplets of `w` `[out, in]`: U_r `[out, r]`, S_r, V_r^T `[r, in]`.
    func truncatedSVD(_ w: Tensor) throws -> (u: Tensor, s: [Float], vt: Tensor) {
        let (u, s, vt) = try Linalg.svd(w)
        let k = s.count, (m, n, r) = (outFeatures, inFeatures, rank)
        let ur = Tensor(uninitialized: [m, r]), vr = Tensor(uninitialized: [r, n])
        for i in 0..<m { for j in 0..<r { ur.data[i * r + j] = u.data[i * k + j] } }
        for j in 0..<r { for c in 0..<n { vr.data[j * n + c] = vt.data[j * n + c] } }
        return (ur, Array(s[0..<r]), vr)
    }

    /// The kind's short name (`lora-xs`, `lora-sb`).
    class var kindName: String { "latent-lora" }
    /// The method's name in messages.
    class var methodName: String { "latent LoRA" }
    /// R's initial value (zero unless the class draws it).
    class func initialLatent(_ spec: ParameterSpec, initializer: ParameterInitializer) -> Parameter {
        Parameter(spec, value: Tensor(zeros: spec.shape))
    }

    /// The parameter specs of the latent operators: base, A, B frozen, R trainable.
    static func specs(for slot: LinearSlotSpec, rank: Int) -> [ParameterSpec] {
        [
            ParameterSpec(name: slot.path + ".base_layer.weight", role: slot.role, shape: [slot.outFeatures, slot.inFeatures], trainable: false),
            ParameterSpec(name: slot.path + ".lora_A.weight", role: slot.role, shape: [rank, slot.inFeatures], trainable: false),
            ParameterSpec(name: slot.path + ".lora_B.weight", role: slot.role, shape: [slot.outFeatures, rank], trainable: false),
            ParameterSpec(name: slot.path + ".default_lora_latent_mapping.weight", role: slot.role, shape: [rank, rank]),
        ]
    }
}

/// An operator whose frozen factors derive from its base weight, to be recomputed once the
/// base holds pre-trained weights (`--init-from` loads them after the model is built).
public protocol BaseInitializable: LinearOperator {
    /// Recomputes the factors from the current base weight.
    func initializeFromBase() throws
}

extension LlamaModel {
    /// Recomputes every `BaseInitializable` operator's factors from its current base (call
    /// after loading pre-trained weights); returns how many.
    @discardableResult
    public func initializeAdaptersFromBase() throws -> Int {
        let ops = slots.compactMap { $0.op as? any BaseInitializable }
        for op in ops { try op.initializeFromBase() }
        return ops.count
    }
}

/// A latent-LoRA operator in a slot (`LoRAXSLinear.Kind`, `LoRASBLinear.Kind`): rank r and
/// alpha, s = alpha / r.
public struct LatentLoRAKind<Op: LatentLoRALinear & BaseInitializable>: LinearOperatorKind {
    public let rank: Int
    public let alpha: Float

    /// `alpha` nil means alpha = r (s = 1), the LoRA-XS and LoRA-SB references' choice.
    public init(rank: Int, alpha: Float? = nil) {
        self.rank = rank; self.alpha = alpha ?? Float(rank)
    }

    public var name: String { Op.kindName }
    public var scaling: Float { alpha / Float(rank) }

    public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] { LatentLoRALinear.specs(for: slot, rank: rank) }

    /// t = x A^T `[rows, r]` on training passes.
    public func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int {
        mode == .training ? MemoryLayout<Float>.size * rows * rank : 0
    }

    /// W0 as the dense weight would be drawn, A and B from `initializeFromBase()`, R as the
    /// class draws it; refuses a rank outside 1...min(in, out) and an alpha that is not
    /// finite and positive.
    public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
        try slot.checkRank(rank, method: Op.methodName)
        try checkAlpha(alpha, method: Op.methodName)
        let specs = parameterSpecs(for: slot)
        let op = Op(
            base: initializer.denseBase(specs[0], for: slot), a: Parameter(specs[1], value: Tensor(zeros: specs[1].shape)),
            b: Parameter(specs[2], value: Tensor(zeros: specs[2].shape)), latent: Op.initialLatent(specs[3], initializer: initializer),
            scaling: scaling)
        try op.initializeFromBase()
        return op
    }
}

import SubspaceCore

/// "Low-Rank" pre-training (the baseline of GaLore's Table 2 and of Glentis et al. 2025,
/// "Scalable Parameter and Memory Efficient Pretraining for LLM", arXiv 2505.22922): the
/// slot's weight is a scaled product of two trainable factors, with no dense base,
///
///     W = s B A,   y = s (x A^T) B^T,   s = alpha / r,   A [r, in], B [out, r].
///
/// Both factors are Kaiming-initialised, as `LoRaFaLinear` in the reference
/// (`OptimAI-Lab/Memory_Efficient_Pretraining`, `pt_low_rank/low_rank_model.py`):
/// `kaiming_uniform_(a = sqrt(5))`, bounds 1/sqrt(in) for A and 1/sqrt(r) for B (each
/// factor's own fan-in). B cannot start at zero as LoRA's does: with no base the model
/// would then compute nothing and A would get no gradient. The reference's dropout on x
/// (`lora_dropout`, 0 in its scripts) is not implemented: pre-training uses none.
///
/// Names follow the reference's `nn.Linear` factors under the slot's path:
/// `<path>.lora_A.weight`, `<path>.lora_B.weight`. A training forward keeps x A^T
/// `[rows, r]`. Weight refactorization (`Refactorizable`) rebalances the factors.
/// `SLTrainLinear` extends it with a sparse part.
public class LowRankLinear: LinearOperator, Refactorizable, DenseMappable {
    let factors: ScaledFactors
    public var a: Parameter { factors.a }
    public var b: Parameter { factors.b }
    public var rank: Int { factors.rank }
    public var scaling: Float { factors.scaling }
    public var inFeatures: Int { factors.inFeatures }
    public var outFeatures: Int { factors.outFeatures }
    public var parameters: [Parameter] { [factors.a, factors.b] }
    public var activationBytes: Int { factors.activationBytes }

    /// Factors A `[r, in]` and B `[out, r]` and the scaling s.
    public init(a: Parameter, b: Parameter, scaling: Float) {
        factors = ScaledFactors(a: a, b: b, scaling: scaling)
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode) {
        factors.forward(x, y, rows: rows, accumulate: accumulate, mode: mode)
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        factors.backwardInput(dy, dx, rows: rows, accumulate: accumulate)
    }

    public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        factors.accumulateGradients(dy: dy, x: x, rows: rows)
    }

    public func releaseActivations() { factors.releaseActivations() }

    /// s B A.
    public func denseWeight() -> Tensor {
        let w = Tensor(zeros: [outFeatures, inFeatures])
        factors.addProduct(to: w)
        return w
    }

    public func refactorize() throws { try factors.refactorize() }

    /// Low-Rank in a slot: rank r and alpha (s = alpha / r).
    public struct Kind: LinearOperatorKind {
        public let rank: Int
        public let alpha: Float

        /// The reference's 60M script: `--rank 128 --lora_alpha 32` (for d = 512, r = d/4);
        /// alpha 32 is also `LoRaFaLinear`'s default. Subspace's presets are smaller, so
        /// the rank has no default here (r = d/4 is the digest's suggestion).
        public static let defaultAlpha: Float = 32

        public init(rank: Int, alpha: Float = Kind.defaultAlpha) {
            self.rank = rank; self.alpha = alpha
        }

        public var name: String { "low-rank" }
        public var scaling: Float { alpha / Float(rank) }

        public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            [
                ParameterSpec(name: slot.path + ".lora_A.weight", role: slot.role, shape: [rank, slot.inFeatures]),
                ParameterSpec(name: slot.path + ".lora_B.weight", role: slot.role, shape: [slot.outFeatures, rank]),
            ]
        }

        public func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int {
            mode == .training ? MemoryLayout<Float>.size * rows * rank : 0
        }

        /// Throws for a rank outside 1...min(in, out) or an alpha that is not finite and positive.
        public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            try slot.checkRank(rank, method: "low-rank")
            try checkAlpha(alpha, method: "low-rank")
            let specs = parameterSpecs(for: slot)
            return LowRankLinear(a: initializer.kaimingUniform(specs[0]), b: initializer.kaimingUniform(specs[1]), scaling: scaling)
        }
    }
}

/// Refuses an alpha that is not a finite positive number.
func checkAlpha(_ alpha: Float, method: String) throws {
    guard alpha.isFinite, alpha > 0 else { throw ConfigurationError("the \(method) alpha must be a finite positive number (got \(alpha))") }
}

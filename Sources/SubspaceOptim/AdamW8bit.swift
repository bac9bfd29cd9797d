import CSupport
import SubspaceCore
import SubspaceModels

/// 8-bit AdamW (Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
/// Quantization", ICLR 2022) with bitsandbytes' `AdamW8bit` semantics: AdamW whose two
/// moments are stored 8 bits per element, block-wise (`AdamMomentStorage`, `QuantizedState`):
///
///     p <- p · (1 - lr · wd)                           (decoupled weight decay, first)
///     per block of 256: dequantize m, v;  m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
///     p <- p - lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps)
///     requantize m (signed dynamic map) and v (unsigned map) with the block's new absmax
///
/// Tensors with fewer than `min_8bit_size` = 4096 elements keep float32 moments and take the
/// same step (bitsandbytes' 32-bit path). Defaults are bitsandbytes' `AdamW8bit`: lr 1e-3,
/// betas (0.9, 0.999), eps 1e-8, weight decay 1e-2, block size 256.
///
/// **Reference paths.** The update is that of bitsandbytes' CPU kernel
/// (`_optimizer_update_8bit_blockwise_cpu`), which the parity fixtures run. Its CUDA kernel
/// applies the weight decay after the step instead of before (a difference of
/// lr·wd times the step) and, after rounding, nudges a first-moment code whose sign flipped
/// back across zero; both CPU and CUDA quantize to the nearest code, which we do exactly
/// (bitsandbytes' native CPU quantizer approximates it with a lookup table; see
/// `DynamicQuantizationMap`). A non-finite gradient element zeroes its moments and leaves
/// its weight alone, as the CUDA kernel does.
///
/// State per tensor of n ≥ 4096 elements: 2n + 8·ceil(n / 256) bytes (against AdamW's 8n)
/// plus a step count; checkpoint keys `step`, `state1`, `absmax1`, `state2`, `absmax2`
/// (bitsandbytes' names; codes as float32 integers), or `exp_avg`, `exp_avg_sq` for small
/// tensors.
public final class AdamW8bit: ParameterwiseOptimizer<AdamW8bit.State> {
    public struct State {
        public var step: Int = 0
        public var moments: AdamMomentStorage
    }

    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public var quantization: StateQuantization
    /// Whether the element update runs adam.c's AVX-512 loop (`VectorISA`; the same bits as
    /// the Swift loop, which tests force with `false`).
    var vectorKernels = VectorISA.avx512
    public override var name: String { "adamw8bit" }

    /// - Throws: `ConfigurationError` for impossible hyperparameters.
    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
        weightDecay: Float = 1e-2, quantization: StateQuantization? = nil
    ) throws {
        try OptimizerRegistry.check(learningRate, beta1: beta1, beta2: beta2, eps: eps, wd: weightDecay)
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        self.quantization = try quantization ?? StateQuantization()
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State {
        State(moments: AdamMomentStorage(shape: p.shape, quantization: quantization))
    }

    public override func bytes(of s: State) -> Int { s.moments.bytes }

    /// m and v shaped like the parameter, 8-bit when the size reaches `minimumSize`.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let moment = StateFootprint.Entry(p.shape, .blockwise8Bit(quantization))
        return StateFootprint(states: [moment, moment])
    }

    public override func encode(_ s: State) -> [String: Tensor] {
        var out = s.moments.encode()
        out["step"] = Tensor(shape: [1], values: [Float(s.step)])
        return out
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        let keys = ["step"] + AdamMomentStorage.keys(elements: p.count, quantization: quantization)
        try OptimizerStateError.checkKeys(t, required: keys, parameter: p)
        let step = try OptimizerStateError.tensor(t, "step", shape: [1], parameter: p)[0]
        guard step >= 0, step <= 16_777_216, step == step.rounded() else {
            throw OptimizerStateError.invalidValue(parameter: p.name, key: "step", reason: "\(step) is not a step count")
        }
        return State(
            step: Int(step),
            moments: try AdamMomentStorage.decode(t, shape: p.shape, quantization: quantization, parameter: p))
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        s.step += 1
        let stepSize = lr / AdamMomentStorage.biasCorrection1(beta1: beta1, step: s.step)
        let bc2Sqrt = AdamMomentStorage.biasCorrection2Sqrt(beta2: beta2, step: s.step)
        let decay = 1 - lr * weightDecay
        let w = p.value.data, gd = g.data, b1 = beta1, b2 = beta2, eps = eps
        let avx512 = vectorKernels
        let constants = subspace_adam_step(
            beta1: b1, beta2: b2, eps: eps, bc2Sqrt: bc2Sqrt, torchStyle: 0, stepSize: stepSize, decayBefore: decay, decayAfter: 1)
        s.moments.withElements { r, m, v in
            if avx512 {  // adam.c: the same operations per element, 16 at a time
                withUnsafePointer(to: constants) { subspace_adam_bnb_update_avx512(w + r.lowerBound, gd + r.lowerBound, m, v, r.count, $0) }
                return
            }
            var k = 0
            for i in r {
                let gi = gd[i]
                if gi.isFinite {
                    w[i] *= decay
                    let d = AdamMomentStorage.advance(gi, m: &m[k], v: &v[k], beta1: b1, beta2: b2, eps: eps, bc2Sqrt: bc2Sqrt)
                    w[i] -= stepSize * d
                } else {
                    m[k] = 0; v[k] = 0
                }
                k += 1
            }
        }
    }
}

/// `adamw8bit`, and the rule that `galore8bit` and `qgalore` give the parameters they do not
/// project: `AdamW8bit` with its AdamW hyperparameters and 8-bit layout.
public struct AdamW8bitSettings: MethodSettings {
    public var adamw: AdamWSettings
    public var quantization: QuantizationSettings

    public init(adamw: AdamWSettings, quantization: QuantizationSettings) { self.adamw = adamw; self.quantization = quantization }

    /// bitsandbytes' `AdamW8bit` defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8 and weight
    /// decay 1e-2 (bitsandbytes' own, which galore-torch's `GaLoreAdamW8bit` keeps); blocks
    /// of 256, float32 below 4096 elements (`QuantizationSettings.standard`).
    public static let defaults = AdamW8bitSettings(
        adamw: AdamWSettings(learningRate: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2),
        quantization: .standard)

    public init(resolving o: OptimizerOptions) throws { self.init(o, weightDecay: Self.defaults.adamw.weightDecay) }

    /// `defaults` from `o`, with `weightDecay` as the weight-decay default.
    public init(_ o: OptimizerOptions, weightDecay: Float) {
        var d = Self.defaults.adamw
        d.weightDecay = weightDecay
        self.init(adamw: AdamWSettings(o, defaults: d), quantization: QuantizationSettings(o))
    }

    public func validate() throws {
        try adamw.validate()
        try quantization.validate()
    }

    public func make() throws -> AdamW8bit {
        try AdamW8bit(
            learningRate: adamw.learningRate, beta1: adamw.beta1, beta2: adamw.beta2, eps: adamw.eps,
            weightDecay: adamw.weightDecay, quantization: try quantization.make())
    }

    public func build() throws -> RoutedOptimizer { RoutedOptimizer(fallback: try make()) }

    public var groups: [ResolvedOptimizer.Group] { [group(ResolvedOptimizer.Group.all)] }

    func group(_ parameters: String) -> ResolvedOptimizer.Group { .init(parameters: parameters, rule: "adamw8bit", adamw, quantization) }
}

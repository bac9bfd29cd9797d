/// AdamW (Loshchilov & Hutter, 2019) with exactly `torch.optim.AdamW`'s semantics:
///
///     p <- p * (1 - lr * wd)                       (decoupled weight decay, first)
///     m <- m + (1 - beta1) * (g - m)
///     v <- beta2 * v + (1 - beta2) * g^2
///     p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
///
/// with t counted per parameter from 1. Defaults are PyTorch's: lr 1e-3, betas (0.9, 0.999),
/// eps 1e-8, weight decay 0.01. `amsgrad` keeps the running maximum of v (one more m x n
/// buffer) as PyTorch does. State: 2 floats per element (3 with amsgrad) plus a step count.
///
/// `style: .huggingFace` runs transformers' `AdamW` instead (the rule galore-torch's
/// `GaLoreAdamW` applies to the parameters it does not project; `UnprojectedAdamW`):
///
///     m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
///     p <- p - lr·sqrt(1 - b2^t)/(1 - b1^t) · m / (sqrt(v) + eps)
///     p <- p · (1 - lr·wd)                        (decoupled weight decay, after the update)
///
/// eps is added to sqrt(v) before the bias correction, so it weighs sqrt(1 - b2^t) times
/// less than in the torch form early on. Checkpoint keys are the same.
///
/// The element sweeps (`kernel`, `huggingFaceKernel`, `AdamMoments.direction`; amsgrad aside)
/// run `Sources/CSupport/adam.c` on 16 AVX-512 lanes where the CPU has it (`VectorISA`): one
/// pass over p, g, m and v with `AdamMoments.advance`'s operations in the same order, so the
/// same bits as the Swift loops, which stay as the fallback.
///
/// `statePrecision` `.bf16` (`--state-precision bf16`) keeps m and v in bfloat16, 2 bytes per
/// element each, with the same float32 arithmetic (`AdamBF16.swift`); amsgrad's maximum has
/// no bf16 form and refuses it.
public final class AdamW: ParameterwiseOptimizer<AdamW.State>, StatePrecisionAdjustable {
    public struct State {
        public var step: Int = 0
        /// m and v: float32, or bfloat16 under `statePrecision` (never 8-bit here).
        public var moments: AdamMomentStorage
        public var vMax: Tensor?

        public init(step: Int = 0, moments: AdamMomentStorage, vMax: Tensor? = nil) {
            self.step = step; self.moments = moments; self.vMax = vMax
        }

        public init(step: Int = 0, m: Tensor, v: Tensor, vMax: Tensor? = nil) {
            self.init(step: step, moments: .float32(m: m, v: v), vMax: vMax)
        }

        /// The first moment as float32 (the live tensor, or a widened copy of a bf16 one).
        public var m: Tensor { moments.dequantized.m }
        /// The second moment as float32 (the live tensor, or a widened copy of a bf16 one).
        public var v: Tensor { moments.dequantized.v }
    }
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float, amsgrad: Bool
    /// `.torch` (`torch.optim.AdamW`, the default) or `.huggingFace` (transformers' `AdamW`).
    public var style: AdamMoments.Style
    /// The element type of m and v (default fp32).
    public private(set) var statePrecision: StatePrecision = .fp32
    public override var name: String { "adamw" }

    public func useStatePrecision(_ precision: StatePrecision) throws {
        if precision == .bf16, amsgrad { throw ConfigurationError("--state-precision bf16 does not keep amsgrad's running maximum") }
        statePrecision = precision
    }

    public func exportStateKeepingBF16(for p: Parameter) -> (tensors: [String: Tensor], bf16: [String: BFloat16Tensor]) {
        guard let s = states[p.name] else { return ([:], [:]) }
        let half = s.moments.bf16Moments
        return (encode(s, moments: half.isEmpty), half)
    }

    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
        weightDecay: Float = 0.01, amsgrad: Bool = false, style: AdamMoments.Style = .torch
    ) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay; self.amsgrad = amsgrad
        self.style = style
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State {
        State(
            moments: AdamMomentStorage(shape: p.shape, quantization: nil, precision: statePrecision),
            vMax: amsgrad ? Tensor(zeros: p.shape) : nil)
    }

    public override func bytes(of s: State) -> Int { s.moments.bytes + (s.vMax?.byteCount ?? 0) }

    /// m and v (in `statePrecision`; and the running maximum with amsgrad), each shaped like
    /// the parameter.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let moment = StateFootprint.moment(p.shape, statePrecision)
        return StateFootprint(states: [moment, moment] + (amsgrad ? [StateFootprint.Entry(p.shape)] : []))
    }

    /// PyTorch's state keys: `step` (a 1-element tensor, exact up to 2^24 steps),
    /// `exp_avg` (m), `exp_avg_sq` (v; bf16 ones widened, exactly) and, with amsgrad,
    /// `max_exp_avg_sq`.
    public override func encode(_ s: State) -> [String: Tensor] { encode(s, moments: true) }

    /// `encode`, with or without the moments (`exportStateKeepingBF16`).
    func encode(_ s: State, moments: Bool) -> [String: Tensor] {
        var out = moments ? s.moments.encode() : [:]
        out["step"] = Tensor(shape: [1], values: [Float(s.step)])
        if let vMax = s.vMax { out["max_exp_avg_sq"] = vMax }
        return out
    }

    /// Requires `max_exp_avg_sq` exactly when `amsgrad` is on: a state saved under the other
    /// setting cannot continue the same run.
    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        let keys = ["step", "exp_avg", "exp_avg_sq"] + (amsgrad ? ["max_exp_avg_sq"] : [])
        try OptimizerStateError.checkKeys(t, required: keys, parameter: p)
        let stepTensor = try OptimizerStateError.tensor(t, "step", shape: [1], parameter: p)
        let step = stepTensor[0]
        guard step >= 0, step <= 16_777_216, step == step.rounded() else {
            throw OptimizerStateError.invalidValue(parameter: p.name, key: "step", reason: "\(step) is not a step count")
        }
        return State(
            step: Int(step),
            moments: try AdamMomentStorage.decode(t, shape: p.shape, quantization: nil, precision: statePrecision, parameter: p),
            vMax: amsgrad ? try OptimizerStateError.tensor(t, "max_exp_avg_sq", shape: p.shape, parameter: p) : nil)
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        s.step += 1
        let m: Tensor, v: Tensor
        switch s.moments {
        case .float32(let mt, let vt): (m, v) = (mt, vt)
        case .bfloat16(let mh, let vh):
            AdamW.kernelBF16(
                p: p.value.data, g: g.data, m: mh.bits, v: vh.bits, count: p.count, lr: lr, beta1: beta1, beta2: beta2,
                eps: eps, weightDecay: weightDecay, step: s.step, style: style)
            return
        case .blockwise8bit: preconditionFailure("AdamW keeps float32 or bfloat16 moments")
        }
        if style == .huggingFace {
            AdamW.huggingFaceKernel(
                p: p.value.data, g: g.data, m: m.data, v: v.data, vMax: s.vMax?.data, count: p.count,
                lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, step: s.step)
            return
        }
        let t = Float(s.step)
        let bc1 = 1 - pow(beta1, t), bc2 = 1 - pow(beta2, t)
        AdamW.kernel(
            p: p.value.data, g: g.data, m: m.data, v: v.data, vMax: s.vMax?.data, count: p.count,
            lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
            stepSize: lr / bc1, bc2Sqrt: bc2.squareRoot())
    }

    /// transformers' `AdamW` step over `count` elements: advances m and v (Hugging Face
    /// style), takes the step lr·sqrt(1 - b2^t)/(1 - b1^t) · m / (sqrt(v) + eps), then decays
    /// `p` by 1 - lr·wd.
    public static func huggingFaceKernel(
        p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, vMax: UnsafeMutablePointer<Float>?, count: Int,
        lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, step t: Int,
        avx512: Bool = VectorISA.avx512
    ) {
        let stepSize = AdamMoments.stepSize(lr: lr, beta1: beta1, beta2: beta2, step: t, style: .huggingFace)
        let decay = 1 - lr * weightDecay
        let a = subspace_adam_step(
            beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: 1, torchStyle: 0, stepSize: stepSize,
            decayBefore: 1, decayAfter: weightDecay > 0 ? decay : 1)
        Parallel.ranges(count, grain: 1 << 15) { r in
            if avx512 && vMax == nil {
                let o = r.lowerBound
                withUnsafePointer(to: a) { subspace_adam_update_avx512(p + o, g + o, m + o, v + o, r.count, $0) }
                return
            }
            for i in r {
                let (mi, denom) = AdamMoments.advance(
                    g[i], m: &m[i], v: &v[i], vMax: vMax.map { $0 + i },
                    beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: 1, style: .huggingFace)
                p[i] -= stepSize * mi / denom
                if weightDecay > 0 { p[i] *= decay }
            }
        }
    }

    /// The element loop: decays `p`, advances m and v with `AdamMoments` (torch style) and
    /// writes the step into `p`.
    public static func kernel(
        p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, vMax: UnsafeMutablePointer<Float>?, count: Int,
        lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, stepSize: Float, bc2Sqrt: Float,
        avx512: Bool = VectorISA.avx512
    ) {
        let decay = 1 - lr * weightDecay
        if vMax == nil && avx512 {
            let a = subspace_adam_step(
                beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: bc2Sqrt, torchStyle: 1, stepSize: stepSize,
                decayBefore: decay, decayAfter: 1)
            Parallel.ranges(count, grain: 1 << 15) { r in
                let o = r.lowerBound
                withUnsafePointer(to: a) { subspace_adam_update_avx512(p + o, g + o, m + o, v + o, r.count, $0) }
            }
            return
        }
        if vMax == nil {
            // Eight lanes at a time; the same operations in the same order as the scalar
            // path, so results are bit-identical to it.
            typealias V8 = SIMD8<Float>
            let c1 = 1 - beta1, c2 = 1 - beta2
            Parallel.ranges(count, grain: 1 << 15) { r in
                var i = r.lowerBound
                while i + 8 <= r.upperBound {
                    var pv = UnsafeRawPointer(p + i).loadUnaligned(as: V8.self)
                    let gv = UnsafeRawPointer(g + i).loadUnaligned(as: V8.self)
                    var mv = UnsafeRawPointer(m + i).loadUnaligned(as: V8.self)
                    var vv = UnsafeRawPointer(v + i).loadUnaligned(as: V8.self)
                    pv *= decay
                    mv = mv + c1 * (gv - mv)
                    vv = beta2 * vv + c2 * gv * gv
                    pv -= stepSize * mv / (vv.squareRoot() / bc2Sqrt + eps)
                    UnsafeMutableRawPointer(m + i).storeBytes(of: mv, as: V8.self)
                    UnsafeMutableRawPointer(v + i).storeBytes(of: vv, as: V8.self)
                    UnsafeMutableRawPointer(p + i).storeBytes(of: pv, as: V8.self)
                    i += 8
                }
                while i < r.upperBound {
                    p[i] *= decay
                    let (mi, denom) = AdamMoments.advance(
                        g[i], m: &m[i], v: &v[i], vMax: nil,
                        beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: bc2Sqrt, style: .torch)
                    p[i] -= stepSize * mi / denom
                    i += 1
                }
            }
            return
        }
        Parallel.ranges(count, grain: 1 << 15) { r in
            for i in r {
                p[i] *= decay
                let (mi, denom) = AdamMoments.advance(
                    g[i], m: &m[i], v: &v[i], vMax: vMax.map { $0 + i },
                    beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: bc2Sqrt, style: .torch)
                p[i] -= stepSize * mi / denom
            }
        }
    }
}

/// Adam's moment update, shared by `AdamW` (PyTorch style) and the rules that run Adam on
/// other buffers (GaLore's and Fira's projected moments, Hugging Face style).
///
/// With t counted from 1, bc1 = 1 - beta1^t and bc2 = 1 - beta2^t, the two styles take the
/// same step up to where eps sits:
///
///     torch:        m <- m + (1 - b1)(g - m)    step lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
///     huggingFace:  m <- b1 m + (1 - b1) g      step lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps)
///
/// and both update v <- b2 v + (1 - b2) g^2 (keeping its running maximum with amsgrad).
/// `huggingFace` is `transformers.AdamW`, which galore-torch and fira copy.
public enum AdamMoments {
    public enum Style: Sendable { case torch, huggingFace }

    /// The step size multiplying m / denominator at step `t` (1-based).
    public static func stepSize(lr: Float, beta1: Float, beta2: Float, step t: Int, style: Style) -> Float {
        let bc1 = 1 - pow(beta1, Float(t)), bc2 = 1 - pow(beta2, Float(t))
        return style == .torch ? lr / bc1 : lr * bc2.squareRoot() / bc1
    }

    /// Advances one element's moments with gradient `g`; returns the new m and the
    /// denominator (`bc2Sqrt` = sqrt(1 - beta2^t), used by the torch style only).
    @inline(__always)
    public static func advance(
        _ g: Float, m: inout Float, v: inout Float, vMax: UnsafeMutablePointer<Float>?,
        beta1: Float, beta2: Float, eps: Float, bc2Sqrt: Float, style: Style
    ) -> (m: Float, denom: Float) {
        let mi = style == .torch ? m + (1 - beta1) * (g - m) : beta1 * m + (1 - beta1) * g
        let vi = beta2 * v + (1 - beta2) * g * g
        m = mi; v = vi
        var vv = vi
        if let vMax { vv = max(vMax.pointee, vi); vMax.pointee = vv }
        return (mi, style == .torch ? vv.squareRoot() / bc2Sqrt + eps : vv.squareRoot() + eps)
    }

    /// The C sweep's constants for `direction` at step `t` (no weights: step size 0, no decay).
    static func directionConstants(beta1: Float, beta2: Float, eps: Float, step t: Int, style: Style) -> subspace_adam_step {
        subspace_adam_step(
            beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: (1 - pow(beta2, Float(t))).squareRoot(),
            torchStyle: style == .torch ? 1 : 0, stepSize: 0, decayBefore: 1, decayAfter: 1)
    }

    /// Advances `count` moments with `g` and writes the normalized direction m / denominator
    /// into `out` (which may be `g` itself).
    public static func direction(
        g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
        out: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, eps: Float,
        step t: Int, style: Style, avx512: Bool = VectorISA.avx512
    ) {
        let a = directionConstants(beta1: beta1, beta2: beta2, eps: eps, step: t, style: style)
        let bc2Sqrt = a.bc2Sqrt
        Parallel.ranges(count, grain: 1 << 15) { r in
            if avx512 {
                let o = r.lowerBound
                withUnsafePointer(to: a) { subspace_adam_direction_avx512(g + o, m + o, v + o, out + o, r.count, $0) }
                return
            }
            for i in r {
                let (mi, denom) = advance(
                    g[i], m: &m[i], v: &v[i], vMax: nil, beta1: beta1, beta2: beta2, eps: eps, bc2Sqrt: bc2Sqrt, style: style)
                out[i] = mi / denom
            }
        }
    }
}

@inline(__always) func pow(_ x: Float, _ y: Float) -> Float { Float(Foundation.pow(Double(x), Double(y))) }
import CSupport
import Foundation
import SubspaceCore
import SubspaceModels

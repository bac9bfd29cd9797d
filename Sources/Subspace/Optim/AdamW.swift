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
public final class AdamW: ParameterwiseOptimizer<AdamW.State> {
    public struct State {
        public var step: Int = 0
        public var m: Tensor
        public var v: Tensor
        public var vMax: Tensor?
    }
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float, amsgrad: Bool
    public override var name: String { "adamw" }

    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
        weightDecay: Float = 0.01, amsgrad: Bool = false
    ) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay; self.amsgrad = amsgrad
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State {
        State(m: Tensor(zeros: p.shape), v: Tensor(zeros: p.shape), vMax: amsgrad ? Tensor(zeros: p.shape) : nil)
    }

    public override func bytes(of s: State) -> Int { s.m.byteCount + s.v.byteCount + (s.vMax?.byteCount ?? 0) }

    /// PyTorch's state keys: `step` (a 1-element tensor, exact up to 2^24 steps),
    /// `exp_avg` (m), `exp_avg_sq` (v) and, with amsgrad, `max_exp_avg_sq`.
    public override func encode(_ s: State) -> [String: Tensor] {
        var out = ["step": Tensor(shape: [1], values: [Float(s.step)]), "exp_avg": s.m, "exp_avg_sq": s.v]
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
            m: try OptimizerStateError.tensor(t, "exp_avg", shape: p.shape, parameter: p),
            v: try OptimizerStateError.tensor(t, "exp_avg_sq", shape: p.shape, parameter: p),
            vMax: amsgrad ? try OptimizerStateError.tensor(t, "max_exp_avg_sq", shape: p.shape, parameter: p) : nil)
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        s.step += 1
        let t = Float(s.step)
        let bc1 = 1 - pow(beta1, t), bc2 = 1 - pow(beta2, t)
        AdamW.kernel(
            p: p.value.data, g: g.data, m: s.m.data, v: s.v.data, vMax: s.vMax?.data, count: p.count,
            lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
            stepSize: lr / bc1, bc2Sqrt: bc2.squareRoot())
    }

    /// The element loop, shared with rules that run Adam on other buffers (GaLore's
    /// projected moments, for instance): updates m, v and writes the step into `p`.
    public static func kernel(
        p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, vMax: UnsafeMutablePointer<Float>?, count: Int,
        lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, stepSize: Float, bc2Sqrt: Float
    ) {
        let decay = 1 - lr * weightDecay
        Parallel.ranges(count, grain: 1 << 15) { r in
            for i in r {
                let gi = g[i]
                p[i] *= decay
                let mi = m[i] + (1 - beta1) * (gi - m[i])
                let vi = beta2 * v[i] + (1 - beta2) * gi * gi
                m[i] = mi; v[i] = vi
                var vv = vi
                if let vMax { vv = max(vMax[i], vi); vMax[i] = vv }
                p[i] -= stepSize * mi / (vv.squareRoot() / bc2Sqrt + eps)
            }
        }
    }
}

@inline(__always) func pow(_ x: Float, _ y: Float) -> Float { Float(Foundation.pow(Double(x), Double(y))) }
import Foundation

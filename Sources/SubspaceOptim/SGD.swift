import SubspaceCore
import SubspaceModels

/// Stochastic gradient descent with `torch.optim.SGD`'s semantics:
///
///     d <- g + wd * p                              (coupled weight decay)
///     b <- d on the first step, else mu * b + (1 - dampening) * d
///     d <- d + mu * b (Nesterov) or d <- b
///     p <- p - lr * d
///
/// Defaults: momentum 0, dampening 0, no weight decay. State: one float per element when
/// momentum is non-zero.
public final class SGD: ParameterwiseOptimizer<SGD.State> {
    public struct State { public var buffer: Tensor? }
    public var momentum: Float, dampening: Float, weightDecay: Float, nesterov: Bool
    public override var name: String { "sgd" }

    public init(learningRate: Float = 1e-2, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.momentum = momentum; self.dampening = dampening; self.weightDecay = weightDecay; self.nesterov = nesterov
        super.init(learningRate: learningRate)
    }

    public override func makeState(for p: Parameter) -> State { State(buffer: nil) }
    public override func bytes(of s: State) -> Int { s.buffer?.byteCount ?? 0 }
    /// The momentum buffer (parameter-shaped) when momentum is non-zero, else nothing.
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        StateFootprint(states: momentum != 0 ? [p.shape] : [])
    }

    /// PyTorch's state key: `momentum_buffer`, absent before the first momentum step and
    /// always without momentum.
    public override func encode(_ s: State) -> [String: Tensor] {
        s.buffer.map { ["momentum_buffer": $0] } ?? [:]
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        try OptimizerStateError.checkKeys(t, required: [], optional: ["momentum_buffer"], parameter: p)
        guard t["momentum_buffer"] != nil else { return State(buffer: nil) }
        return State(buffer: try OptimizerStateError.tensor(t, "momentum_buffer", shape: p.shape, parameter: p))
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        let n = p.count, w = p.value.data, gd = g.data
        if momentum == 0 {
            for i in 0..<n { w[i] -= lr * (gd[i] + weightDecay * w[i]) }
            return
        }
        let first = s.buffer == nil
        let buf = s.buffer ?? Tensor(uninitialized: p.shape)
        s.buffer = buf
        let b = buf.data
        for i in 0..<n {
            let d = gd[i] + weightDecay * w[i]
            b[i] = first ? d : momentum * b[i] + (1 - dampening) * d
            w[i] -= lr * (nesterov ? d + momentum * b[i] : b[i])
        }
    }
}

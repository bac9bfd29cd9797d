import ArgumentParser
import Subspace

/// Optimizer and step flags shared by `train` and `bench`.
struct OptimizerFlags: ParsableArguments {
    @Option(help: "Optimizer: \(OptimizerRegistry.names.joined(separator: ", ")).")
    var optimizer: String = "adamw"
    @Option(help: "Learning rate (default: the optimizer's).")
    var lr: Float?
    @Option(help: "Adam betas as 'b1,b2'.")
    var betas: String?
    @Option(help: "Adam epsilon.")
    var eps: Float?
    @Option(name: .customLong("weight-decay"), help: "Decoupled weight decay.")
    var weightDecay: Float?
    @Option(help: "Momentum (SGD).")
    var momentum: Float?
    @Flag(help: "Nesterov momentum (SGD).")
    var nesterov = false
    @Option(help: "Projection rank (GaLore family).")
    var rank: Int?
    @Option(name: .customLong("update-gap"), help: "Steps between projector refreshes.")
    var updateGap: Int?
    @Option(help: "Scale of the projected update.")
    var scale: Float?
    @Option(name: .customLong("grad-accum"), help: "Micro-batches per optimizer step.")
    var gradAccum: Int = 1
    @Option(name: .customLong("clip"), help: "Gradient clipping norm (0 = off).")
    var clip: Float = 0
    @Flag(name: .customLong("per-layer-update"), help: "Step each parameter during backward and free its gradient.")
    var perLayerUpdate = false

    func options() throws -> OptimizerOptions {
        var o = OptimizerOptions()
        o.learningRate = lr; o.eps = eps; o.weightDecay = weightDecay; o.momentum = momentum
        o.nesterov = nesterov ? true : nil; o.rank = rank; o.updateGap = updateGap; o.scale = scale
        if let betas {
            let parts = betas.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2 else { throw ConfigurationError("--betas takes two numbers like 0.9,0.999, got '\(betas)'") }
            o.beta1 = parts[0]; o.beta2 = parts[1]
        }
        return o
    }

    func stepOptions() -> StepOptions {
        var s = StepOptions()
        s.gradAccum = gradAccum; s.clipNorm = clip; s.perLayerUpdate = perLayerUpdate
        return s
    }
}

import SubspaceCore
import SubspaceModels

/// LoRA-SB's initialization (Ponkshe, Singhal et al. 2024, arXiv 2411.19557; reference
/// `RaghavSinghal10/lora-sb`, `utils/gradient_utils.py` and `initialization_utils.py`):
/// estimate the first update of full fine-tuning from the gradient of each adapted weight,
/// accumulated over a few batches, and start every `LoRASBLinear` at its best rank-r
/// approximation:
///
///     G  = sum over batches of dL/dW          (W = W0 + s B R A, the slot's effective weight)
///     dW = -eta sign(G)                        (`.sign`, the reference: Adam's first step)
///        | -eta G                              (`.gradient`: SGD's first step)
///     B, R, A <- U_r, S_r / s, V_r^T  of dW    (`LoRASBLinear.initialize(fromUpdate:)`)
///
/// The reference sums per-sample gradients over `num_samples` examples; here each batch
/// contributes its mean-token-loss gradient (the sign is unchanged by the scale; with
/// `.gradient`, pass the batches the estimate should average and choose eta for the sum).
/// It takes eta = lr / (warmup_ratio * total_steps), the learning rate of the first step
/// of a linear warm-up in units of the peak rate (`referenceStepSize`).
///
/// G is formed by the slots' operators themselves (`LatentLoRALinear` adds dy^T x to its
/// base's gradient while the base's `requiresGrad` is set): every other parameter is
/// frozen for the passes, so nothing else gets a gradient, and afterwards the flags are
/// restored, the bases' gradient buffers dropped and the activation arenas released.
public enum LoRASBInitialization {
    /// Which first step of full fine-tuning the adapter approximates.
    public enum FirstStep: String, Codable, Sendable {
        /// -eta sign(G): Adam's (and AdamW's) first update, bias-corrected, with eps -> 0;
        /// the reference's choice.
        case sign
        /// -eta G: SGD's first update.
        case gradient
    }

    /// eta = lr / warmupSteps (the reference's lr / (warmup_ratio * total_steps)); lr with
    /// no warm-up.
    public static func referenceStepSize(learningRate: Float, warmupSteps: Int) -> Float {
        learningRate / Float(max(1, warmupSteps))
    }

    /// The gradient G of every `LoRASBLinear` slot's effective weight, summed over
    /// `batches`, in slot order; leaves no gradient, no changed flag and no activations.
    public static func accumulatedGradients(model: LlamaModel, batches: [TokenBatch]) throws -> [Tensor] {
        let ops = model.slots.compactMap { $0.op as? LoRASBLinear }
        guard !ops.isEmpty else { throw ConfigurationError("LoRA-SB initialization needs a model with LoRA-SB adapters") }
        guard !batches.isEmpty else { throw ConfigurationError("LoRA-SB initialization needs at least one batch") }
        let flags = model.parameters.map(\.requiresGrad)
        let held = ops.map { $0.base.grad }
        defer {
            for (p, f) in zip(model.parameters, flags) { p.requiresGrad = f }
            for op in ops { op.base.releaseGradient() }
            model.releaseActivations()
        }
        guard held.allSatisfy({ $0 == nil }) else { throw ConfigurationError("a LoRA-SB base already holds a gradient") }
        for p in model.parameters { p.requiresGrad = false }
        for op in ops { op.base.requiresGrad = true }
        for batch in batches {
            try model.forward(batch)
            model.backward()
        }
        return ops.map { $0.base.gradient().copy() }
    }

    /// Estimates G over `batches` and initialises every `LoRASBLinear` of `model` from
    /// dW = -eta sign(G) (or -eta G), eta = `stepSize`. Returns the updates dW, in slot order.
    @discardableResult
    public static func initialize(model: LlamaModel, batches: [TokenBatch], stepSize: Float, firstStep: FirstStep = .sign) throws -> [Tensor] {
        guard stepSize.isFinite, stepSize > 0 else { throw ConfigurationError("the LoRA-SB step size must be a finite positive number (got \(stepSize))") }
        let grads = try accumulatedGradients(model: model, batches: batches)
        let ops = model.slots.compactMap { $0.op as? LoRASBLinear }
        var updates: [Tensor] = []
        for (op, g) in zip(ops, grads) {
            let dW = Tensor(uninitialized: g.shape)
            for i in 0..<g.count {
                let v = g.data[i]
                dW.data[i] = -stepSize * (firstStep == .gradient ? v : (v > 0 ? 1 : (v < 0 ? -1 : 0)))
            }
            try op.initialize(fromUpdate: dW)
            updates.append(dW)
        }
        return updates
    }
}

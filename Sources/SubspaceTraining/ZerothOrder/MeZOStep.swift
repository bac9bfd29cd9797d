import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// MeZO: memory-efficient zeroth-order SGD (Malladi et al., NeurIPS 2023, "Fine-Tuning
/// Language Models with Just Forward Passes", arXiv 2305.17333; code `princeton-nlp/MeZO`,
/// `large_models/trainer.py`, `zo_perturb_parameters`/`zo_forward`/`zo_update`).
///
/// The direction is dense: z ~ N(0, I_d) over every trainable parameter, drawn element by
/// element from the step's seed (`ZerothOrderNoise.gaussian`) each of the four times it is
/// needed (+eps, -2 eps, +eps, update) and never stored, so the rule holds nothing beyond
/// the weights and the inference arena. `E[(z . grad) z] = grad`, so `c z` is an unbiased
/// estimate of the gradient of the eps-smoothed loss (two-point SPSA).
///
/// The update is the reference's, fused per element:
/// `theta <- theta - lr (c z + wd theta)`, with wd = 0 for 1-D tensors (norm gains).
public final class MeZOStep: ZerothOrderStep {
    public init(model: LlamaModel, optimizer: RoutedOptimizer, options: StepOptions) throws {
        try super.init(model: model, optimizer: optimizer, options: options, method: .mezo)
    }

    override func sgdUpdate(_ p: Parameter, c: Float, lr: Float, stream: RandomStream) {
        let wd = p.shape.count >= 2 ? weightDecay : 0
        let w = p.value.data
        ZerothOrderNoise.gaussian(count: p.count, stream: stream, name: p.name) { z, r in
            for i in r { w[i] -= lr * (c * z[i - r.lowerBound] + wd * w[i]) }
        }
    }
}

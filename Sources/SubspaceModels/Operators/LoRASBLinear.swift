import SubspaceCore

/// LoRA-SB (Ponkshe, Singhal et al. 2024, "Initialization using update approximation is a
/// silver bullet for extreme efficient low-rank fine-tuning", arXiv 2411.19557): the
/// LoRA-XS architecture (`LatentLoRALinear`, only R trains) initialised so that the
/// adapter starts at the best rank-r approximation of the first update of full
/// fine-tuning,
///
///     dW = -eta sign(G)  (Adam's first step; or -eta G),   dW = U S V^T,
///     B = U_r,   R = S_r / s,   A = V_r^T,   so   s B R A = trunc_r(dW),
///
/// with G the gradient of W accumulated over a number of samples
/// (`LoRASBInitialization` in SubspaceTraining computes G and calls
/// `initialize(fromUpdate:)`). W0 itself is not changed, as in the reference
/// (`RaghavSinghal10/lora-sb`): the model starts at W0 + trunc_r(dW), i.e. as if it had
/// taken that approximate first step. The reference sets alpha = r (s = 1) and puts S in
/// R; dividing by s keeps s B R A = trunc_r(dW) for any alpha.
///
/// B and A have orthonormal columns and rows, which is what makes R's gradient optimal:
/// an SGD step on R moves W by -lr s^2 B B^T G A^T A, the projection of full fine-tuning's
/// step -lr G onto {B X A} scaled by s^2 (the paper's Theorem; exactly the projection at
/// s = 1).
///
/// Before that initialization the operator holds B = U_r and A = V_r^T from the SVD of W0
/// (orthonormal, without its singular values) and R = 0, so the model is the dense model;
/// `initializeFromBase()` resets it to that state from the current W0.
public final class LoRASBLinear: LatentLoRALinear, BaseInitializable {
    /// B = U_r, A = V_r^T of W0's SVD, R = 0 (the model equals the dense model).
    public func initializeFromBase() throws {
        let (u, _, vt) = try truncatedSVD(base.value)
        b.value.assign(u)
        a.value.assign(vt)
        latent.value.zero()
    }

    /// B = U_r, R = diag(S_r) / s, A = V_r^T from the SVD of `update` (`[out, in]`, the
    /// approximate first full fine-tuning update dW), so that s B R A = trunc_r(dW).
    public func initialize(fromUpdate update: Tensor) throws {
        guard update.shape == [outFeatures, inFeatures] else {
            throw ConfigurationError("the LoRA-SB update for \(base.name) has shape \(update.shape), not [\(outFeatures), \(inFeatures)]")
        }
        let (u, s, vt) = try truncatedSVD(update)
        b.value.assign(u)
        a.value.assign(vt)
        latent.value.zero()
        for j in 0..<rank { latent.value.data[j * rank + j] = s[j] / scaling }
    }

    override class var kindName: String { "lora-sb" }
    override class var methodName: String { "LoRA-SB" }

    /// LoRA-SB in a slot: rank r and alpha (s = alpha / r; alpha nil means alpha = r, s = 1,
    /// as the reference).
    public typealias Kind = LatentLoRAKind<LoRASBLinear>
}

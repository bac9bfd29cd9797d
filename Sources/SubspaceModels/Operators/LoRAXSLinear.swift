import SubspaceCore

/// LoRA-XS (Balazy, Banaei et al. 2024, "LoRA-XS: Low-Rank Adaptation with Extremely Small
/// Number of Parameters", arXiv 2405.17604): `LatentLoRALinear` with A and B taken from the
/// truncated SVD of the frozen base, W0 = U S V^T,
///
///     B = U_r,   A = S_r V_r^T,   R ~ N(0, sigma^2), sigma = 1e-5,
///
/// so s B R A starts near zero and training moves W within span(U_r) x span(V_r). The
/// singular values sit on the input side (A), as in the reference
/// (`utils/initialization_utils.py`: the SVD of W0^T gives `lora_A = (U S)[:, :r]^T`,
/// `lora_B = Vh[:r]^T`) and the paper; R is a Gaussian with sigma 1e-5 there
/// (`init_module_weights(..., sigma=0.00001)`), small but not zero so that the
/// gradient of B and A, were they trained, would not vanish. The reference's scripts set
/// `lora_alpha = r` (s = 1), which is `Kind`'s default.
///
/// The model draws W0 as a dense model would and computes A and B from it; a run that
/// loads pre-trained weights afterwards (`--init-from`) must call `initializeFromBase()`
/// (or `LlamaModel.initializeAdaptersFromBase()`) to recompute them from the loaded W0.
public final class LoRAXSLinear: LatentLoRALinear, BaseInitializable {
    /// A = S_r V_r^T and B = U_r from the SVD of the current W0; R is left as it is.
    public func initializeFromBase() throws {
        let (u, s, vt) = try truncatedSVD(base.value)
        b.value.assign(u)
        let n = inFeatures
        for j in 0..<rank { for c in 0..<n { a.value.data[j * n + c] = s[j] * vt.data[j * n + c] } }
    }

    /// R's initial standard deviation, the reference's sigma.
    public static let latentStd: Float = 1e-5
    override class var kindName: String { "lora-xs" }
    override class var methodName: String { "LoRA-XS" }
    /// R ~ N(0, sigma^2) from its own stream.
    override class func initialLatent(_ spec: ParameterSpec, initializer: ParameterInitializer) -> Parameter {
        initializer.normal(spec, std: latentStd)
    }

    /// LoRA-XS in a slot: rank r and alpha (s = alpha / r; alpha nil means alpha = r, s = 1,
    /// the reference's `lora_alpha = lora_r`).
    public typealias Kind = LatentLoRAKind<LoRAXSLinear>
}

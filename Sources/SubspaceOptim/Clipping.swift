import SubspaceCore
import SubspaceModels

/// Gradient clipping.
///
/// `clipGlobalNorm` is `torch.nn.utils.clip_grad_norm_`: when the norm of all gradients
/// together exceeds `maxNorm`, every gradient is scaled by `maxNorm / (norm + 1e-6)`.
///
/// The per-layer update mode never holds all gradients at once, so it cannot know the global
/// norm. It uses `clipParameter` instead: each gradient is clipped to its share of the
/// budget, `maxNorm * sqrt(n_p / N)` for a parameter of n_p elements out of N. If every
/// gradient sits at its limit the global norm is exactly `maxNorm`, and a gradient below its
/// share is left alone; unlike the global form, one large gradient does not shrink the others.
public enum GradientClipping {
    /// Clips in place; returns the global norm before clipping.
    @discardableResult
    public static func clipGlobalNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
        var sq: Double = 0
        for p in parameters { if let g = p.grad { let n = Double(BLAS.nrm2(g.count, g.data)); sq += n * n } }
        let norm = Float(sq.squareRoot())
        if maxNorm > 0, norm > maxNorm {
            let s = maxNorm / (norm + 1e-6)
            for p in parameters { if let g = p.grad { FastMath.scale(g.data, g.count, s) } }
        }
        return norm
    }

    /// Per-parameter form for per-layer mode (see the type's comment); returns the norm
    /// before clipping.
    @discardableResult
    public static func clipParameter(_ p: Parameter, maxNorm: Float, totalCount: Int) -> Float {
        guard let g = p.grad else { return 0 }
        let norm = BLAS.nrm2(g.count, g.data)
        let limit = maxNorm * (Float(p.count) / Float(max(totalCount, 1))).squareRoot()
        if maxNorm > 0, norm > limit { FastMath.scale(g.data, g.count, limit / (norm + 1e-6)) }
        return norm
    }
}

extension OptimizerRegistry {
    /// `galore8bit`: GaLore with 8-bit block-wise moments (galore-torch's `GaLoreAdamW8bit`:
    /// the GaLore projector in front of bitsandbytes' 8-bit Adam; Zhao et al., ICML 2024,
    /// Sec. 5 and Table 3) on the attention and MLP matrices, and `AdamW8bit` on everything
    /// else, as galore-torch runs its unprojected group through the same bitsandbytes
    /// optimizer. It is `GaLore` with `ProjectedAdam.quantization` set: the projection,
    /// refresh, scale and weight decay (after the update) are GaLore's; the moments of R are
    /// 8-bit when R has at least `min8bitSize` elements, and the step is bitsandbytes'
    /// (eps inside the bias correction). P stays float32.
    ///
    /// Defaults are `GaLoreAdamW8bit`'s: lr 1e-3, eps 1e-8, weight decay 1e-2, block size 256,
    /// minimum size 4096; projection settings as `galore` (rank 128, gap 200, scale 0.25,
    /// `std`).
    public static func galore8bitOptimizer(_ o: OptimizerOptions) throws -> RoutedOptimizer {
        let galore = try GaLore(
            learningRate: o.learningRate ?? 1e-3, beta1: o.beta1 ?? 0.9, beta2: o.beta2 ?? 0.999,
            eps: o.eps ?? 1e-8, weightDecay: o.weightDecay ?? 1e-2, rank: o.rank ?? 128,
            updateGap: o.updateGap ?? 200, scale: o.scale ?? 0.25,
            projection: try ProjectionType(parsing: o.projectionType ?? "std"), seed: o.projectionSeed ?? 0,
            quantization: try stateQuantization(o))
        galore.settings.basisAlgorithm = try basisAlgorithm(o)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, galore)], fallback: try adamW8bit(o))
    }
}

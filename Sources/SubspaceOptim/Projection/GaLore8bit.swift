import SubspaceCore
import SubspaceModels

/// `galore8bit`: GaLore with 8-bit block-wise moments (galore-torch's `GaLoreAdamW8bit`:
/// the GaLore projector in front of bitsandbytes' 8-bit Adam; Zhao et al., ICML 2024,
/// Sec. 5 and Table 3) on the attention and MLP matrices, and `AdamW8bit` on everything
/// else, as galore-torch runs its unprojected group through the same bitsandbytes
/// optimizer. It is `GaLore` with `ProjectedAdam.quantization` set: the projection,
/// refresh, scale and weight decay (after the update) are GaLore's; the moments of R are
/// 8-bit when R has at least `min8bitSize` elements, and the step is bitsandbytes'
/// (eps inside the bias correction). P stays float32.
public struct GaLore8bitSettings: MethodSettings {
    public var adam: AdamWSettings
    public var projection: ProjectionSettings
    public var quantization: QuantizationSettings
    /// `AdamW8bit` with the same lr, betas, eps, weight decay and layout.
    public var unprojected: AdamW8bitSettings

    /// `GaLoreAdamW8bit`'s (bitsandbytes') defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    /// weight decay 1e-2 (`AdamW8bitSettings.defaults`); `ProjectionSettings.galore`.
    public static let defaults = try! GaLore8bitSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        unprojected = try AdamW8bitSettings(resolving: o)
        adam = unprojected.adamw
        quantization = unprojected.quantization
        projection = try ProjectionSettings(o, defaults: .galore)
    }

    public func validate() throws {
        try adam.validate()
        try projection.validate()
        try quantization.validate()
    }

    public func build() throws -> RoutedOptimizer {
        let galore = try GaLore(
            learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, weightDecay: adam.weightDecay,
            rank: projection.rank, updateGap: projection.updateGap, scale: projection.scale ?? 1,
            projection: projection.projectionType, seed: projection.projectionSeed, quantization: try quantization.make())
        galore.settings.basisAlgorithm = projection.svdBasis ?? .gram
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, galore)], fallback: try unprojected.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "galore8bit", adam, projection, quantization),
         unprojected.group(ResolvedOptimizer.Group.others)]
    }
}

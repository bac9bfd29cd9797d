import ArgumentParser
import Subspace
import SubspaceBench

/// A default as help text: 0.001, 1e-8, 200.
private func d(_ x: Float) -> String { SettingText.number(x) }

/// Optimizer and step flags shared by `train`, `bench`, `memory` and `settings`. Every flag is
/// optional so that a resumed run can tell "not given" (keep the saved value) from "given".
/// The defaults quoted in the help are read from the methods' settings types (`MethodSettings`),
/// where they are documented; `subspace settings --optimizer NAME` prints them all, resolved.
struct OptimizerFlags: ParsableArguments {
    @Option(help: "Optimizer: \(OptimizerRegistry.names.joined(separator: ", ")) (default \(OptimizerRegistry.defaultName)).")
    var optimizer: String?
    @Option(help: "Learning rate (default: the optimizer's; train uses \(d(RunConfig.defaultAdamWLearningRate)) for adamw).")
    var lr: Float?
    @Option(help: "Adam betas as 'b1,b2' (default \(d(AdamWSettings.standard.beta1)),\(d(AdamWSettings.standard.beta2))); Adafactor takes beta1 alone.")
    var betas: String?
    @Option(help: "Epsilon (Adam's default \(d(AdamWSettings.standard.eps)); \(d(GaLoreSettings.adamDefaults.eps)) for galore and fira, as galore-torch; \(d(AdamWSettings.muonAuxiliary.eps)) for muon's and gum's AdamW; Adafactor's g^2 term \(d(AdafactorSettings.defaults.adafactor.eps)). `subspace settings` shows a method's.")
    var eps: Float?
    @Option(name: .customLong("weight-decay"), help: "Decoupled weight decay (default \(d(AdamWSettings.standard.weightDecay)); adamw8bit and galore8bit \(d(AdamW8bitSettings.defaults.adamw.weightDecay)), as bitsandbytes).")
    var weightDecay: Float?
    @Option(help: "Momentum (SGD, default \(d(SGDSettings.defaults.momentum)); Muon and MoFaSGD's beta, default \(d(MuonSettings.defaults.momentum))).")
    var momentum: Float?
    @Flag(help: "Nesterov momentum (SGD; on by default for Muon).")
    var nesterov = false
    @Option(help: "Projection rank (GaLore family, default \(ProjectionSettings.galore.rank); MLorc \(MLorcCompression.defaults.rank), MoFaSGD \(MoFaSGDSettings.defaults.rank)).")
    var rank: Int?
    @Option(name: .customLong("update-gap"), help: "Steps between projector refreshes (GaLore family, default \(ProjectionSettings.galore.updateGap); Flora's kappa, GUM's period, SO's support redraws).")
    var updateGap: Int?
    @Option(help: "Scale of the projected update (GaLore family, default \(d(ProjectionSettings.galore.scale!))).")
    var scale: Float?
    @Option(name: .customLong("proj-type"), help: "GaLore family: projection type: \(ProjectionType.allCases.map(\.rawValue).joined(separator: ", ")) (default \(ProjectionSettings.galore.projectionType.rawValue)).")
    var projType: String?
    @Option(name: .customLong("svd-basis"), help: "GaLore family: how the SVD projectors compute P: gram (the leading eigenvectors of the smaller Gram matrix) or svd (the full thin SVD, as galore-torch) (default \(ProjectionSettings.galore.svdBasis!.rawValue)).")
    var svdBasis: String?
    @Option(name: .customLong("proj-seed"), help: "GaLore family: seed of the random projections; MLorc: of the RSVD; SO: of the supports (default \(ProjectionSettings.galore.projectionSeed)).")
    var projSeed: UInt64?
    @Option(name: .customLong("fira-residual"), help: "Fira: residual outside the subspace, paper ((I - PP^T)G) or reference (fira 1.0.2's G - scale PP^T G) (default \(FiraSettings.defaults.residual.rawValue)).")
    var firaResidual: String?
    @Option(name: .customLong("unprojected-adamw"), help: "galore, fira: AdamW rule of the parameters not projected: torch (torch.optim.AdamW, eps \(d(AdamWSettings.standard.eps))) or transformers (galore-torch's: eps before the bias correction, the projected group's eps) (default \(UnprojectedAdamW.default.rawValue)).")
    var unprojectedAdamW: String?
    @Option(name: .customLong("full-rank-prob"), help: "GUM: probability that a layer is full-rank in a period (default \(d(GUMSettings.defaults.fullRankProbability))).")
    var fullRankProb: Float?
    @Option(help: "ProjFactor: projection granularity c (default \(ProjFactorSettings.defaults.granularity)).")
    var granularity: Int?
    @Option(help: "Flora, ProjFactor, MLorc, MoFaSGD, Q-GaLore (lazy-refresh rule): paper or reference where the two differ (defaults: projfactor \(ProjFactorSettings.defaults.correction.rawValue), flora \(FloraSettings.defaults.variant.rawValue), mlorc \(MLorcCompression.defaults.variant.rawValue), mofasgd \(MoFaSGDSettings.defaults.variant.rawValue), qgalore \(QGaLoreSettings.defaults.lazyRule.rawValue), mkor \(MKORSettings.defaults.variant.rawValue): factor update and reset).")
    var variant: String?
    @Option(help: "SO: fraction of each matrix's entries in the random support, kappa (default \(d(SOSettings.defaults.density))).")
    var density: Float?
    @Option(help: "MLorc: randomized-SVD oversampling (default \(MLorcCompression.defaults.oversampling)).")
    var oversampling: Int?
    @Option(name: .customLong("power-iters"), help: "MLorc: randomized-SVD power iterations (default \(MLorcCompression.defaults.powerIterations)).")
    var powerIters: Int?
    @Option(help: "MoFaSGD: weight of the complement term (I - UU^T) G (I - VV^T) (default \(d(MoFaSGDSettings.defaults.eta2))).")
    var eta2: Float?
    @Option(name: .customLong("mofasgd-update"), help: "MoFaSGD: update, paper (U V^T) or reference (U diag(1/S) V^T) (default \(MoFaSGDSettings.defaults.update.rawValue)).")
    var mofasgdUpdate: String?
    @Flag(name: .customLong("no-nesterov"), help: "Plain momentum instead of Nesterov (Muon, whose default is Nesterov).")
    var noNesterov = false
    @Option(name: .customLong("relative-step"), help: "Adafactor: time-dependent relative step, true/false (default: true exactly when no --lr is given).")
    var relativeStep: Bool?
    @Option(name: .customLong("scale-parameter"), help: "Adafactor: scale the step by the parameter RMS, true/false (default: as --relative-step).")
    var scaleParameter: Bool?
    @Flag(name: .customLong("warmup-init"), help: "Adafactor: warm the relative step up as 1e-6 t.")
    var warmupInit = false
    @Option(name: .customLong("clip-threshold"), help: "Adafactor: largest RMS of the normalised update (default \(d(AdafactorSettings.defaults.adafactor.clipThreshold))).")
    var clipThreshold: Float?
    @Option(name: .customLong("decay-rate"), parsing: .unconditional, help: "Adafactor: beta2_t = 1 - t^rate (default \(d(AdafactorSettings.defaults.adafactor.decayRate))).")
    var decayRate: Float?
    @Option(name: .customLong("adam-lr"), help: "Muon: learning rate of the AdamW side (default \(d(MuonSettings.defaults.adamw.learningRate)); mofasgd and mlorc-lion \(d(MoFaSGDSettings.defaults.adamw.learningRate))).")
    var adamLR: Float?
    @Option(name: .customLong("muon-adjust-lr"), help: "Muon: lr adjustment by shape: \(MuonLRAdjustment.allCases.map(\.rawValue).joined(separator: ", ")) (default \(MuonSettings.defaults.adjustment.rawValue)).")
    var muonAdjustLR: String?
    @Option(name: .customLong("mkor-inner"), help: "MKOR: inner first-order rule, adam or sgd (default \(MKORSettings.defaults.inner.rawValue)).")
    var mkorInner: String?
    @Option(name: .customLong("factor-interval"), help: "MKOR: steps between Sherman-Morrison factor updates (default \(MKORSettings.defaults.factorInterval)).")
    var factorInterval: Int?
    @Option(name: .customLong("stat-decay"), help: "MKOR: decay of the factors' running average (default \(d(MKORSettings.defaults.statisticsDecay))).")
    var statDecay: Float?
    @Option(name: .customLong("switch-window"), help: "MKOR-H: steps per loss window of the switch to the inner rule (default \(MKORHSettings.defaults.switchWindow)).")
    var switchWindow: Int?
    @Option(name: .customLong("switch-threshold"), parsing: .unconditional, help: "MKOR-H: switch when the loss falls by less than this fraction per window (default \(d(MKORHSettings.defaults.switchThreshold))).")
    var switchThreshold: Float?
    @Option(name: .customLong("grad-accum"), help: "Micro-batches per optimizer step (default 1).")
    var gradAccum: Int?
    @Option(name: .customLong("clip"), help: "Gradient clipping norm, 0 = off (train default 1.0, bench 0).")
    var clip: Float?
    @Flag(name: .customLong("per-layer-update"), help: "Step each parameter during backward and free its gradient.")
    var perLayerUpdate = false
    @Option(name: .customLong("block-size"), help: "8-bit states (adamw8bit, galore8bit, qgalore): elements per quantization block (default \(QuantizationSettings.standard.blockSize)).")
    var blockSize: Int?
    @Option(name: .customLong("min-8bit-size"), help: "8-bit states: tensors with fewer elements keep float32 states (default \(QuantizationSettings.standard.min8bitSize)).")
    var min8bitSize: Int?
    @Option(name: .customLong("state-precision"), help: "Optimizer moments: fp32, or bf16 (stored rounded, float32 arithmetic; adamw, galore, fira) (default fp32).")
    var statePrecision: String?
    @Option(name: .customLong("proj-bits"), help: "Q-GaLore: bits per projector entry, 1, 2, 4 or 8 (default \(QGaLoreSettings.defaults.projectionBits)).")
    var projBits: Int?
    @Option(name: .customLong("proj-group-size"), help: "Q-GaLore: projector quantization group size (default \(QGaLoreSettings.defaults.projectionGroupSize)).")
    var projGroupSize: Int?
    @Option(name: .customLong("qgalore-threshold"), parsing: .unconditional, help: "Q-GaLore: cosine similarity of successive projectors at which the refresh gap grows (default \(d(QGaLoreSettings.defaults.lazyThreshold))).")
    var qgaloreThreshold: Float?
    @Option(name: .customLong("qgalore-queue"), help: "Q-GaLore: similarities that must pass, paper: each, reference: their mean (default \(QGaLoreSettings.defaults.lazyQueueSize); --variant picks the rule, default \(QGaLoreSettings.defaults.lazyRule.rawValue)).")
    var qgaloreQueue: Int?
    @Option(name: .customLong("qgalore-gamma"), help: "Q-GaLore: factor the refresh gap grows by (default \(QGaLoreSettings.defaults.lazyGrowth)).")
    var qgaloreGamma: Int?

    /// The optimizer's hyperparameters, starting from `base`.
    func options(base: OptimizerOptions = OptimizerOptions()) throws -> OptimizerOptions {
        var o = base
        if let lr { o.learningRate = lr }
        if let eps { o.eps = eps }
        if let weightDecay { o.weightDecay = weightDecay }
        if let momentum { o.momentum = momentum }
        if nesterov { o.nesterov = true }
        if let rank { o.rank = rank }
        if let updateGap { o.updateGap = updateGap }
        if let scale { o.scale = scale }
        if let projType { o.projectionType = projType }
        if let svdBasis { o.svdBasis = svdBasis }
        if let projSeed { o.projectionSeed = projSeed }
        if let firaResidual { o.firaResidual = firaResidual }
        if let unprojectedAdamW { o.unprojectedAdamW = unprojectedAdamW }
        if let fullRankProb { o.fullRankProbability = fullRankProb }
        if let granularity { o.granularity = granularity }
        if let variant { o.variant = variant }
        if let blockSize { o.blockSize = blockSize }
        if let min8bitSize { o.min8bitSize = min8bitSize }
        if let statePrecision { o.statePrecision = try StatePrecision(parsing: statePrecision).rawValue }
        if let projBits { o.projectionBits = projBits }
        if let projGroupSize { o.projectionGroupSize = projGroupSize }
        if let qgaloreThreshold { o.lazyThreshold = qgaloreThreshold }
        if let qgaloreQueue { o.lazyQueueSize = qgaloreQueue }
        if let qgaloreGamma { o.lazyGrowth = qgaloreGamma }
        if let density { o.density = density }
        if let oversampling { o.oversampling = oversampling }
        if let powerIters { o.powerIterations = powerIters }
        if let eta2 { o.eta2 = eta2 }
        if let mofasgdUpdate { o.mofasgdUpdate = mofasgdUpdate }
        if let mkorInner { o.mkorInner = mkorInner }
        if let factorInterval { o.factorInterval = factorInterval }
        if let statDecay { o.statisticsDecay = statDecay }
        if let switchWindow { o.switchWindow = switchWindow }
        if let switchThreshold { o.switchThreshold = switchThreshold }
        if noNesterov {
            guard !nesterov else { throw ConfigurationError("--nesterov and --no-nesterov contradict each other") }
            o.nesterov = false
        }
        if let relativeStep { o.relativeStep = relativeStep }
        if let scaleParameter { o.scaleParameter = scaleParameter }
        if warmupInit { o.warmupInit = true }
        if let clipThreshold { o.clipThreshold = clipThreshold }
        if let decayRate { o.decayRate = decayRate }
        if let adamLR { o.adamLearningRate = adamLR }
        if let muonAdjustLR { o.muonAdjustment = muonAdjustLR }
        if let betas {
            let parts = betas.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
            let count = betas.split(separator: ",").count
            guard parts.count == count, count == 1 || count == 2 else {
                throw ConfigurationError("--betas takes two numbers like 0.9,0.999 (or beta1 alone, for Adafactor), got '\(betas)'")
            }
            o.beta1 = parts[0]; o.beta2 = count == 2 ? parts[1] : nil
        }
        return o
    }

    /// Step options for the benchmark (no schedule).
    func stepOptions() -> StepOptions {
        var s = StepOptions()
        s.gradAccum = gradAccum ?? 1; s.clipNorm = clip ?? 0; s.perLayerUpdate = perLayerUpdate
        return s
    }

    /// Applies the given flags to a run config.
    func apply(to c: inout RunConfig) throws {
        if let optimizer { c.optimizer = optimizer }
        c.optimizerOptions = try options(base: c.optimizerOptions)
        if let gradAccum { c.gradAccum = gradAccum }
        if let clip { c.clip = clip }
        if perLayerUpdate { c.perLayerUpdate = true }
    }
}

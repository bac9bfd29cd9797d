import Foundation
import SubspaceCore

/// CoMERA's settings (Yang et al., NeurIPS 2024, arXiv 2405.14377; code `ziyangjoy/CoMERA`):
/// the tensor-train shape of each linear slot (`TensorTrainLinear`) and the two-stage
/// multi-objective training that prunes its ranks (`ComeraObjective`). Every default is
/// here, with its source; `--parametrization comera` and its flags fill it.
///
/// **Objective.** With R the rank penalty over the active gates of every TT slot,
///
///     early stage:  L = CE + lambda R
///     late stage:   L = (a + 1 - l) CE + (b + l) R,
///                   l = 1[(CE - L*) / CE < (S - S*) / S]
///
/// where S is the model's TT size over the surviving ranks (sum over slots and cores of
/// r^_(k-1) m_k n_k r^_k), S* the target size and L* the target loss: the late stage works on
/// whichever objective is relatively further from its target (the paper's achievement
/// scalarization, with the small weights a = 0.1, b = 0.01 of the reference's
/// `_run_epoch_late_stage` keeping both terms alive). The reference runs its late stage only
/// on its CUDA-graph path, which its default script turns off; here both stages always run.
public struct ComeraSettings: Sendable, Equatable, Codable {
    /// How the penalty R sums the gates.
    public enum Penalty: String, Codable, Sendable, CaseIterable {
        /// sum |g| / #active over the active gates: the reference's `rank_loss`, for which
        /// its lambda 0.01 is tuned (the default).
        case mean
        /// sum |g| over the active gates: the L1 norm as written in the paper.
        case sum
    }

    /// The largest internal TT rank (each is also capped by its cut, `TensorTrainShape`):
    /// 30, `run_MNLI.sh`'s `r=30`.
    public var rank: Int = 30
    /// Modes per side d; nil: 3 when the slot's smaller side is at least 512, else 2. The
    /// paper splits 768 and 3072 into three modes per side; below 512 a three-way split
    /// leaves first modes of 4-8, whose cut (m_1 n_1 = 16-64) caps the first rank below 30.
    public var modes: Int? = nil
    /// Gates with |g| below this are pruned: the reference's `threshold = 1e-2`.
    public var threshold: Float = 1e-2
    /// lambda of the early stage: the reference's `0.01 * self.rank_loss()`.
    public var lambda: Float = 1e-2
    public var penalty: Penalty = .mean
    /// The first step of the late stage; nil: after two thirds of the run (the reference's
    /// 20 early and 10 late epochs). A value at or past the run's steps keeps the early stage
    /// throughout (what the reference's default script runs). The step is resolved at a
    /// run's first step and kept in its checkpoint (`ComeraObjective`): resuming with another
    /// `--steps` does not move it, and resuming with another explicit value is refused.
    public var lateStart: Int? = nil
    /// The late stage's target size as a fraction of the size at the switch: 0.2, the
    /// script's `target_ratio` (a 5x smaller model).
    public var targetRatio: Double = 0.2
    /// The target size as a compression of the dense slots instead: S* = (dense slot
    /// parameters) / X. Overrides `targetRatio`.
    public var targetCompression: Double? = nil
    /// The late stage's target loss L*; nil: the training loss at the switch (its moving
    /// average, `ComeraObjective.lossDecay`). The reference's 0.8 is a cross-entropy for
    /// three MNLI classes and means nothing for a language model.
    public var targetLoss: Double? = nil
    /// The TTM embedding (`Embedding`); nil: a dense table (the default, justified there).
    public var embedding: Embedding? = nil
    /// A fixed contraction order for every slot; nil picks the cheaper per call.
    public var contraction: TensorTrainContraction? = nil
    /// The gates' learning rate over the run's; nil: `defaultGateLearningRateScale`.
    public var gateScale: Float? = nil
    /// 10, the reference script's `lr_rank` 1e-3 against `lr_tensor` 1e-4. With Adam a gate
    /// moves about lr per step, so at one rate a gate could not travel from 1 to the
    /// threshold in a short run.
    public static let defaultGateLearningRateScale: Float = 10
    /// The gates' learning rate over the run's.
    public var gateLearningRateScale: Float {
        get { gateScale ?? Self.defaultGateLearningRateScale }
        set { gateScale = newValue }
    }

    /// a and b of the late stage (the reference's constants).
    public static let lateLossWeight: Float = 0.1
    public static let lateRankWeight: Float = 0.01

    public init() {}

    /// The modes per side for a slot.
    public func modes(for slot: LinearSlotSpec) -> Int { modes ?? (min(slot.inFeatures, slot.outFeatures) >= 512 ? 3 : 2) }

    /// The late stage's first step in a run of `steps` steps.
    public func lateStart(steps: Int) -> Int { lateStart ?? (2 * steps + 2) / 3 }

    /// The TT shape of a slot. - Throws: when a side cannot be split into the modes asked.
    public func shape(for slot: LinearSlotSpec) throws -> TensorTrainShape {
        try TensorTrainShape(outFeatures: slot.outFeatures, inFeatures: slot.inFeatures, order: modes(for: slot), maxRank: rank, slot: slot.path)
    }

    /// Refuses a rank below 1, modes outside 1...6, a threshold, lambda, ratio, compression
    /// or loss that is not finite or outside its range.
    public func validate() throws {
        guard rank >= 1 else { throw ConfigurationError("the TT rank must be at least 1 (got \(rank))") }
        if let modes { guard (1...6).contains(modes) else { throw ConfigurationError("--tt-modes must be between 1 and 6 (got \(modes))") } }
        guard threshold.isFinite, threshold >= 0 else { throw ConfigurationError("the gate threshold must be a finite number >= 0 (got \(threshold))") }
        guard lambda.isFinite, lambda >= 0 else { throw ConfigurationError("the CoMERA lambda must be a finite number >= 0 (got \(lambda))") }
        guard targetRatio.isFinite, targetRatio > 0, targetRatio <= 1 else { throw ConfigurationError("the CoMERA target ratio must lie in (0, 1] (got \(targetRatio))") }
        if let x = targetCompression { guard x.isFinite, x > 1 else { throw ConfigurationError("--target-compression must be a finite number above 1 (got \(x))") } }
        if let l = targetLoss { guard l.isFinite, l > 0 else { throw ConfigurationError("--target-loss must be a finite positive number (got \(l))") } }
        guard gateLearningRateScale.isFinite, gateLearningRateScale > 0 else { throw ConfigurationError("--gate-lr-scale must be a finite positive number (got \(gateLearningRateScale))") }
        if let s = lateStart { guard s >= 0 else { throw ConfigurationError("--comera-late-start must be >= 0 (got \(s))") } }
        try embedding?.validate()
    }
}

extension TensorTrainLinear {
    /// CoMERA's TT-matrix in a slot, shaped by `ComeraSettings`.
    public struct Kind: LinearOperatorKind {
        public let settings: ComeraSettings
        public init(settings: ComeraSettings = ComeraSettings()) { self.settings = settings }
        public var name: String { "comera" }

        /// Cores then gates (empty for a slot that cannot be factorised; `make` refuses it).
        public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            guard let s = try? settings.shape(for: slot) else { return [] }
            let cores = (0..<s.order).map { ParameterSpec(name: slot.path + ".tensor.factors.\($0)", role: slot.role, shape: s.coreShape($0)) }
            let gates = s.internalRanks.enumerated().map { ParameterSpec(name: slot.path + ".tensor.rank_parameters.\($0.offset)", role: slot.role, shape: [$0.element]) }
            return cores + gates
        }

        /// Cores from N(0, 1) / sqrt(r_k) * s^(1/d), s = sqrt(1 / (in + out)); gates one.
        public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            try settings.validate()
            let s = try settings.shape(for: slot)
            let specs = parameterSpecs(for: slot)
            let scale = Float(pow(1 / Double(slot.inFeatures + slot.outFeatures), 0.5 / Double(s.order)))
            let cores = (0..<s.order).map { k in initializer.normal(specs[k], std: scale / Float(s.ranks[k + 1]).squareRoot()) }
            let gates = specs[s.order...].map { initializer.constant($0, 1) }
            return TensorTrainLinear(shape: s, cores: cores, gates: Array(gates), threshold: settings.threshold, contraction: settings.contraction)
        }
    }
}

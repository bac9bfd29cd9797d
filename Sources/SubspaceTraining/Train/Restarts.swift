import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// Periodic restarts of a low-rank run: ReLoRA's merge-and-restart and Glentis et al.'s
/// weight refactorization with momentum reset, with the learning-rate re-warm-up each needs.
///
/// - **ReLoRA** (Lialin et al. 2023, "ReLoRA: High-Rank Training Through Low-Rank Updates";
///   `Guitaricet/relora`): every `every` steps each LoRA slot merges s B A into its base and
///   restarts its factors (A Kaiming, B zero); the factors' optimizer moments are pruned
///   (`reset`, the reference's default random pruning of 99.9%), the step counters kept, and
///   the rate climbs again from 0 over `warmup` steps (the jagged schedule). Defaults:
///   `restart_warmup_steps` 100 in the reference; here a tenth of the cycle, at most 50,
///   because the runs this engine makes on a CPU are a few thousand steps, and the
///   small-scale recipe (merge every 500, re-warm 50) keeps that 10% ratio.
/// - **Glentis et al. 2025** ("Scalable Parameter and Memory Efficient Pretraining for
///   LLM"; `OptimAI-Lab/Memory_Efficient_Pretraining`): every `every` steps the low-rank
///   factors are refactorized (B <- U sqrt(S), A <- sqrt(S) V^T) and the optimizer rebuilt
///   (`.rebuild`: moments and step counters), and the rate recovers linearly from 0.001 x
///   over `warmup` steps (`cosine_quick_recovery`, `recovery_steps` 10).
///
/// A restart happens after optimizer step s when s is a positive multiple of `every` below
/// the run's last step; the checkpoint of step s is saved after it, so resuming continues
/// bit for bit. The random re-initialisation of restart k draws from
/// `RandomStream(seed).split(<lora_A name>, index: k)`.
public struct RestartSettings: Codable, Equatable, Sendable {
    /// What a restart does to the slots.
    public enum Action: String, Codable, Sendable, CaseIterable {
        /// Merge s B A into the base and restart the factors (ReLoRA); resets the factors' state.
        case merge
        /// Refactorize every low-rank slot (`Refactorizable`: B <- U sqrt(S), A <- sqrt(S)
        /// V^T, the function unchanged; Glentis et al.); resets every trainable parameter's
        /// state when `reset` is set.
        case refactor
        /// Leave the slots alone: only the optimizer reset and the re-warm-up (Glentis et
        /// al.'s momentum reset alone); resets every trainable parameter's state.
        case none
    }

    /// Steps between restarts.
    public var every: Int
    public var action: Action
    /// How the optimizer's state is reset at each restart (nil: kept).
    public var reset: OptimizerStateReset?
    /// Steps of the re-warm-up after each restart (0: none).
    public var warmup: Int
    /// The fraction of the rate each re-warm-up starts from (ReLoRA 0, quick recovery 0.001).
    public var startRatio: Float

    public init(every: Int, action: Action, reset: OptimizerStateReset?, warmup: Int, startRatio: Float) {
        self.every = every; self.action = action; self.reset = reset; self.warmup = warmup; self.startRatio = startRatio
    }

    /// ReLoRA's defaults: merge every `every` steps, random pruning of 99.9% of the
    /// factors' moments, re-warm-up from 0 over a tenth of the cycle, at most 50 steps
    /// (the small-scale recipe's 50 for a cycle of 500, kept in proportion for shorter ones).
    public static func relora(every: Int) -> RestartSettings {
        RestartSettings(
            every: every, action: .merge, reset: .randomPrune(fraction: 0.999), warmup: min(50, max(1, every / 10)), startRatio: 0)
    }

    /// Glentis et al.'s cycle: every `every` steps refactorize (`refactor`) and/or rebuild
    /// the optimizer (`momentumReset`), recovering from 0.001 x over 10 steps after a reset
    /// (`cosine_quick_recovery`, `recovery_steps` 10; no re-warm-up after a refactorization
    /// alone, which keeps the function and the moments).
    public static func glentis(every: Int, refactor: Bool, momentumReset: Bool) -> RestartSettings {
        RestartSettings(
            every: every, action: refactor ? .refactor : .none, reset: momentumReset ? .rebuild : nil,
            warmup: momentumReset ? min(10, every - 1) : 0, startRatio: 0.001)
    }

    /// Refuses an interval below 2, a re-warm-up not shorter than the interval, a start
    /// ratio outside [0, 1], a bad pruning fraction, and a merge without LoRA slots.
    public func validate(adapter: AdapterSettings?) throws {
        guard every >= 2 else { throw ConfigurationError("restarts need an interval of at least 2 steps (got \(every))") }
        guard warmup >= 0, warmup < every else {
            throw ConfigurationError("the re-warm-up after a restart (\(warmup) steps) must be shorter than the interval (\(every))")
        }
        guard startRatio.isFinite, startRatio >= 0, startRatio <= 1 else {
            throw ConfigurationError("the re-warm-up start ratio must be between 0 and 1 (got \(startRatio))")
        }
        try reset?.validate()
        if action == .merge, adapter?.method != .relora {
            throw ConfigurationError("merge-and-restart needs --adapter relora")
        }
        if action == .refactor, adapter?.method.isParametrization != true {
            throw ConfigurationError("refactorization needs --parametrization low-rank or sltrain")
        }
        if action == .none, reset == nil { throw ConfigurationError("restarts that neither refactorize nor reset do nothing") }
    }

    /// `base` with this re-warm-up after every restart.
    public func schedule(over base: LearningRateSchedule) -> LearningRateSchedule {
        warmup == 0 ? base : .restarting(base: base, every: every, warmup: warmup, startRatio: startRatio)
    }
}

/// A step rule with restarts: runs `inner`'s steps and, after each step that ends a cycle,
/// the restart `settings` describes (see `RestartSettings`).
public final class RestartingStep: StepRule {
    public let inner: any StepRule
    public let optimizer: RoutedOptimizer
    public let settings: RestartSettings
    /// The run's last step (no restart after it).
    public let totalSteps: Int
    /// The run's seed (restarts draw their factors from it).
    public let seed: UInt64

    public var model: LlamaModel { inner.model }
    public var memory: StepRuleMemory { inner.memory }
    public var step: Int { inner.step }
    public func setStep(_ s: Int) { inner.setStep(s) }

    public init(inner: any StepRule, optimizer: RoutedOptimizer, settings: RestartSettings, totalSteps: Int, seed: UInt64) {
        self.inner = inner; self.optimizer = optimizer; self.settings = settings; self.totalSteps = totalSteps; self.seed = seed
    }

    public func trainStep(_ microBatches: [TokenBatch]) throws -> StepReport {
        var report = try inner.trainStep(microBatches)
        let s = inner.step
        if s % settings.every == 0, s < totalSteps {
            let t0 = Clock.now()
            try restart(number: s / settings.every)
            report.optimizerSeconds += Clock.since(t0)
        }
        return report
    }

    /// Restart number `k` (1 for the first).
    func restart(number k: Int) throws {
        var trainable: [Parameter] { model.parameters.filter(\.requiresGrad) }
        switch settings.action {
        case .merge:
            let ops = model.loraOperators
            for op in ops { try op.mergeAndRestart(stream: RandomStream(seed: seed).split(op.a.name, index: UInt64(k))) }
            if let reset = settings.reset {
                try optimizer.reset(ops.flatMap { [$0.a, $0.b] }, reset, seed: seed &+ UInt64(k))
            }
        case .refactor:
            try model.refactorizeOperators()
            if let reset = settings.reset { try optimizer.reset(trainable, reset, seed: seed &+ UInt64(k)) }
        case .none:
            if let reset = settings.reset { try optimizer.reset(trainable, reset, seed: seed &+ UInt64(k)) }
        }
    }
}

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// How one run steps the model.
public struct StepOptions: Codable, Equatable, Sendable {
    /// Micro-batches per optimizer step (gradient accumulation). The loss of each is scaled
    /// by 1 / gradAccum so the accumulated gradient is the mean.
    public var gradAccum: Int = 1
    /// Clip gradients to this norm (0 disables). Global norm normally; the per-parameter form
    /// of `GradientClipping.clipParameter` in per-layer mode.
    public var clipNorm: Float = 0
    /// Step each parameter during backward as soon as its gradient is complete, then free the
    /// gradient (GaLore's layer-wise update). Only on the last micro-batch of a step; on the
    /// earlier ones, parameters whose rule accumulates in compressed form
    /// (`MicroBatchAccumulating`, e.g. ProjFactor) hand each gradient over and free it, unless
    /// clipping is on (the clip needs the whole accumulated gradient).
    public var perLayerUpdate: Bool = false
    public var schedule: LearningRateSchedule = .constant(warmup: 0)
    /// The run's seed: zeroth-order rules derive each step's perturbation from it.
    public var seed: UInt64 = 0
    /// The zeroth-order rules' settings (unresolved; each rule fills its defaults).
    public var zerothOrder = ZerothOrderSettings()
    /// The zeroth-order `.sgd` update's learning rate (`--lr`); nil takes
    /// `ZerothOrderSettings.defaultLearningRate`.
    public var zerothOrderLearningRate: Float? = nil
    /// The zeroth-order `.sgd` update's weight decay (`--weight-decay`).
    public var zerothOrderWeightDecay: Float = 0
    public init() {}
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case nonFiniteLoss(step: Int, loss: Float)
    /// A validation loss so large that its perplexity overflows a double (above about 709
    /// nats): the run has diverged, and its metrics could not be recorded.
    case diverged(step: Int, validationLoss: Double)
    public var description: String {
        switch self {
        case .nonFiniteLoss(let step, let loss):
            return "loss became \(loss) at step \(step); stopping before the weights are touched (lower the learning rate or enable clipping)"
        case .diverged(let step, let loss):
            return String(format: "validation loss %.1f at step %d: the run diverged (its perplexity overflows); lower the learning rate", loss, step)
        }
    }
}

/// What one optimizer step measured.
public struct StepReport: Sendable {
    public var step: Int
    public var loss: Float
    public var lrScale: Float
    public var forwardSeconds: Double
    public var backwardSeconds: Double
    public var optimizerSeconds: Double
    /// The learning rate the step used, when the rule sets it itself (the zeroth-order
    /// `.sgd` update); nil means the optimizer's rate times `lrScale`.
    public var learningRate: Float? = nil
    public var totalSeconds: Double { forwardSeconds + backwardSeconds + optimizerSeconds }
}

/// The backpropagation step rule: forward, backward, clipping, update, in normal or
/// per-layer mode, with gradient accumulation. `StepRuleName.backprop`; the rule every
/// optimizer in `OptimizerRegistry` is written for.
///
/// Memory: the training arena (every layer's activations) and the gradients, all of them,
/// or (per-layer mode) one at a time (`StepRuleMemory.backprop`).
///
/// It never prints; callers receive a `StepReport` per step.
public final class BackpropStep: StepRule {
    public var memory: StepRuleMemory { .backprop }
    public let model: LlamaModel
    public let optimizer: RoutedOptimizer
    public var options: StepOptions
    /// Optimizer steps completed.
    public private(set) var step: Int = 0
    fileprivate let totalCount: Int
    /// The optimizer's statistics consumers and loss readers (MKOR, MKOR-H).
    private let hooks: SlotStatisticsHooks
    /// Data parallelism: averages each gradient over the job's ranks once it is complete for
    /// the step, before clipping and the update (nil: one process). See `GradientReducer`; in
    /// its projected mode the projecting rules' parameters step from their mean projected
    /// gradient instead (no clipping or objective then: `DataParallelCommunication`).
    public var reducer: GradientReducer? = nil
    /// Whether the optimizer reads per-rank activation statistics (MKOR), which data
    /// parallelism would leave different on every rank.
    public var readsSlotStatistics: Bool { !hooks.consumers.isEmpty }
    /// Terms of the objective besides the cross-entropy, applied to the gradients (CoMERA's
    /// rank penalty); nil: the cross-entropy alone.
    public var objective: (any GradientObjective)?

    public init(model: LlamaModel, optimizer: RoutedOptimizer, options: StepOptions) throws {
        guard options.gradAccum >= 1 else { throw ConfigurationError("grad accumulation must be at least 1, got \(options.gradAccum)") }
        guard options.clipNorm >= 0, options.clipNorm.isFinite else { throw ConfigurationError("clip norm must be non-negative") }
        self.model = model
        self.optimizer = optimizer
        self.options = options
        totalCount = model.parameters.filter(\.requiresGrad).reduce(0) { $0 + $1.count }
        hooks = SlotStatisticsHooks(optimizer)
    }

    /// Resumes the step counter (checkpoint restore).
    public func setStep(_ s: Int) { step = s }

    /// One optimizer step over `microBatches` (exactly `gradAccum` of them).
    public func trainStep(_ microBatches: [TokenBatch]) throws -> StepReport {
        precondition(microBatches.count == options.gradAccum, "expected \(options.gradAccum) micro-batches")
        let lrScale = options.schedule.multiplier(step: step)
        var fwd = 0.0, bwd = 0.0, opt = 0.0
        var lossSum: Float = 0
        let scale = 1 / Float(microBatches.count)
        hooks.begin(step: step, model: model)
        for (i, mb) in microBatches.enumerated() {
            let last = i == microBatches.count - 1
            var t0 = Clock.now()
            let loss = try model.forward(mb, lossScale: scale)
            fwd += Clock.since(t0)
            guard loss.isFinite else {
                model.zeroGradients()
                optimizer.discardCompressedAccumulation()
                throw TrainingError.nonFiniteLoss(step: step + 1, loss: loss)
            }
            lossSum += loss
            if last { objective?.begin(step: step, loss: lossSum * scale) }
            t0 = Clock.now()
            if last && options.perLayerUpdate {
                var inHook = 0.0
                model.backward { p in
                    let h0 = Clock.now()
                    if let reducer = self.reducer {
                        // Data-parallel: p's all-reduce starts now; the parameter before it,
                        // whose all-reduce ran during p's backward, is stepped.
                        reducer.start(p)
                        while reducer.pendingCount > 1, let q = reducer.finishOldest() { self.stepLayer(q, lrScale: lrScale) }
                    } else {
                        self.stepLayer(p, lrScale: lrScale)
                    }
                    inHook += Clock.since(h0)
                }
                if let reducer {
                    let h0 = Clock.now()
                    while let q = reducer.finishOldest() { stepLayer(q, lrScale: lrScale) }
                    inHook += Clock.since(h0)
                }
                let total = Clock.since(t0)
                bwd += total - inHook
                opt += inHook
            } else if options.perLayerUpdate && options.clipNorm == 0 && optimizer.hasCompressedAccumulation {
                // Earlier micro-batches: rules that accumulate in compressed form (ProjFactor)
                // take each gradient as soon as it is complete and it is freed at once.
                model.backward { p in
                    guard let acc = self.optimizer.compressedAccumulator(for: p), let g = p.grad else { return }
                    self.reducer?.reduce(p)  // the accumulator takes the global micro-batch's gradient
                    acc.accumulate(p, gradient: g)
                    p.releaseGradient()
                }
                bwd += Clock.since(t0)
            } else if last, let reducer {
                model.backward { p in reducer.start(p) }
                bwd += Clock.since(t0)
            } else {
                model.backward()
                bwd += Clock.since(t0)
            }
        }
        let projected = try reducer?.finish() ?? []
        if !options.perLayerUpdate {
            let t0 = Clock.now()
            if let objective { for p in model.parameters { objective.adjust(p) } }
            if options.clipNorm > 0 { GradientClipping.clipGlobalNorm(model.parameters, maxNorm: options.clipNorm) }
            if let objective {
                // Parameters the objective gives another rate (CoMERA's gates) step apart.
                let faster = model.parameters.filter { objective.learningRateMultiplier(for: $0) != 1 }
                optimizer.step(model.parameters.filter { objective.learningRateMultiplier(for: $0) == 1 }, lrScale: lrScale)
                for p in faster { optimizer.step([p], lrScale: lrScale * objective.learningRateMultiplier(for: p)) }
            } else {
                optimizer.step(model.parameters, lrScale: lrScale)
            }
            // Projected all-reduce: these parameters' gradients were freed; their rules step
            // from the mean projected gradient (no clip, no objective: `DataParallelCommunication`).
            for r in projected { stepLayer(r, lrScale: lrScale) }
            model.zeroGradients()
            opt += Clock.since(t0)
        }
        step += 1
        let loss = try reducer?.average(lossSum * scale) ?? lossSum * scale
        hooks.end(loss: loss)
        return StepReport(step: step, loss: loss, lrScale: lrScale, forwardSeconds: fwd, backwardSeconds: bwd, optimizerSeconds: opt)
    }
}

extension BackpropStep {
    /// The per-layer update of one parameter whose average over the ranks is complete: from
    /// its mean projected gradient (projected all-reduce), or as below.
    fileprivate func stepLayer(_ r: GradientReducer.Reduced, lrScale: Float) {
        guard let (rule, projected) = r.projected else { return stepLayer(r.parameter, lrScale: lrScale) }
        rule.update(r.parameter, projectedGradient: projected, lrScale: lrScale)
    }

    /// The per-layer update of one parameter whose gradient is complete (all-reduced under
    /// data parallelism): the objective's terms, clip, step at the objective's rate, free.
    fileprivate func stepLayer(_ p: Parameter, lrScale: Float) {
        objective?.adjust(p)
        if options.clipNorm > 0 {
            GradientClipping.clipParameter(p, maxNorm: options.clipNorm, totalCount: totalCount)
        }
        optimizer.update(p, lrScale: lrScale * (objective?.learningRateMultiplier(for: p) ?? 1))
        p.releaseGradient()
    }
}

/// The backprop rule under its original name (callers that build a step directly).
public typealias Trainer = BackpropStep

/// Monotonic wall clock.
public enum Clock {
    @inline(__always) public static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    @inline(__always) public static func since(_ t: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t) * 1e-9 }
}

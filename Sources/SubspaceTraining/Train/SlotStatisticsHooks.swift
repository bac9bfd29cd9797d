import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// Wires the optimizer's `SlotStatisticsConsumer`s to the model's slot observers, step by
/// step: a step on which no consumer wants statistics runs with no observer at all.
struct SlotStatisticsHooks {
    let consumers: [SlotStatisticsConsumer]
    let lossObservers: [LossObserving]

    init(_ optimizer: RoutedOptimizer) {
        consumers = optimizer.optimizers.compactMap { $0 as? SlotStatisticsConsumer }
        lossObservers = optimizer.optimizers.compactMap { $0 as? LossObserving }
    }

    /// Before step `step` (steps done): asks every consumer (each also drops what a failed
    /// step left) and attaches observers that feed those that want statistics, or none.
    func begin(step: Int, model: LlamaModel) {
        guard !consumers.isEmpty else { return }
        let wanting = consumers.filter { $0.wantsStatistics(atStep: step) }
        for slot in model.slots {
            if wanting.isEmpty {
                slot.inputObserver = nil
                slot.outputGradientObserver = nil
            } else {
                slot.inputObserver = { spec, x in for c in wanting { c.observeInput(spec, x) } }
                slot.outputGradientObserver = { spec, dy in for c in wanting { c.observeOutputGradient(spec, dy) } }
            }
        }
    }

    /// After a completed step: the step's mean loss to the rules that read it.
    func end(loss: Float) {
        for o in lossObservers { o.observeLoss(loss) }
    }
}

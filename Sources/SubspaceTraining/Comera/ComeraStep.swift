import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// Backpropagation with CoMERA's objective (`ComeraObjective`): the inner `BackpropStep`
/// calls the objective on every gradient; this rule adds the objective's state to the
/// checkpoint (`step_rule.safetensors`) and the stage and sizes to each step's report.
public final class ComeraStep: StatefulStepRule {
    public let inner: BackpropStep
    public let objective: ComeraObjective

    /// - Throws: when `inner` is not the backprop rule (the gate penalty needs gradients) or
    ///   the model has no tensor-train slot.
    public init(inner: any StepRule, settings: ComeraSettings, steps: Int) throws {
        guard let bp = inner as? BackpropStep else {
            throw ConfigurationError("--parametrization comera trains with --trainer backprop (its rank penalty acts on gradients)")
        }
        self.inner = bp
        objective = try ComeraObjective(model: bp.model, settings: settings, steps: steps)
        bp.objective = objective
    }

    public var model: LlamaModel { inner.model }
    public var memory: StepRuleMemory { inner.memory }
    public var step: Int { inner.step }
    public func setStep(_ s: Int) { inner.setStep(s) }
    public func trainStep(_ microBatches: [TokenBatch]) throws -> StepReport { try inner.trainStep(microBatches) }
    public func exportState() -> [String: Tensor] { objective.exportState() }
    public func importState(_ state: [String: Tensor]) throws { try objective.importState(state) }
}

extension RunConfig {
    /// CoMERA's settings when the run's slots are CoMERA's TT-matrices.
    public var comera: ComeraSettings? { adapter?.method == .comera ? adapter!.comeraSettings : nil }
}

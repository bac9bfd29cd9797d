import SubspaceModels

extension StepRuleName {
    /// Elements of the state the rule keeps between steps for trainable tensors of these
    /// shapes (what `StatefulStepRule.exportState` holds after a step), priced by the memory
    /// planner: none for backprop, MeZO and EGGROLL; LOZO's V (n x r) per matrix, plus LOZO-M's
    /// momentum N (m x r); SubZero's U (m x r) and V (n x r); r clamped to min(m, n) per
    /// matrix as the rules do.
    public func stateElements(shapes: [[Int]], settings: ZerothOrderSettings) -> Int {
        let s = settings.resolved(for: self)
        var total = 0
        for shape in shapes where shape.count == 2 {
            let (m, n) = (shape[0], shape[1])
            let r = min(s.rank ?? 0, m, n)
            switch self {
            case .backprop, .mezo, .eggroll: break
            case .lozo, .lozoM: total += n * r + ((s.momentum ?? 0) > 0 ? m * r : 0)
            case .subzero: total += (m + n) * r
            }
        }
        return total
    }

    /// Whether the run's optimizer keeps state under this rule: backprop always; a
    /// zeroth-order rule only when it hands its estimate to the optimizer (`.optimizer`).
    public func usesOptimizerState(_ settings: ZerothOrderSettings) -> Bool {
        !isZerothOrder || settings.resolved(for: self).update == .optimizer
    }
}

extension StepRuleName {
    /// Members whose activations one forward pass holds: EGGROLL's batched population
    /// forward stacks a chunk of members (`ZerothOrderSettings.populationChunk`), so its
    /// inference arena is that of `members x batch` sequences; 1 for every other rule, for
    /// `--population-forward sequential`, and for models with non-dense slots (which fall
    /// back to the sequential evaluation).
    public func populationMembers(architecture a: LlamaArchitecture, batch: Int, seq: Int, settings: ZerothOrderSettings) -> Int {
        guard self == .eggroll, settings.forward != .sequential, a.operators.allDense, a.operators.othersTrainable else { return 1 }
        let population = settings.resolved(for: self).population ?? 1
        return settings.populationChunk(population: population) { a.arenaBytes(batch: $0 * batch, seq: seq, mode: .inference) }
    }
}

import ArgumentParser
import Subspace

/// The step rule and the zeroth-order rules' flags, shared by `train` and `memory`. Every
/// flag is optional so that a resumed run can tell "not given" from "given"; the defaults
/// quoted live in `ZerothOrderSettings`, where they are justified.
struct ZerothOrderFlags: ParsableArguments {
    @Option(name: [.customLong("trainer"), .customLong("step-rule")],
            help: "How each step is taken: \(StepRuleName.allCases.map(\.rawValue).joined(separator: ", ")) (default backprop; the zeroth-order rules run forward passes only). --step-rule is the same flag.")
    var trainer: String?
    @Option(name: .customLong("zo-eps"), help: "Zeroth-order: perturbation size eps (default 0.001, MeZO's).")
    var zoEps: Float?
    @Option(name: .customLong("zo-rank"), help: "LOZO, SubZero, EGGROLL: rank of the perturbation (default lozo 1, subzero 8, eggroll 1).")
    var zoRank: Int?
    @Option(name: .customLong("zo-interval"), help: "LOZO: steps V is kept (nu, default 100); SubZero: steps between basis refreshes (default 2000).")
    var zoInterval: Int?
    @Option(name: .customLong("zo-momentum"), help: "LOZO-M: momentum beta (default 0.9 for lozo-m).")
    var zoMomentum: Float?
    @Option(name: .customLong("zo-update"), help: "Zeroth-order: sgd (the papers' in-place update; --lr default \(SettingText.number(ZerothOrderSettings.defaultLearningRate))) or optimizer (hand the estimate to --optimizer, e.g. MeZO-Adam) (default sgd).")
    var zoUpdate: String?
    @Option(help: "EGGROLL: members per generation, even (antithetic pairs) (default 64).")
    var population: Int?
    @Option(help: "EGGROLL: noise scale sigma (default 0.001).")
    var sigma: Float?
    @Option(name: .customLong("fitness-shaping"), help: "EGGROLL: ranks (centred ranks) or zscore (the reference library's) (default ranks).")
    var fitnessShaping: String?
    @Option(name: .customLong("population-forward"), help: "EGGROLL: batched (members stacked into one forward per chunk, the paper's) or sequential (one member at a time, weights perturbed in place: no extra activation memory) (default batched where the model's trainable tensors allow).")
    var populationForward: String?
    @Option(name: .customLong("population-chunk"), help: "EGGROLL: members per batched forward (default: as many as fit in 1 GiB of activations).")
    var populationChunk: Int?

    /// The rule named by `--trainer`, if given.
    func stepRule() throws -> StepRuleName? { try trainer.map { try StepRuleName(parsing: $0) } }

    /// The given settings laid over `base`.
    func settings(base: ZerothOrderSettings?) throws -> ZerothOrderSettings? {
        guard zoEps != nil || zoRank != nil || zoInterval != nil || zoMomentum != nil || zoUpdate != nil
                || population != nil || sigma != nil || fitnessShaping != nil || populationForward != nil
                || populationChunk != nil else { return base }
        var s = base ?? ZerothOrderSettings()
        if let zoEps { s.eps = zoEps }
        if let zoRank { s.rank = zoRank }
        if let zoInterval { s.interval = zoInterval }
        if let zoMomentum { s.momentum = zoMomentum }
        if let zoUpdate { s.update = try Self.choice(ZerothOrderUpdate.self, "--zo-update", zoUpdate) }
        if let population { s.population = population }
        if let sigma { s.sigma = sigma }
        if let fitnessShaping { s.shaping = try Self.choice(FitnessShaping.self, "--fitness-shaping", fitnessShaping) }
        if let populationForward { s.forward = try Self.choice(PopulationForward.self, "--population-forward", populationForward) }
        if let populationChunk { s.populationChunk = populationChunk }
        return s
    }

    /// The case of `T` named `value`, or a one-line error listing the choices.
    static func choice<T: RawRepresentable & CaseIterable>(_ type: T.Type, _ flag: String, _ value: String) throws -> T where T.RawValue == String {
        guard let v = T(rawValue: value) else {
            throw ConfigurationError("\(flag) must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value)'")
        }
        return v
    }

    /// Applies the given flags to a run config.
    func apply(to c: inout RunConfig) throws {
        if let rule = try stepRule() { c.stepRule = rule }
        c.zerothOrder = try settings(base: c.zerothOrder)
    }
}

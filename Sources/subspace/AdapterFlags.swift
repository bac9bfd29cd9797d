import ArgumentParser
import Foundation
import Subspace

/// `train`'s flags for adapters, low-rank parametrizations and restarts; they fill
/// `RunConfig.adapter` and `RunConfig.restarts` (`AdapterSettings`, `RestartSettings`), where
/// the defaults live.
struct AdapterFlags: ParsableArguments {
    static let adapters = AdapterSettings.Method.allCases.filter { !$0.isParametrization }.map(\.rawValue)
    static let parametrizations = AdapterSettings.Method.allCases.filter(\.isParametrization).map(\.rawValue)

    @Option(help: "Adapters on a frozen base in the linear slots: \(adapters.joined(separator: ", ")). lora: PEFT's LoRA (with --init-from, a fine-tune where only the adapters train); relora: LoRA merged into the base and restarted every --relora-every steps; lora-xs: trainable r x r core between factors from the base's SVD; lora-sb: the same shape initialised from the approximate first full fine-tuning update.")
    var adapter: String?
    @Option(help: "Parametrization for pre-training from scratch: \(parametrizations.joined(separator: ", ")) (W = (alpha/r) B A, plus a sparse part for sltrain; comera: a tensor-train matrix with pruned ranks).")
    var parametrization: String?
    @Option(name: .customLong("adapter-rank"), help: "Rank r (default \(AdapterSettings.defaultRank)).") var rank: Int?
    @Option(name: .customLong("adapter-alpha"), help: "Scale alpha: the update is (alpha / r) B A (default: \(SettingText.number(AdapterSettings.defaultAlpha)) for lora and relora, r for lora-xs and lora-sb, 32 for low-rank and sltrain).") var alpha: Float?
    @Option(name: .customLong("adapter-targets"), help: "Comma-separated slots that get adapters, or all-linear (default all-linear: \(LlamaArchitecture.slotNames.joined(separator: ","))).")
    var targets: String?
    @Flag(name: .customLong("rslora"), help: "Rank-stabilised scaling alpha / sqrt(r) (PEFT's use_rslora; lora, relora).") var rsLoRA = false
    @Option(name: .customLong("adapter-dropout"), help: "Dropout on the adapter's input (PEFT's lora_dropout; lora, relora; default 0).") var dropout: Float?
    @Option(name: .customLong("adapter-train-others"), help: "Whether the embedding, norms, head and slots without adapters train too (default: false for the adapters, as PEFT; true for relora, as its reference, and for the parametrizations).")
    var trainOthers: Bool?
    @Option(name: .customLong("sltrain-density"), help: "Fraction of each matrix in SLTrain's sparse part (default \(SettingText.number(SLTrainLinear.Kind.defaultDensity))).") var density: Float?
    @Option(name: .customLong("lora-sb-batches"), help: "Batches whose gradient estimates LoRA-SB's first update (default \(AdapterSettings.defaultLoRASBBatches)).") var initBatches: Int?
    @Option(name: .customLong("relora-every"), help: "With --adapter relora: steps between merge-and-restarts.") var reloraEvery: Int?
    @Option(name: .customLong("refactor-every"), help: "With --parametrization: refactorize the factors (B <- U sqrt(S), A <- sqrt(S) V^T) every N steps.") var refactorEvery: Int?
    @Flag(name: .customLong("momentum-reset"), help: "With --parametrization: rebuild the optimizer at each cycle (--refactor-every or --reset-every) and recover the rate from 0.001x over --restart-warmup steps (default 10).")
    var momentumReset = false
    @Option(name: .customLong("reset-every"), help: "With --parametrization: a momentum reset every N steps without refactorization (implies --momentum-reset).") var resetEvery: Int?
    @Option(name: .customLong("restart-warmup"), help: "Steps of the learning-rate re-warm-up after each restart (default for ReLoRA: a tenth of --relora-every, at most 50; after a momentum reset: 10).") var restartWarmup: Int?
    @Option(name: .customLong("optimizer-reset"), help: "What a ReLoRA restart does to the factors' optimizer state: rebuild, zero, random:F or magnitude:F (prune a fraction F of the moments), or none (default random:0.999, the reference's).")
    var optimizerReset: String?
    @OptionGroup(title: "CoMERA (--parametrization comera)") var comera: ComeraFlags

    /// Whether any flag of this group was given.
    var anyGiven: Bool {
        adapter != nil || parametrization != nil || rank != nil || alpha != nil || targets != nil || rsLoRA || dropout != nil
            || trainOthers != nil || density != nil || initBatches != nil || anyRestartGiven || comera.anyGiven
    }
    var anyRestartGiven: Bool {
        reloraEvery != nil || refactorEvery != nil || momentumReset || resetEvery != nil || restartWarmup != nil || optimizerReset != nil
    }

    /// The adapter settings these flags give over `existing` (a recipe's or resumed run's),
    /// nil when no flag names an adapter.
    func adapterSettings(existing: AdapterSettings?) throws -> AdapterSettings? {
        guard anyGiven else { return existing }
        if adapter != nil && parametrization != nil { throw ConfigurationError("--adapter and --parametrization exclude each other; give one") }
        var a: AdapterSettings
        if let name = adapter ?? parametrization {
            let list = adapter != nil ? Self.adapters : Self.parametrizations
            guard let m = AdapterSettings.Method(rawValue: name), list.contains(name) else {
                throw ConfigurationError("unknown \(adapter != nil ? "adapter" : "parametrization") '\(name)'; choose from \(list.joined(separator: ", "))")
            }
            a = existing?.method == m ? existing! : AdapterSettings(method: m, rank: rank ?? AdapterSettings.defaultRank, alpha: alpha)
        } else if let existing {
            a = existing
        } else {
            throw ConfigurationError("adapter flags need --adapter (\(Self.adapters.joined(separator: ", "))) or --parametrization (\(Self.parametrizations.joined(separator: ", ")))")
        }
        if let rank { a.rank = rank }
        if let alpha { a.alpha = alpha }
        if rsLoRA { a.rsLoRA = true }
        if let dropout { a.dropout = dropout }
        if let trainOthers { a.trainOthers = trainOthers }
        if let density { a.density = density }
        if let initBatches { a.initBatches = initBatches }
        if a.method == .comera, rank != nil || alpha != nil { throw ConfigurationError("--parametrization comera takes --tt-rank, not --adapter-rank or --adapter-alpha") }
        try comera.apply(to: &a)
        if let targets {
            a.targets = targets == "all-linear"
                ? LlamaArchitecture.slotNames
                : targets.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        }
        try a.validate()
        return a
    }

    func apply(to c: inout RunConfig) throws {
        guard anyGiven, let a = try adapterSettings(existing: c.adapter) else { return }
        c.adapter = a
        guard anyRestartGiven || (a.method == .relora && c.restarts == nil) else { return }
        if a.method == .relora {
            if refactorEvery != nil || momentumReset || resetEvery != nil {
                throw ConfigurationError("--refactor-every, --momentum-reset and --reset-every apply to --parametrization; ReLoRA restarts with --relora-every")
            }
            var r = c.restarts ?? RestartSettings.relora(every: reloraEvery ?? 0)
            if let reloraEvery { r.every = reloraEvery; if restartWarmup == nil { r.warmup = RestartSettings.relora(every: reloraEvery).warmup } }
            if let restartWarmup { r.warmup = restartWarmup }
            if let optimizerReset { r.reset = optimizerReset == "none" ? nil : try OptimizerStateReset(parsing: optimizerReset) }
            guard r.every > 0 else { throw ConfigurationError("--adapter relora needs --relora-every N (steps between merges)") }
            c.restarts = r
        } else if a.method.isParametrization {
            if reloraEvery != nil || optimizerReset != nil {
                throw ConfigurationError("--relora-every and --optimizer-reset apply to --adapter relora")
            }
            if let refactorEvery, let resetEvery, refactorEvery != resetEvery {
                throw ConfigurationError("--refactor-every \(refactorEvery) and --reset-every \(resetEvery) name two cycles; one cycle does both")
            }
            guard let every = refactorEvery ?? resetEvery ?? c.restarts?.every else {
                throw ConfigurationError("--momentum-reset and --restart-warmup need a cycle: --refactor-every N or --reset-every N")
            }
            let reset = momentumReset || resetEvery != nil || (c.restarts?.reset != nil && refactorEvery == nil)
            var r = RestartSettings.glentis(every: every, refactor: refactorEvery != nil || c.restarts?.action == .refactor, momentumReset: reset)
            if let restartWarmup { r.warmup = restartWarmup }
            c.restarts = r
        } else {
            throw ConfigurationError("restart flags apply to --adapter relora (--relora-every) and to --parametrization (--refactor-every, --reset-every)")
        }
    }
}

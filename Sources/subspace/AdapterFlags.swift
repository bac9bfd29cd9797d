import ArgumentParser
import Foundation
import Subspace

/// `train`'s flags for adapters and restarts; they fill `RunConfig.adapter` and
/// `RunConfig.restarts` (`AdapterSettings`, `RestartSettings`), where the defaults live.
struct AdapterFlags: ParsableArguments {
    static let d = AdapterSettings()

    @Option(help: "Adapters in the linear slots: \(AdapterSettings.Method.allCases.map(\.rawValue).joined(separator: ", ")). lora: PEFT's LoRA on a frozen base (with --init-from, a fine-tune where only the adapters train); relora: LoRA merged into the base and restarted every --relora-every steps.")
    var adapter: String?
    @Option(name: .customLong("adapter-rank"), help: "Rank r of the adapters (default \(d.rank)).") var rank: Int?
    @Option(name: .customLong("adapter-alpha"), help: "Adapter scale alpha: the update is (alpha / r) B A (default \(SettingText.number(d.alpha)), so alpha / r = 1 at the default rank).") var alpha: Float?
    @Option(name: .customLong("adapter-targets"), help: "Comma-separated slots that get adapters, or all-linear (default all-linear: \(LlamaArchitecture.slotNames.joined(separator: ",")))).")
    var targets: String?
    @Flag(name: .customLong("rslora"), help: "Rank-stabilised scaling alpha / sqrt(r) (PEFT's use_rslora).") var rsLoRA = false
    @Option(name: .customLong("adapter-train-others"), help: "Whether the embedding, norms, head and slots without adapters train too (default: false for lora, as PEFT; true for relora, as its reference).")
    var trainOthers: Bool?
    @Option(name: .customLong("relora-every"), help: "With --adapter relora: steps between merge-and-restarts.") var reloraEvery: Int?
    @Option(name: .customLong("restart-warmup"), help: "Steps of the learning-rate re-warm-up after each restart (default 50 for ReLoRA).") var restartWarmup: Int?
    @Option(name: .customLong("optimizer-reset"), help: "What a restart does to the optimizer state: rebuild, zero, random:F or magnitude:F (prune a fraction F of the moments), or none (default random:0.999 for ReLoRA, its reference's).")
    var optimizerReset: String?

    /// Whether any flag of this group was given.
    var anyGiven: Bool {
        adapter != nil || rank != nil || alpha != nil || targets != nil || rsLoRA || trainOthers != nil || reloraEvery != nil
            || restartWarmup != nil || optimizerReset != nil
    }

    /// The adapter settings these flags give over `existing` (a recipe's or resumed run's),
    /// nil when no flag names an adapter.
    func adapterSettings(existing: AdapterSettings?) throws -> AdapterSettings? {
        guard anyGiven else { return existing }
        var a: AdapterSettings
        if let adapter {
            guard let m = AdapterSettings.Method(rawValue: adapter) else {
                throw ConfigurationError("unknown adapter '\(adapter)'; choose from \(AdapterSettings.Method.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            a = existing?.method == m ? existing! : AdapterSettings(method: m)
        } else if let existing {
            a = existing
        } else {
            throw ConfigurationError("adapter flags need --adapter (\(AdapterSettings.Method.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if let rank { a.rank = rank }
        if let alpha { a.alpha = alpha }
        if rsLoRA { a.rsLoRA = true }
        if let trainOthers { a.trainOthers = trainOthers }
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
        if a.method == .relora {
            var r = c.restarts ?? RestartSettings.relora(every: reloraEvery ?? 0)
            if let reloraEvery { r.every = reloraEvery }
            if let restartWarmup { r.warmup = restartWarmup }
            if let optimizerReset { r.reset = optimizerReset == "none" ? nil : try OptimizerStateReset(parsing: optimizerReset) }
            guard r.every > 0 else { throw ConfigurationError("--adapter relora needs --relora-every N (steps between merges)") }
            c.restarts = r
        } else if reloraEvery != nil || restartWarmup != nil || optimizerReset != nil {
            throw ConfigurationError("--relora-every, --restart-warmup and --optimizer-reset need --adapter relora")
        }
    }
}

import ArgumentParser
import Foundation
import Subspace

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time training steps on random tokens and report speed and memory; with --suite, run a method comparison.")

    @Option(help: "Model preset: \(LlamaConfig.presetNames.joined(separator: ", ")).")
    var preset: String = "tiny"
    @Option(help: "Timed steps (default 20; with --suite, steps per cell, default: pretrain 2000, finetune 300, speed 10).")
    var steps: Int?
    @Option(help: "Run a suite: \(Suite.names.joined(separator: ", ")) (each cell a separate process; see --out).")
    var suite: String?
    @Option(help: "--suite: output directory (default runs/suite-<suite>); finished cells are skipped on a re-run.")
    var out: String?
    @OptionGroup(title: "Suite options") var suiteOptions: SuiteOptions
    @Option(help: "Untimed warmup steps.") var warmup: Int = 2
    @Option(help: "Sequences per micro-batch.") var batch: Int = 8
    @Option(help: "Sequence length (default: min(256, the preset's maximum)).") var seq: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var opt: OptimizerFlags

    func run() throws {
        if let suite {
            let spec = guarded { try suiteOptions.spec(suite: suite, out: out ?? "runs/suite-\(suite)", steps: self.steps) }
            suiteOptions.run(spec: spec)
            return
        }
        if out != nil { fail("--out applies to --suite") }
        let timed = steps ?? 20
        let result: BenchmarkResult = guarded {
            let config = try LlamaConfig.preset(preset)
            let seqLen = seq ?? min(256, config.maxSeq)
            return try Benchmark.run(
                preset: preset, config: config, optimizerName: opt.optimizer ?? "adamw", options: try opt.options(),
                stepOptions: opt.stepOptions(), batch: batch, seq: seqLen, steps: timed, warmup: warmup, seed: seed)
        }
        if json {
            print(jsonLine(result))
        } else {
            print(String(format: "%@ %@: %.0f tokens/s, step %.1f ms (median %.1f): forward %.1f, backward %.1f, optimizer %.1f ms; peak RSS %.1f MiB, optimizer state %.1f MiB, loss %.4f",
                         result.preset, result.optimizer, result.tokens_per_s, result.step_ms_mean, result.step_ms_median,
                         result.forward_ms, result.backward_ms, result.optimizer_ms, Double(result.peak_rss_bytes) / 1048576,
                         Double(result.optimizer_state_bytes) / 1048576, result.loss))
        }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Parameter counts and memory of a preset.")
    @Option(help: "Model preset.") var preset: String = "tiny"
    @Option(help: "Sequences per batch (for activation memory).") var batch: Int = 8
    @Option(help: "Sequence length (default: min(256, the preset's maximum)).") var seq: Int?

    func run() throws {
        let c: LlamaConfig = guarded { try LlamaConfig.preset(preset) }
        let t = seq ?? min(256, c.maxSeq)
        guarded { try c.validate(batch: batch, seq: t) }
        let p = c.parameterCount
        func gib(_ b: Int) -> String { String(format: "%.3f GiB", Double(b) / 1073741824) }
        print("preset \(preset): dim \(c.dim), layers \(c.layers), heads \(c.heads) (kv \(c.kvHeads)), ffn \(c.ffnDim), vocab \(c.vocab), max seq \(c.maxSeq)")
        print("parameters: \(p)")
        print("weights fp32: \(p * 4) bytes (\(gib(p * 4)))")
        print("gradients fp32: \(p * 4) bytes (\(gib(p * 4)))")
        print("AdamW state: \(p * 8) bytes (\(gib(p * 8)))")
        let act = LlamaActivations.bytes(config: c, batch: batch, seq: t)
        print("activations (batch \(batch), seq \(t)): \(act) bytes (\(gib(act)))")
    }
}

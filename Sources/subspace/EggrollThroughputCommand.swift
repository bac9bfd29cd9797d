import ArgumentParser
import Foundation
import Subspace

/// `subspace eggroll-throughput`: EGGROLL's training tokens/s against inference over the
/// same rows (`EggrollThroughput`).
struct EggrollThroughputCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eggroll-throughput",
        abstract: "Time EGGROLL generations (batched population forward) against plain inference over the same rows.")

    @Option(help: "Model preset.") var preset: String = "tiny"
    @Option(help: "Members per generation, even.") var population: Int = 256
    @Option(name: .customLong("population-chunk"), help: "Members per batched forward (default: as many as fit in 1 GiB).")
    var populationChunk: Int?
    @Option(name: .customLong("zo-rank"), help: "Rank of the perturbations.") var rank: Int = 1
    @Option(help: "Sequences per member.") var batch: Int = 1
    @Option(help: "Sequence length.") var seq: Int = 64
    @Option(help: "Timed generations (after one untimed).") var generations: Int = 3
    @Option(help: "Timed generations of the sequential evaluation (0: not measured).") var sequential: Int = 0
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let settings = ZerothOrderSettings(rank: rank, population: population, populationChunk: populationChunk)
        let r: EggrollThroughputResult = guarded {
            try settings.validate(for: .eggroll)
            return try EggrollThroughput.measure(
                preset: preset, config: try LlamaConfig.preset(preset), settings: settings, batch: batch, seq: seq,
                generations: generations, sequentialGenerations: sequential, seed: seed)
        }
        if json { print(jsonLine(r)); return }
        print(String(format: "%@, population %d (chunks of %d), %d x %d tokens per member, %@ (%d threads): training %.0f tokens/s, inference %.0f tokens/s, ratio %.1f%%; generation %.0f ms (update %.0f ms)%@",
                     r.preset, r.population, r.chunk, r.batch, r.seq, r.cpu, r.threads, r.training_tokens_per_s, r.inference_tokens_per_s,
                     100 * r.ratio, r.generation_ms, r.update_ms, r.sequential_tokens_per_s.map { String(format: "; sequential %.0f tokens/s", $0) } ?? ""))
    }
}

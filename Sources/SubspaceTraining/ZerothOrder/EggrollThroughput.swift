import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// EGGROLL's training throughput against plain inference over the same rows (the paper's
/// headline: 91% of pure batch inference on a GPU; Sarkar et al. 2025, section 4).
///
/// A generation of N members on a batch of B x T tokens processes N B T tokens; training
/// tokens/s is that over the whole generation's wall time (noise, the stacked forward, the
/// fitness shaping and the update). Inference tokens/s is `LlamaModel.loss` over the same
/// N B T rows in the same stacked shape (chunk x B sequences per pass), unperturbed: the
/// ratio is what the perturbations and the update cost on top of the forward passes.
public struct EggrollThroughputResult: Codable, Sendable {
    public var preset: String
    public var cpu: String
    public var threads: Int
    public var params: Int
    public var population: Int
    public var chunk: Int
    public var rank: Int
    public var batch: Int
    public var seq: Int
    public var generations: Int
    /// Member tokens per second of whole generations (batched forward).
    public var training_tokens_per_s: Double
    /// Tokens per second of `model.loss` over the same rows and shape.
    public var inference_tokens_per_s: Double
    /// training / inference.
    public var ratio: Double
    /// Member tokens per second of the sequential (in-place) evaluation, when measured.
    public var sequential_tokens_per_s: Double?
    public var generation_ms: Double
    public var update_ms: Double
}

public enum EggrollThroughput {
    /// Times `generations` generations (after one untimed) of EGGROLL with `settings`
    /// (population, rank, chunk; forward batched) on seeded random tokens, the same rows
    /// through `model.loss`, and, when `sequentialGenerations > 0`, that many generations of
    /// the sequential evaluation.
    public static func measure(
        preset: String, config: LlamaConfig, settings: ZerothOrderSettings, batch: Int, seq: Int,
        generations: Int, sequentialGenerations: Int = 0, seed: UInt64 = 0
    ) throws -> EggrollThroughputResult {
        try config.validate(batch: batch, seq: seq)
        guard generations > 0 else { throw ConfigurationError("generations must be positive, got \(generations)") }
        var s = settings
        s.forward = .batched
        var options = StepOptions()
        options.seed = seed; options.zerothOrder = s
        let model = try LlamaModel(config: config, seed: seed)
        var rng = RandomStream(seed: seed).split("eggroll-throughput")
        let tokens = (0..<(batch * seq)).map { _ in Int32(rng.int(config.vocab)) }
        let data = TokenBatch(tokens: tokens, targets: tokens.map { ($0 + 1) % Int32(config.vocab) }, batch: batch, seq: seq)

        func timeGenerations(_ rule: EggrollStep, _ count: Int) throws -> (seconds: Double, update: Double) {
            _ = try rule.trainStep([data])
            var total = 0.0, update = 0.0
            for _ in 0..<count {
                let r = try rule.trainStep([data])
                total += r.totalSeconds; update += r.optimizerSeconds
            }
            return (total / Double(count), update / Double(count))
        }
        let rule = try EggrollStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: options)
        let n = rule.population, chunk = rule.chunk(data)
        let train = try timeGenerations(rule, generations)

        // The same rows, unperturbed, in the same stacked shape.
        func stacked(_ members: Int) -> TokenBatch {
            TokenBatch(
                tokens: Array([[Int32]](repeating: data.tokens, count: members).joined()),
                targets: Array([[Int32]](repeating: data.targets, count: members).joined()), batch: members * batch, seq: seq)
        }
        let full = stacked(chunk), rest = n % chunk > 0 ? stacked(n % chunk) : nil
        func inference() throws {
            for _ in 0..<(n / chunk) { _ = try model.loss(full) }
            if let rest { _ = try model.loss(rest) }
        }
        try inference()
        let t0 = Clock.now()
        for _ in 0..<generations { try inference() }
        let infer = Clock.since(t0) / Double(generations)

        var sequential: Double? = nil
        if sequentialGenerations > 0 {
            var o = options
            o.zerothOrder.forward = .sequential
            let seqRule = try EggrollStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: o)
            sequential = Double(n * batch * seq) / (try timeGenerations(seqRule, sequentialGenerations)).seconds
        }
        let rows = Double(n * batch * seq)
        return EggrollThroughputResult(
            preset: preset, cpu: CPU.current.brand, threads: Parallel.workers, params: config.parameterCount, population: n,
            chunk: chunk, rank: rule.rank, batch: batch, seq: seq, generations: generations,
            training_tokens_per_s: rows / train.seconds, inference_tokens_per_s: rows / infer, ratio: infer / train.seconds,
            sequential_tokens_per_s: sequential, generation_ms: train.seconds * 1000, update_ms: train.update * 1000)
    }
}

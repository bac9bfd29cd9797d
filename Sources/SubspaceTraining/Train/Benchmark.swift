import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// A timed training run on random tokens: the engine's speed and memory in one record.
public struct BenchmarkResult: Codable, Sendable {
    public var preset: String
    public var optimizer: String
    public var params: Int
    public var batch: Int
    public var seq: Int
    public var steps: Int
    public var threads: Int
    public var per_layer_update: Bool
    public var tokens_per_s: Double
    public var step_ms_median: Double
    public var step_ms_mean: Double
    public var forward_ms: Double
    public var backward_ms: Double
    public var optimizer_ms: Double
    public var peak_rss_bytes: Int
    /// Resident pages of mapped files (the binary's and libraries' code) at the end of the
    /// run: part of `peak_rss_bytes`, shared and reclaimable, and not the method's memory.
    /// An SVD refresh pages in about 2 MB of LAPACK's code that an AdamW run never touches.
    /// Optional so that records from before it decode.
    public var resident_file_bytes: Int?
    public var optimizer_state_bytes: Int
    public var weights_bytes: Int
    public var activations_bytes: Int
    public var loss: Double
    /// The slots' adapter or parametrization (`lora r8`), nil for the dense model.
    public var adapter: String? = nil
    /// The precision of the linear products (`fp32`, `bf16`); nil in results written before it existed.
    public var precision: String? = nil
    /// The optimizer moments' element type (`--state-precision`) when not fp32; nil otherwise.
    public var state_precision: String? = nil
}

public enum Benchmark {
    /// Trains `steps` timed steps (after `warmup` untimed ones) on seeded random tokens.
    /// Every timed step counts towards the mean, including any periodic work an optimizer
    /// does (projector refreshes); forward/backward/optimizer figures are means per step.
    public static func run(
        preset: String, config: LlamaConfig, optimizerName: String, options: OptimizerOptions,
        stepOptions: StepOptions, rule: StepRuleName = .backprop, batch: Int, seq: Int, steps: Int, warmup: Int = 2, seed: UInt64 = 0,
        adapter: AdapterSettings? = nil, precision: MatmulPrecision = .fp32, progress: ((Int, StepReport) -> Void)? = nil
    ) throws -> BenchmarkResult {
        try adapter?.validate(for: config)
        try precision.checkSupported()
        try config.validate(batch: batch, seq: seq)
        guard steps > 0 else { throw ConfigurationError("steps must be positive, got \(steps)") }
        guard warmup >= 0 else { throw ConfigurationError("warmup steps must be non-negative, got \(warmup)") }
        try ResourceCheck.training(
            model: config, optimizer: optimizerName, options: options, perLayerUpdate: stepOptions.perLayerUpdate,
            batch: batch, seq: seq, gradAccum: stepOptions.gradAccum, rule: rule.memory, adapter: adapter)
        let model = try LlamaModel(config: config, seed: seed, operators: adapter?.operators() ?? .dense)
        try model.usePrecision(precision)
        let optimizer = try OptimizerRegistry.make(optimizerName, options: options)
        let trainer = try rule.make(model: model, optimizer: optimizer, options: stepOptions)
        var rng = RandomStream(seed: seed).split("bench-data")
        func randomBatch() -> TokenBatch {
            let n = batch * (seq + 1)
            var stream = [Int32](repeating: 0, count: n)
            for i in 0..<n { stream[i] = Int32(rng.int(config.vocab)) }
            var tokens = [Int32](), targets = [Int32]()
            tokens.reserveCapacity(batch * seq); targets.reserveCapacity(batch * seq)
            for b in 0..<batch {
                let row = b * (seq + 1)
                tokens += stream[row..<(row + seq)]
                targets += stream[(row + 1)..<(row + seq + 1)]
            }
            return TokenBatch(tokens: tokens, targets: targets, batch: batch, seq: seq)
        }
        var times: [Double] = [], fwd = 0.0, bwd = 0.0, opt = 0.0
        var lastLoss: Float = 0
        for s in 0..<(warmup + steps) {
            let mbs = (0..<stepOptions.gradAccum).map { _ in randomBatch() }
            let r = try trainer.trainStep(mbs)
            lastLoss = r.loss
            if s >= warmup {
                times.append(r.totalSeconds); fwd += r.forwardSeconds; bwd += r.backwardSeconds; opt += r.optimizerSeconds
            }
            progress?(s, r)
        }
        let sorted = times.sorted()
        let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : 0.5 * (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2])
        let mean = times.reduce(0, +) / Double(times.count)
        let tokens = Double(batch * seq * stepOptions.gradAccum)
        return BenchmarkResult(
            preset: preset, optimizer: optimizerName, params: config.parameterCount, batch: batch, seq: seq,
            steps: steps, threads: Parallel.workers, per_layer_update: stepOptions.perLayerUpdate,
            tokens_per_s: tokens / mean, step_ms_median: median * 1000, step_ms_mean: mean * 1000,
            forward_ms: fwd / Double(steps) * 1000, backward_ms: bwd / Double(steps) * 1000,
            optimizer_ms: opt / Double(steps) * 1000, peak_rss_bytes: ProcessMemory.peakRSS,
            resident_file_bytes: ProcessMemory.residentFileBytes,
            optimizer_state_bytes: optimizer.stateBytes(model.parameters), weights_bytes: model.weightBytes,
            activations_bytes: model.activationBytes, loss: Double(lastLoss),
            adapter: adapter.map { "\($0.method.rawValue) r\($0.reportedRank)" }, precision: precision.rawValue,
            state_precision: optimizer.statePrecision == .fp32 ? nil : optimizer.statePrecision.rawValue)
    }
}

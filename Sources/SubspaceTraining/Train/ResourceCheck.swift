import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// Refuses, before anything is allocated, work that cannot fit in the machine's memory: a
/// request for 10^6-wide layers or a batch of 100,000 sequences ends with one line giving the
/// figure and what is available, instead of an out-of-memory kill minutes later.
///
/// Needs come from `MemoryPlan` (the same formulas `subspace memory` prints, within 10% of
/// the measured peak), plus the token batches a step holds. Available memory is the kernel's
/// `MemAvailable` (free memory plus what it can reclaim), capped by the cgroup's limit where
/// one applies (containers, CI runners) and by the address-space limit (`ulimit -v`) less
/// what the process has mapped. Where none can be read the check passes.
public enum ResourceCheck {
    /// Bytes this process could still allocate, or nil where the system does not say.
    public static var availableBytes: Int? {
        var best = meminfo("MemAvailable:")
        if let limit = cgroupRemaining() { best = min(best ?? limit, limit) }
        if let limit = addressSpaceRemaining() { best = min(best ?? limit, limit) }
        return best
    }

    /// Throws unless `bytes` fit in the available memory.
    /// - Parameters:
    ///   - what: the work, for the message ("training", "evaluation").
    ///   - detail: how the figure is made up, for the message.
    public static func require(_ bytes: Int, for what: String, detail: String) throws {
        guard let available = availableBytes, bytes > available else { return }
        throw ConfigurationError("\(what) needs about \(format(bytes)) of memory (\(detail)) but \(format(available)) is available")
    }

    /// Checks that `config`'s fixed tensors (weights and rotary tables) fit, computed in
    /// floating point so that any shape, however absurd, gets a memory figure rather than an
    /// overflow: the first check on every path that builds a model, before `validate()`.
    public static func modelFits(_ config: LlamaConfig, copies: Int = 1, for what: String = "the model") throws {
        let c = config
        let hd = Double(c.dim) / Double(max(c.heads, 1))
        let perLayer = Double(c.dim) * hd * Double(c.heads + c.kvHeads) * 2 + 3 * Double(c.dim) * Double(c.ffnDim) + 2 * Double(c.dim)
        let params = Double(c.vocab) * Double(c.dim) * (c.tiedEmbeddings ? 1 : 2) + Double(c.layers) * perLayer + Double(c.dim)
        let rotary = Double(c.maxSeq) * hd * 4
        let bytes = params * 4 * Double(copies) + rotary
        guard let available = availableBytes, bytes > Double(available) else { return }
        throw ConfigurationError(
            "\(what) needs at least \(format(bytes)) of memory (" + String(format: "%.3g", params) + " parameters"
            + (rotary > 0x1p30 ? ", rotary tables for \(c.maxSeq) positions \(format(rotary))" : "")
            + ") but \(format(Double(available))) is available")
    }

    /// Checks a training run: weights, gradients, optimizer state, activations and the
    /// token batches of one step.
    public static func training(_ c: RunConfig) throws {
        try training(model: c.model, optimizer: c.optimizer, options: c.optimizerOptions, perLayerUpdate: c.perLayerUpdate,
                     batch: c.batch, seq: c.seq, gradAccum: c.gradAccum, rule: c.resolvedStepRule.memory, adapter: c.adapter)
    }

    /// Checks training `model` with an `OptimizerRegistry` method on `batch` x `seq` tokens
    /// in `gradAccum` micro-batches per step.
    public static func training(
        model: LlamaConfig, optimizer: String, options: OptimizerOptions, perLayerUpdate: Bool,
        batch: Int, seq: Int, gradAccum: Int, rule: StepRuleMemory = .backprop, adapter: AdapterSettings? = nil
    ) throws {
        guard gradAccum > 0 else { throw ConfigurationError("grad accumulation must be at least 1, got \(gradAccum)") }
        try modelFits(model, copies: 2, for: "training")
        let plan = try MemoryPlan(MemoryPlan.Request(
            config: model, optimizer: optimizer, options: options,
            perLayerUpdate: perLayerUpdate, batch: batch, seq: seq, rule: rule, runtimeBytes: ProcessMemory.currentRSS,
            adapter: adapter))
        let (tokens, o1) = (batch * seq).multipliedReportingOverflow(by: gradAccum)
        let (batchBytes, o2) = tokens.multipliedReportingOverflow(by: 8)
        if o1 || o2 {
            throw ConfigurationError("batch \(batch) x sequence \(seq) x grad-accum \(gradAccum) tokens per step is too large")
        }
        let (total, o3) = plan.totalBytes.addingReportingOverflow(batchBytes)
        if o3 { throw ConfigurationError("the run's memory need is too large to count") }
        try require(total, for: "training", detail:
            "weights \(format(plan.weightsBytes)), gradients \(format(plan.gradientsBytes)), optimizer \(format(plan.optimizerStateBytes + plan.projectorBytes)), "
            + "activations \(format(plan.activationsBytes)), token batches \(format(batchBytes))")
    }

    /// Checks a forward pass (eval, sample) of `config` on `batch` x `seq` tokens, priced
    /// with the inference arena those passes run in.
    public static func inference(_ config: LlamaConfig, batch: Int, seq: Int) throws {
        try modelFits(config)
        try config.validate()
        try config.validate(batch: batch, seq: seq)
        let weights = config.parameterCount * 4
        let rotary = config.maxSeq * config.headDim * 4
        let activations = ActivationMemory.bytes(config: config, batch: batch, seq: seq, rule: .forwardOnly)
        try require(weights + rotary + activations + ProcessMemory.currentRSS, for: "the model", detail:
            "weights \(format(weights)), activations \(format(activations))")
    }

    public static func format(_ bytes: Int) -> String { format(Double(bytes)) }

    public static func format(_ b: Double) -> String {
        if b >= 0x1p50 { return String(format: "%.1f PiB", b / 0x1p50) }
        if b >= 0x1p40 { return String(format: "%.1f TiB", b / 0x1p40) }
        if b >= 0x1p30 { return String(format: "%.1f GiB", b / 0x1p30) }
        return String(format: "%.0f MiB", b / 0x1p20)
    }

    private static func meminfo(_ key: String) -> Int? { ProcessMemory.kibibytes(key, in: "/proc/meminfo") }

    /// `RLIMIT_AS` less the current virtual size (`VmSize`), nil if unlimited.
    private static func addressSpaceRemaining() -> Int? {
        var r = rlimit()
        #if os(Linux)
        guard getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &r) == 0 else { return nil }
        #else
        guard getrlimit(RLIMIT_AS, &r) == 0 else { return nil }
        #endif
        guard r.rlim_cur < UInt64(Int.max) else { return nil }  // RLIM_INFINITY is all ones
        let used = ProcessMemory.kibibytes("VmSize:", in: "/proc/self/status") ?? 0
        return max(0, Int(r.rlim_cur) - used)
    }

    /// cgroup v2: `memory.max - memory.current` of this process's group, nil if unlimited.
    private static func cgroupRemaining() -> Int? {
        guard let cg = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
              let line = cg.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return nil }
        let dir = "/sys/fs/cgroup" + line.dropFirst(3)
        func value(_ f: String) -> Int? {
            (try? String(contentsOfFile: dir + "/" + f, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        guard let max = value("memory.max"), let current = value("memory.current") else { return nil }
        return Swift.max(0, max - current)
    }
}

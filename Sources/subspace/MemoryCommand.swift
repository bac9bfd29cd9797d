import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

/// `subspace memory`: the memory a training run needs, from `MemoryPlan`, without building
/// the model or the optimizer's state.
struct MemoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "Plan a run's memory: weights, gradients, optimizer states, projectors, activations.")

    @Option(help: "Model: a preset (\(LlamaConfig.presetNames.joined(separator: ", "))) or a transformers config.json (or its directory).")
    var model: String = "tiny"
    @Option(name: .customLong("state-bits"), help: "Optimizer states: 32 (full, in --dtype) or 8 (bitsandbytes block-wise 8-bit, blocks of 256).")
    var stateBits: Int = 32
    @Option(help: "Element type of weights, gradients, projectors and activations: fp32 (this engine) or bf16 (GaLore's estimates).")
    var dtype: String = "fp32"
    @Option(help: "Matrix products of the linear layers: fp32 or bf16 (adds the bf16 operand copies of the largest product).") var precision: String = "fp32"
    @Option(help: "Sequences per micro-batch (for activations).") var batch: Int = 8
    @Option(help: "Sequence length (default: min(256, the model's maximum)).") var seq: Int?
    @Flag(name: .customLong("activation-checkpointing"), help: "Keep only each layer's input and recompute one layer at a time.")
    var activationCheckpointing = false
    @Option(name: .customLong("runtime-bytes"), help: "Resident bytes of the process itself, added to the total (default: this process's own resident set, the same binary as train; 0 prices the tensors alone).")
    var runtimeBytes: Int?
    @Option(help: "Data-parallel ranks (mpirun -np N): adds what each step all-reduces (memory is per rank; --batch is per rank).")
    var ranks: Int = 1
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var opt: OptimizerFlags
    @OptionGroup(title: "Adapters") var adapterFlags: AdapterFlags
    @OptionGroup var zo: ZerothOrderFlags

    func run() throws {
        let runtime = runtimeBytes ?? ProcessMemory.currentRSS
        let plan: MemoryPlan = guarded {
            let config = try LlamaConfig.resolve(model: model)
            var request = MemoryPlan.Request(
                config: config, optimizer: opt.optimizer ?? OptimizerRegistry.defaultName, options: try opt.options(),
                dtype: try MemoryDType(parsing: dtype), stateStorage: try StateStorage(bits: stateBits),
                perLayerUpdate: opt.perLayerUpdate, batch: batch, seq: seq,
                activationCheckpointing: activationCheckpointing, runtimeBytes: runtime,
                adapter: try adapterFlags.adapterSettings(existing: nil),
                stepRule: try zo.stepRule(), zerothOrder: try zo.settings(base: nil) ?? ZerothOrderSettings())
            request.precision = try MatmulPrecision(parsing: precision)
            return try MemoryPlan(request)
        }
        let comm = guarded { try communication(plan) }
        if json {
            print(comm.map { jsonLine(MemoryWithCommunication(memory: plan.summary(model: model), communication: $0)) } ?? jsonLine(plan.summary(model: model)))
        } else {
            print(table(plan) + (comm.map { "\n" + communicationLines($0) } ?? ""))
        }
    }

    /// With --ranks N > 1: what each step all-reduces (nil for one rank); refuses what cannot
    /// run data-parallel (as `train` under mpirun does).
    func communication(_ plan: MemoryPlan) throws -> CommunicationPlan? {
        guard ranks >= 1 else { throw ConfigurationError("--ranks must be at least 1, got \(ranks)") }
        guard ranks > 1 else { return nil }
        if let rule = try zo.stepRule(), rule.isZerothOrder {
            throw ConfigurationError("--trainer \(rule.rawValue) cannot run data-parallel (\(ranks) ranks): only backprop averages gradients over ranks")
        }
        let r = plan.request
        let specs = LlamaArchitecture(config: r.config, operators: try r.adapter?.operators() ?? .dense).parameterSpecs.filter(\.trainable)
        // The projected mode's shapes come from the optimizer's projecting rules (GaLore, ProjFactor).
        let optimizer = try OptimizerRegistry.make(r.optimizer, options: r.options)
        return CommunicationPlan(specs: specs, bytesPerElement: plan.request.dtype.bytesPerElement, ranks: ranks, optimizer: optimizer)
    }

    func communicationLines(_ c: CommunicationPlan) -> String {
        func mib(_ b: Int) -> String { String(format: "%.2f MiB", Double(b) / 1_048_576) }
        var lines = ["data-parallel over \(c.ranks) ranks, per optimizer step and rank:",
                     "  all-reduce payload \(c.allreduceBytes) B (\(mib(c.allreduceBytes))); ring traffic \(c.ringBytesPerRank) B (\(mib(c.ringBytesPerRank)))"]
        if let p = c.projectedBytes, let refresh = c.projectedRefreshBytes, let mean = c.projectedMeanBytes {
            lines.append("  --dp-communication projected: \(p) B (\(mib(p))) between refreshes, \(refresh) B (\(mib(refresh))) on a refresh step; "
                         + "mean \(mean) B (\(mib(mean))), \(String(format: "%.1f", Double(c.allreduceBytes) / Double(max(mean, 1))))x less")
        }
        return lines.joined(separator: "\n")
    }

    func table(_ plan: MemoryPlan) -> String {
        let r = plan.request
        func row(_ label: String, _ bytes: Int) -> String {
            label.padding(toLength: 18, withPad: " ", startingAt: 0)
                + String(bytes).leftPadded(16) + String(format: "%12.4f", Double(bytes) / 1_073_741_824)
        }
        var lines = [
            "model \(model): \(plan.parameters) trainable parameters\(r.adapter.map { "; adapter \($0.method.rawValue) rank \($0.reportedRank)" } ?? ""); optimizer \(r.optimizer); \(r.dtype.rawValue); states \((try? r.options.resolvedStatePrecision()) == .bf16 ? "bf16" : "\(stateBits)-bit"); "
                + "batch \(r.batch) x seq \(r.seq)\(r.perLayerUpdate ? "; per-layer update" : "")"
                + (r.activationCheckpointing ? "; activation checkpointing" : "")
                + (r.stepRule.map { $0.isZerothOrder ? "; trainer \($0.rawValue) (forward only)" : "" } ?? ""),
            "".padding(toLength: 18, withPad: " ", startingAt: 0) + "bytes".leftPadded(16) + "GiB".leftPadded(12),
            row("weights", plan.weightsBytes),
            row(r.perLayerUpdate ? "gradients (1)" : "gradients", plan.gradientsBytes),
            row("optimizer states", plan.optimizerStateBytes),
            row("projectors", plan.projectorBytes),
            row("activations", plan.activationsBytes),
        ]
        if (r.stepRule ?? .backprop).isZerothOrder { lines.append(row("step-rule state", plan.stepRuleStateBytes)) }
        if r.precision == .bf16 { lines.append(row("bf16 operands", plan.mixedPrecisionBytes)) }
        lines += [
            row("runtime", plan.runtimeBytes),
            row("total", plan.totalBytes),
        ]
        for s in plan.rules {
            lines.append("  \(s.rule): \(s.parameters) tensors, \(s.elements) parameters, states \(s.stateBytes) B, projectors \(s.projectorBytes) B")
        }
        return lines.joined(separator: "\n")
    }
}

/// `memory --json --ranks N`: the memory plan and the communication plan.
struct MemoryWithCommunication: Encodable {
    let memory: MemoryPlan.Summary
    let communication: CommunicationPlan
}

private extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// The memory planner against the engine's real allocations, and against GaLore's published
/// estimates (Zhao et al., ICML 2024, Tables 2, 3 and 6b).
@Suite struct MemoryPlanTests {
    static let small = LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 48, vocab: 64, maxSeq: 16)

    // MARK: Shapes

    @Test(arguments: [
        small,
        LlamaConfig(dim: 32, layers: 1, heads: 2, ffnDim: 40, vocab: 50, maxSeq: 8, tiedEmbeddings: true),
        LlamaConfig.presets["tiny"]!,
    ])
    func parameterSpecsAreTheModelsParameters(config: LlamaConfig) throws {
        let model = try LlamaModel(config: config)
        #expect(config.parameterSpecs == model.parameters.map { ParameterSpec($0) })
        #expect(config.parameterSpecs.reduce(0) { $0 + $1.count } == config.parameterCount)
    }

    @Test func selectorsRouteSpecsLikeParameters() throws {
        let model = try LlamaModel(config: Self.small)
        let optimizer = try OptimizerRegistry.make("galore", options: OptimizerOptions())
        for p in model.parameters {
            #expect(optimizer.optimizer(for: p) === optimizer.optimizer(for: ParameterSpec(p)), "\(p.name)")
            #expect(ParameterSpec(p).layerIndex == p.layerIndex)
        }
    }

    // MARK: Optimizer footprints against real state

    /// Rules that describe their state by shape. A registry entry outside this list may
    /// return nil (the planner then refuses it); one inside it must be exact.
    static let described: Set<String> = [
        "adamw", "sgd", "adafactor", "lion", "muon", "galore", "fira", "galore-adafactor", "flora", "gum", "projfactor",
        "mlorc-adamw", "mlorc-lion", "mofasgd", "so", "adamw8bit", "galore8bit", "qgalore",
    ]

    /// Every registered optimizer, one step on every parameter of a small model (tall, wide
    /// and square matrices, GQA, vectors): each rule's `stateFootprint` in float32 equals the
    /// state it really holds, parameter by parameter.
    @Test(arguments: OptimizerRegistry.names)
    func footprintEqualsStateAfterOneStep(name: String) throws {
        var options = OptimizerOptions()
        options.rank = 4
        options.learningRate = 1e-3
        let optimizer = try OptimizerRegistry.make(name, options: options)
        let model = try LlamaModel(config: Self.small)
        for (i, p) in model.parameters.enumerated() {
            var rng = RandomStream(seed: 100 + UInt64(i))
            rng.fillNormal(p.gradient(), std: 0.1)
        }
        optimizer.step(model.parameters, lrScale: 1)
        var described = 0
        for p in model.parameters {
            let rule = optimizer.optimizer(for: p)
            guard let footprint = rule.stateFootprint(for: ParameterSpec(p)) else {
                #expect(!Self.described.contains(rule.name), "\(rule.name) lost its stateFootprint")
                continue
            }
            described += 1
            #expect(footprint.bytes == rule.stateBytes(for: p), "\(name)/\(rule.name) \(p.name) \(p.shape)")
        }
        if Self.described.contains(name) { #expect(described == model.parameters.count) }
    }

    @Test func undescribedRuleIsAnErrorNotAGuess() throws {
        final class Opaque: ParameterwiseOptimizer<Int> {
            override var name: String { "opaque" }
        }
        let rule = Opaque(learningRate: 1)
        let spec = ParameterSpec(name: "w", role: .mlp, shape: [4, 4])
        #expect(rule.stateFootprint(for: spec) == nil)
    }

    // MARK: Planner against the real allocation (tiny)

    func randomBatch(_ c: LlamaConfig, batch: Int, seq: Int, seed: UInt64) -> TokenBatch {
        var rng = RandomStream(seed: seed)
        let n = batch * seq
        return TokenBatch(
            tokens: (0..<n).map { _ in Int32(rng.int(c.vocab)) }, targets: (0..<n).map { _ in Int32(rng.int(c.vocab)) },
            batch: batch, seq: seq)
    }

    /// `tiny`, one real training step (batch 2 x 64): weights, gradients, optimizer state
    /// with projectors, and activations as allocated equal the plan exactly (the issue asks
    /// for 10%).
    @Test(arguments: ["adamw", "galore"])
    func planEqualsTinysRealAllocation(optimizerName: String) throws {
        let c = LlamaConfig.presets["tiny"]!
        var options = OptimizerOptions()
        options.rank = 64
        let plan = try MemoryPlan(.init(config: c, optimizer: optimizerName, options: options, batch: 2, seq: 64))
        let model = try LlamaModel(config: c)
        let optimizer = try OptimizerRegistry.make(optimizerName, options: options)
        _ = try model.forward(randomBatch(c, batch: 2, seq: 64, seed: 1))
        model.backward()
        optimizer.step(model.parameters, lrScale: 1)
        #expect(plan.weightsBytes == model.weightBytes)
        #expect(plan.gradientsBytes == model.gradientBytes)
        #expect(plan.optimizerStateBytes + plan.projectorBytes == optimizer.stateBytes(model.parameters))
        #expect(plan.activationsBytes == model.activationBytes)
        if optimizerName == "galore" {
            // 4 layers x 7 matrices, r = 64: P is 64 x 256 for every matrix (min side 256).
            #expect(plan.projectorBytes == 4 * 7 * 64 * 256 * 4)
        } else {
            #expect(plan.projectorBytes == 0 && plan.optimizerStateBytes == 2 * plan.weightsBytes)
        }
    }

    /// Per-layer update: the most gradient bytes resident at any point of a real backward
    /// pass that steps and frees each gradient (as `Trainer` does) equals the plan's
    /// largest single gradient.
    @Test func perLayerGradientPeakIsTheLargestGradient() throws {
        let c = LlamaConfig.presets["tiny"]!
        let plan = try MemoryPlan(.init(config: c, optimizer: "adamw", perLayerUpdate: true, batch: 1, seq: 32))
        let model = try LlamaModel(config: c)
        let optimizer = try OptimizerRegistry.make("adamw", options: OptimizerOptions())
        _ = try model.forward(randomBatch(c, batch: 1, seq: 32, seed: 2))
        var peak = model.gradientBytes
        model.backward { p in
            peak = max(peak, model.gradientBytes)
            optimizer.update(p, lrScale: 1)
            p.releaseGradient()
        }
        #expect(plan.gradientsBytes == c.vocab * c.dim * 4)
        #expect(peak == plan.gradientsBytes)
    }

    @Test func checkpointingKeepsLayerInputsAndOneLayer() {
        let c = LlamaConfig.presets["llama60m"]!
        let full = ActivationMemory.bytes(config: c, batch: 4, seq: 256)
        let (perLayer, shared) = ActivationMemory.parts(config: c, batch: 4, seq: 256)
        #expect(full == shared + c.layers * perLayer)
        let ckpt = ActivationMemory.bytes(config: c, batch: 4, seq: 256, checkpointing: true)
        #expect(ckpt == shared + perLayer + (c.layers - 1) * 4 * 256 * 4 * c.dim)
        #expect(ActivationMemory.bytes(config: c, batch: 4, seq: 256, dtype: .bf16) == full / 2)
    }

    // MARK: Storage formats

    @Test func eightBitStatesAreBitsandbytesBlocks() throws {
        let s = try StateStorage(bits: 8)
        #expect(s.bytes(.init([64, 64]), dtype: .bf16) == 4096 + 4 * 16)
        #expect(s.bytes(.init([4097]), dtype: .fp32) == 4097 + 4 * 17)
        #expect(s.bytes(.init([4095]), dtype: .bf16) == 4095 * 4)  // below min_8bit_size: float32
        #expect(StateStorage.full.bytes(.init([2, 5]), dtype: .bf16) == 20)
        #expect(StateStorage.full.bytes(.init([2, 5]), dtype: .fp32) == 40)
        // A tensor the rule already stores in 8 bits keeps its size.
        let q = StateFootprint.Entry([64, 64], .blockwise8Bit(try StateQuantization()))
        #expect(StateStorage.full.bytes(q, dtype: .fp32) == 4096 + 4 * 16)
        #expect(throws: ConfigurationError.self) { try StateStorage(bits: 4) }
        #expect(throws: ConfigurationError.self) { try MemoryDType(parsing: "fp8") }
    }

    @Test func badRequestsThrow() {
        let c = LlamaConfig.presets["tiny"]!
        #expect(throws: ConfigurationError.self) { try MemoryPlan(.init(config: c, optimizer: "nope")) }
        #expect(throws: ConfigurationError.self) { try MemoryPlan(.init(config: c, optimizer: "adamw", seq: 4096)) }
        #expect(throws: ConfigurationError.self) { try MemoryPlan(.init(config: c, optimizer: "adamw", batch: 0)) }
        var o = OptimizerOptions()
        o.rank = 0
        #expect(throws: ConfigurationError.self) { try MemoryPlan(.init(config: c, optimizer: "galore", options: o)) }
        #expect(throws: ConfigurationError.self) { try LlamaConfig.resolve(model: "llama-nope") }
    }

    // MARK: GaLore's published estimates

    static func gib(_ bytes: Int) -> Double { Double(bytes) / 1_073_741_824 }

    /// bf16 plan of the optimizer states (moments plus projectors) and weights + states.
    func galorePlan(_ preset: String, rank: Int?) throws -> (states: Double, withWeights: Double) {
        var o = OptimizerOptions()
        o.rank = rank
        let plan = try MemoryPlan(.init(
            config: LlamaConfig.presets[preset]!, optimizer: rank == nil ? "adamw" : "galore", options: o, dtype: .bf16))
        let states = plan.optimizerStateBytes + plan.projectorBytes
        return (Self.gib(states), Self.gib(states + plan.weightsBytes))
    }

    /// GaLore Table 6b (optimizer states, bf16) and Table 2 (weights + states), ranks
    /// 128/256/256/512 (Table 2's r/d_model row), G read as GiB. Tolerances: full-rank states
    /// 7% (ours -6% to 0%); GaLore states 20%: the published split is 9-17% below GaLore's
    /// own rule (mr + 2nr per projected matrix, AdamW on embeddings and head) at every size,
    /// while Table 2's totals from the same paper agree with ours within 10% for both
    /// optimizers, so the gap is in the published figures' breakdown, not the rule. The
    /// README lists every figure and convention.
    @Test(arguments: [
        ("llama60m", 128, 0.23, 0.13, 0.36, 0.24),
        ("llama130m", 256, 0.51, 0.28, 0.76, 0.52),
        ("llama350m", 256, 1.37, 0.54, 2.06, 1.22),
        ("llama1b", 512, 5.20, 1.78, 7.80, 4.38),
    ])
    func matchesGaLoresPublishedEstimates(
        preset: String, rank: Int, fullStates: Double, galoreStates: Double, fullTotal: Double, galoreTotal: Double
    ) throws {
        let adam = try galorePlan(preset, rank: nil), galore = try galorePlan(preset, rank: rank)
        #expect(abs(adam.states / fullStates - 1) <= 0.07, "\(preset) full states \(adam.states) vs \(fullStates)")
        #expect(abs(galore.states / galoreStates - 1) <= 0.20, "\(preset) galore states \(galore.states) vs \(galoreStates)")
        #expect(galore.states > galoreStates, "\(preset): the published GaLore states are below the rule's count")
        #expect(abs(adam.withWeights / fullTotal - 1) <= 0.10, "\(preset) full total \(adam.withWeights) vs \(fullTotal)")
        #expect(abs(galore.withWeights / galoreTotal - 1) <= 0.10, "\(preset) galore total \(galore.withWeights) vs \(galoreTotal)")
    }

    /// GaLore Table 3: LLaMA 7B, bf16 weights with 8-bit states, 8-bit GaLore (rank 1024)
    /// "18G" against 8-bit Adam "26G" (weights + optimizer states; P in bf16). Within 5%.
    @Test func sevenBillionEightBit() throws {
        func plan(_ name: String, rank: Int?) throws -> Double {
            var o = OptimizerOptions()
            o.rank = rank
            let p = try MemoryPlan(.init(
                config: LlamaConfig.presets["llama7b"]!, optimizer: name, options: o, dtype: .bf16,
                stateStorage: .bitsandbytes8Bit))
            return Self.gib(p.weightsBytes + p.optimizerStateBytes + p.projectorBytes)
        }
        let galore = try plan("galore", rank: 1024), adam = try plan("adamw", rank: nil)
        #expect(abs(galore / 18 - 1) <= 0.05, "8-bit GaLore \(galore) GiB")
        #expect(abs(adam / 26 - 1) <= 0.05, "8-bit Adam \(adam) GiB")
    }

    // MARK: Command line

    @Test func commandPrintsJSONAndOneLineErrors() throws {
        guard CLITests.binary != nil else { return }
        let cli = CLITests()
        let r = try cli.run(["memory", "--model", "tiny", "--optimizer", "galore", "--rank", "64", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let keys = ["weights_bytes", "gradients_bytes", "optimizer_state_bytes", "projector_bytes", "activations_bytes", "runtime_bytes", "total_bytes"]
        let values = keys.compactMap { object[$0] as? Int }
        #expect(values.count == keys.count)
        #expect(values.dropLast().reduce(0, +) == values.last)
        #expect(values[5] > 0)  // measured: this process's resident set
        let bare = try cli.run(["memory", "--model", "tiny", "--runtime-bytes", "0", "--json"])
        let b = try #require(try JSONSerialization.jsonObject(with: Data(bare.stdout.utf8)) as? [String: Any])
        #expect(b["runtime_bytes"] as? Int == 0)
        for args in [
            ["memory", "--model", "nope"], ["memory", "--state-bits", "4"], ["memory", "--dtype", "fp8"],
            ["memory", "--optimizer", "galore", "--rank", "0"], ["memory", "--seq", "100000"], ["memory", "--runtime-bytes=-1"],
        ] {
            let e = try cli.run(args)
            #expect(e.status == 1 && e.stderr.hasPrefix("error: ") && e.stderr.split(separator: "\n").count == 1, "\(args): \(e.stderr)")
        }
    }
}

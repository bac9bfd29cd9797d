import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// Training runs with adapters: LoRA fine-tunes and ReLoRA's restarts resume bit for bit,
/// the restart keeps the function, and the jagged schedule is the reference's.
@Suite(.serialized) struct AdapterRunTests {
    let runs = TrainingRunTests()

    /// A base model trained for a few steps, for the fine-tunes to start from.
    func base(_ root: URL) throws -> (RunConfig, URL) {
        var c = try runs.config(root, steps: 6)
        c.evalEvery = 0
        let dir = root.appendingPathComponent("base")
        _ = try TrainingRun(config: c, outDir: dir).run()
        return (c, dir)
    }

    /// LoRA on a trained base: only the factors move (the base file is the starting model's
    /// weights bit for bit), and a resumed run equals an uninterrupted one.
    @Test func loraFineTuneResumesExactlyAndKeepsTheBase() throws {
        let root = runs.tempDir("lora-run")
        defer { try? FileManager.default.removeItem(at: root) }
        let (b, baseDir) = try base(root)
        var c = b
        c.initFrom = baseDir.appendingPathComponent("checkpoint").path
        c.tokenizer = baseDir.appendingPathComponent("checkpoint/tokenizer.json").path
        c.steps = 10; c.gradAccum = 2
        c.adapter = AdapterSettings(rank: 4, alpha: 8, targets: ["q_proj", "v_proj", "down_proj"])
        let a = try runs.expectResumeIsExact(c, stopAfter: 4, "lora-resume", in: root)
        let start = try SafeTensorsFile.load(url: baseDir.appendingPathComponent("checkpoint/model.safetensors"))
        let end = try SafeTensorsFile.load(url: a.appendingPathComponent("checkpoint/model.safetensors"))
        #expect(start.names == end.names)
        for n in start.names { #expect(start.tensors[n]!.array == end.tensors[n]!.array, "\(n) moved") }
        let model = try Checkpoint.loadModel(from: a.appendingPathComponent("checkpoint"))
        #expect(model.loraOperators.count == 2 * 3)
        #expect(model.loraOperators.allSatisfy { $0.b.value.array.contains { $0 != 0 } })
    }

    /// ReLoRA from scratch with restarts every 4 steps (after steps 4, 8, 12), interrupted
    /// after step 6 and after a restart step (8): both resumes equal the straight run; the
    /// rate after each restart climbs again from 0.
    @Test func reloraResumesExactlyAcrossRestarts() throws {
        let root = runs.tempDir("relora-run")
        defer { try? FileManager.default.removeItem(at: root) }
        var c = try runs.config(root, steps: 14)
        c.evalEvery = 0
        c.adapter = AdapterSettings(method: .relora, rank: 4, alpha: 8)
        c.restarts = RestartSettings(every: 4, action: .merge, reset: .randomPrune(fraction: 0.9), warmup: 2, startRatio: 0)
        let a = try runs.expectResumeIsExact(c, stopAfter: 6, "relora-6", in: root)
        _ = try runs.expectResumeIsExact(c, stopAfter: 8, "relora-8", in: root)
        let m = try MetricsLog.read(url: a.appendingPathComponent("metrics.jsonl"))
        // Steps 5, 9, 13 (0-based 4, 8, 12) run at rate 0; steps 6, 10, 14 at half the base rate's value two steps on.
        for s in [4, 8, 12] { #expect(m[s].lr == 0, "step \(s + 1)") }
        let schedule = c.stepOptions.schedule, cosine = c.learningRateSchedule
        #expect(schedule.multiplier(step: 5) == 0.5 * cosine.multiplier(step: 6))
        #expect(schedule.multiplier(step: 3) == cosine.multiplier(step: 3) && schedule.multiplier(step: 7) == cosine.multiplier(step: 7))
        // ReLoRA trains the tensors outside the adapters (its reference's default).
        #expect(try Checkpoint.loadAdapterSettings(from: a.appendingPathComponent("checkpoint"))?.othersTrain == true)
    }

    /// A restart keeps the function (B A merged, B zero), re-draws A, and prunes only the
    /// factors' moments, keeping their step counters.
    @Test func restartKeepsTheFunctionAndPrunesTheFactorsState() throws {
        let settings = AdapterSettings(method: .relora, rank: 3, alpha: 6)
        let model = try LlamaModel(config: smallConfig(), seed: 2, operators: settings.operators())
        let optimizer = RoutedOptimizer(fallback: AdamW(learningRate: 1e-2, weightDecay: 0))
        let inner = try BackpropStep(model: model, optimizer: optimizer, options: StepOptions())
        let step = RestartingStep(
            inner: inner, optimizer: optimizer, settings: RestartSettings(every: 3, action: .merge, reset: .zero, warmup: 1, startRatio: 0),
            totalSteps: 10, seed: 7)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        for _ in 0..<2 { _ = try step.trainStep([batch]) }
        let a0 = model.loraOperators.map(\.a.value.array)
        _ = try step.trainStep([batch])  // step 3 ends the cycle: restart after the update
        let afterUpdate = model.loraOperators.map { $0.b.value.array }
        #expect(afterUpdate.allSatisfy { $0.allSatisfy { $0 == 0 } }, "B restarts at zero")
        #expect(zip(model.loraOperators.map(\.a.value.array), a0).allSatisfy { $0 != $1 }, "A is re-drawn")
        for op in model.loraOperators {
            let s = optimizer.fallback.exportState(for: op.a)
            #expect(s["step"]!.array == [3] && s["exp_avg"]!.array.allSatisfy { $0 == 0 })
        }
        // Only the factors' state is reset.
        #expect(optimizer.fallback.exportState(for: model.finalNorm)["exp_avg"]!.array.contains { $0 != 0 })
        // The function across the restart alone: merge then restart changes nothing.
        let op = model.loraOperators[0]
        var r = RandomStream(seed: 1)
        r.fillNormal(op.b.value, std: 0.3)
        let withAdapter = try model.logits(batch).array
        try op.mergeAndRestart(stream: RandomStream(seed: 5))
        #expect(relativeError(try model.logits(batch).array, withAdapter) < 1e-5)
    }

    /// Every adapter and parametrization through `TrainingRun`: a run stopped and resumed
    /// equals the straight run bit for bit (restarts, refactorizations, momentum resets,
    /// dropout masks and LoRA-SB's initialization included); from scratch the loss falls.
    @Test(arguments: ["low-rank", "sltrain", "lora-dropout", "lora-xs", "lora-sb"])
    func everyMethodResumesExactly(method: String) throws {
        let root = runs.tempDir("adapters-\(method)")
        defer { try? FileManager.default.removeItem(at: root) }
        var c: RunConfig
        switch method {
        case "low-rank", "sltrain":
            c = try runs.config(root, steps: 10)
            c.adapter = AdapterSettings(method: method == "sltrain" ? .sltrain : .lowRank, rank: 8)
            c.restarts = .glentis(every: 4, refactor: true, momentumReset: true)
        default:
            let (b, baseDir) = try base(root)
            c = b
            c.initFrom = baseDir.appendingPathComponent("checkpoint").path
            c.tokenizer = baseDir.appendingPathComponent("checkpoint/tokenizer.json").path
            c.steps = 10; c.gradAccum = 2
            switch method {
            case "lora-dropout": c.adapter = AdapterSettings(rank: 4); c.adapter?.dropout = 0.2
            case "lora-xs": c.adapter = AdapterSettings(method: .loraXS, rank: 4)
            default: c.adapter = AdapterSettings(method: .loraSB, rank: 4); c.adapter?.initBatches = 2
            }
        }
        c.evalEvery = 0
        let a = try runs.expectResumeIsExact(c, stopAfter: 5, "\(method)-resume", in: root)
        if c.adapter!.method.isParametrization {
            // From scratch the loss falls within ten steps; the fine-tunes' per-batch losses
            // are noise at this length (their learning is the operators' tests' business).
            let m = try MetricsLog.read(url: a.appendingPathComponent("metrics.jsonl"))
            #expect(m.last!.loss < m.first!.loss, "\(method): \(m.first!.loss) -> \(m.last!.loss)")
        }
        #expect(try Checkpoint.loadAdapterSettings(from: a.appendingPathComponent("checkpoint")) == c.adapter)
    }

    /// The planner prices adapters exactly: weights (frozen included), gradients (trainable
    /// only), optimizer state and activations equal what a real step allocates.
    @Test(arguments: [AdapterSettings.Method.lora, .loraXS, .lowRank, .sltrain, .comera])
    func plannerPricesAdaptersExactly(method: AdapterSettings.Method) throws {
        let config = LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, vocab: 40, maxSeq: 16)
        var settings = AdapterSettings(method: method, rank: 4, targets: ["q_proj", "v_proj", "up_proj", "down_proj"])
        if method == .sltrain { settings.density = 0.1 }
        if method == .comera { var c = ComeraSettings(); c.rank = 3; settings.comera = c }
        let plan = try Self.expectPlanMatchesAStep(config, settings)
        #expect(plan.parameters < config.parameterCount, "\(method): \(plan.parameters) trainable")
    }

    /// The planner's figures for `settings` on `config` against one AdamW step's allocations.
    @discardableResult
    static func expectPlanMatchesAStep(_ config: LlamaConfig, _ settings: AdapterSettings) throws -> MemoryPlan {
        let plan = try MemoryPlan(MemoryPlan.Request(config: config, optimizer: "adamw", batch: 2, seq: 16, adapter: settings))
        let model = try LlamaModel(config: config, seed: 1, operators: settings.operators())
        let optimizer = try OptimizerRegistry.make("adamw", options: OptimizerOptions())
        let step = try BackpropStep(model: model, optimizer: optimizer, options: StepOptions())
        _ = try step.trainStep([randomBatch(vocab: config.vocab, batch: 2, seq: 16, seed: 3)])
        #expect(plan.weightsBytes == model.weightBytes)
        #expect(plan.gradientsBytes == model.gradientBytes)
        #expect(plan.optimizerStateBytes == optimizer.stateBytes(model.parameters))
        #expect(plan.parameters == model.parameters.filter(\.requiresGrad).reduce(0) { $0 + $1.count })
        #expect(plan.activationsBytes == model.activationBytes)
        return plan
    }

    /// `run_config.json` round-trips the adapter and restart settings, and a resume with
    /// other adapter settings is refused.
    @Test func runConfigKeepsAdapterSettings() throws {
        var c = RunConfig(model: smallConfig(), data: "x")
        c.adapter = AdapterSettings(method: .relora, rank: 2, alpha: 4, targets: ["q_proj"])
        c.restarts = .relora(every: 10)
        let back = try JSONDecoder().decode(RunConfig.self, from: Data(c.jsonString().utf8))
        #expect(back == c)
        var other = c
        other.adapter?.rank = 3
        #expect(c.resumeMismatches(with: other) == ["adapter"])
        other = c
        other.restarts?.every = 20
        #expect(c.resumeMismatches(with: other) == ["restarts"])
        // A ReLoRA run needs restarts; restarts that never happen are refused.
        var bad = c
        bad.restarts = nil
        #expect(throws: ConfigurationError.self) { try bad.validate() }
        bad = c
        bad.steps = 10
        #expect(throws: ConfigurationError.self) { try bad.validate() }
    }
}

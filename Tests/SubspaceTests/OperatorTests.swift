import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// A test operator: a frozen dense base plus trainable factors, y = x W^T + (x A^T) B^T
/// (LoRA without scaling, with B drawn at random so that both factors get gradients).
/// It keeps t = x A^T from a training forward, the kind of saved activation an adapter has.
final class FactoredTestLinear: LinearOperator {
    let base, a, b: Parameter
    let inFeatures: Int, outFeatures: Int, rank: Int
    private var saved: Tensor?
    var parameters: [Parameter] { [base, a, b] }
    var activationBytes: Int { saved?.byteCount ?? 0 }

    init(base: Parameter, a: Parameter, b: Parameter) {
        self.base = base; self.a = a; self.b = b
        outFeatures = base.shape[0]; inFeatures = base.shape[1]; rank = a.shape[0]
        base.requiresGrad = false
    }

    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode) {
        let t: Tensor
        if mode == .training {
            if saved?.shape != [rows, rank] { saved = Tensor(zeros: [rows, rank]) }
            t = saved!
        } else {
            t = Tensor(zeros: [rows, rank])
        }
        Linear.forward(x: x, weight: base.value.data, y: y, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulate: accumulate)
        Linear.forward(x: x, weight: a.value.data, y: t.data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
        Linear.forward(x: t.data, weight: b.value.data, y: y, rows: rows, inFeatures: rank, outFeatures: outFeatures, accumulate: true)
    }

    func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        let u = Tensor(zeros: [rows, rank])
        Linear.backwardInput(dy: dy, weight: base.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulate)
        Linear.backwardInput(dy: dy, weight: b.value.data, dx: u.data, rows: rows, inFeatures: rank, outFeatures: outFeatures)
        Linear.backwardInput(dy: u.data, weight: a.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: rank, accumulateInput: true)
    }

    func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        let u = Tensor(zeros: [rows, rank])
        Linear.backwardInput(dy: dy, weight: b.value.data, dx: u.data, rows: rows, inFeatures: rank, outFeatures: outFeatures)
        Linear.backwardWeight(dy: u.data, x: x, dWeight: a.gradient().data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
        Linear.backwardWeight(dy: dy, x: saved!.data, dWeight: b.gradient().data, rows: rows, inFeatures: rank, outFeatures: outFeatures)
    }

    func releaseActivations() { saved = nil }

    struct Kind: LinearOperatorKind {
        let rank: Int
        var name: String { "factored-test" }
        func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            [
                ParameterSpec(name: slot.path + ".weight", role: slot.role, shape: [slot.outFeatures, slot.inFeatures], trainable: false),
                ParameterSpec(name: slot.path + ".lora_A.weight", role: slot.role, shape: [rank, slot.inFeatures]),
                ParameterSpec(name: slot.path + ".lora_B.weight", role: slot.role, shape: [slot.outFeatures, rank]),
            ]
        }
        func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int {
            mode == .training ? 4 * rows * rank : 0
        }
        func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            let s = parameterSpecs(for: slot)
            return FactoredTestLinear(base: initializer.normal(s[0]), a: initializer.normal(s[1]), b: initializer.normal(s[2]))
        }
    }
}

/// A forward-only rule in the MeZO manner (SPSA with Rademacher directions regenerated from
/// a seed), to show that such a rule plugs in: it never allocates a gradient or the training
/// arena.
final class ZeroOrderTestStep: StepRule {
    let model: LlamaModel
    var memory: StepRuleMemory { .forwardOnly }
    private(set) var step = 0
    let eps: Float = 1e-3, lr: Float = 1e-2
    init(model: LlamaModel) { self.model = model }
    func setStep(_ s: Int) { step = s }

    private func perturb(_ scale: Float) {
        for p in model.parameters where p.requiresGrad {
            var r = RandomStream(seed: UInt64(step)).split(p.name)
            for i in 0..<p.count { p.value.data[i] += scale * r.sign() }
        }
    }

    func trainStep(_ microBatches: [TokenBatch]) throws -> StepReport {
        let t0 = Clock.now()
        perturb(eps)
        let plus = try model.loss(microBatches[0]).loss
        perturb(-2 * eps)
        let minus = try model.loss(microBatches[0]).loss
        perturb(eps)
        let g = Float((plus - minus) / Double(2 * eps))
        perturb(-lr * g)
        step += 1
        return StepReport(step: step, loss: Float((plus + minus) / 2), lrScale: 1, forwardSeconds: Clock.since(t0), backwardSeconds: 0, optimizerSeconds: 0)
    }
}

@Suite struct OperatorTests {
    static let swapped: Set<String> = ["model.layers.1.self_attn.q_proj", "model.layers.0.mlp.down_proj"]

    static func swappedModel(tied: Bool = false) throws -> LlamaModel {
        let ops = LinearOperators.dense.replacing(swapped, with: FactoredTestLinear.Kind(rank: 3))
        return try LlamaModel(config: smallConfig(tied: tied), seed: 3, operators: ops)
    }

    /// A slot's operator replaced (frozen base plus factors, in an attention and in the MLP's
    /// down slot, whose input buffer takes its input gradient): every trainable parameter's
    /// gradient, upstream and downstream of the swapped slots, against central finite
    /// differences of the whole model's loss.
    @Test(arguments: [false, true])
    func swappedOperatorGradientsThroughTheWholeModel(tied: Bool) throws {
        let model = try Self.swappedModel(tied: tied)
        let r = try expectModelGradients(model, batch: randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(r.checked.count == model.parameters.count - 2 && r.frozen.count == 2)
        #expect(model.parameter(named: "model.layers.1.self_attn.q_proj.lora_A.weight") != nil)
    }

    /// Parameter specs, checkpoint names and activation bytes follow the replaced operators,
    /// with Llama.swift untouched.
    @Test func descriptionFollowsTheOperators() throws {
        let model = try Self.swappedModel()
        #expect(model.architecture.parameterSpecs == model.parameters.map { ParameterSpec($0) })
        let dense = smallConfig().parameterSpecs
        #expect(model.parameters.count == dense.count + 2 * Self.swapped.count)
        #expect(Set(dense.map(\.name)).isSubset(of: Set(model.parameters.map(\.name))))
        // Initial values do not depend on which slots were replaced.
        let plain = try LlamaModel(config: smallConfig(), seed: 3)
        for p in plain.parameters { #expect(model.parameter(named: p.name)!.value.array == p.value.array, "\(p.name)") }

        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        try model.forward(batch)
        #expect(model.activationBytes == ActivationMemory.bytes(architecture: model.architecture, batch: 2, seq: 6))
        #expect(model.activationBytes == LlamaActivations.bytes(config: smallConfig(), batch: 2, seq: 6) + 2 * 4 * 12 * 3)
        model.backward()

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-operators-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        // An operator no settings type describes cannot be rebuilt from a checkpoint: saving
        // it is refused rather than writing a file nothing can load.
        #expect(throws: CheckpointError.self) { try Checkpoint.save(to: dir.appendingPathComponent("ck"), model: model) }
    }

    /// A mismatched operator is refused when the model is built.
    @Test func operatorOfTheWrongShapeIsRefused() throws {
        struct Wrong: LinearOperatorKind {
            var name: String { "wrong" }
            func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
                [ParameterSpec(name: slot.path + ".weight", role: slot.role, shape: [slot.outFeatures + 1, slot.inFeatures])]
            }
            func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
                DenseLinear(weight: initializer.normal(parameterSpecs(for: slot)[0]))
            }
        }
        let ops = LinearOperators.dense.replacing(where: { $0.name == "k_proj" }, with: Wrong())
        #expect(throws: ConfigurationError.self) { try LlamaModel(config: smallConfig(), operators: ops) }
    }

    /// Observers see a slot's input and output gradient in place: their product is the dense
    /// weight's gradient (the Kronecker-factor statistics K-FAC and MKOR collect).
    @Test func observersSeeInputAndOutputGradient() throws {
        let model = try LlamaModel(config: smallConfig(), seed: 3)
        let slot = try #require(model.slot("model.layers.0.mlp.gate_proj"))
        var x: [Float] = [], dy: [Float] = [], shapes: [[Int]] = []
        slot.inputObserver = { spec, v in
            #expect(spec.path == "model.layers.0.mlp.gate_proj")
            x = Array(UnsafeBufferPointer(start: v.data, count: v.rows * v.columns)); shapes.append([v.rows, v.columns])
        }
        slot.outputGradientObserver = { _, v in
            dy = Array(UnsafeBufferPointer(start: v.data, count: v.rows * v.columns)); shapes.append([v.rows, v.columns])
        }
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        _ = try model.loss(batch)
        #expect(shapes.isEmpty, "the input observer fires on training forwards only")
        try model.forward(batch)
        model.backward()
        #expect(shapes == [[12, 16], [12, 24]])
        let g = try #require(model.parameter(named: "model.layers.0.mlp.gate_proj.weight")?.grad)
        var expected = [Float](repeating: 0, count: 24 * 16)
        for o in 0..<24 { for i in 0..<16 { var s = 0.0; for r in 0..<12 { s += Double(dy[r * 24 + o]) * Double(x[r * 16 + i]) }; expected[o * 16 + i] = Float(s) } }
        #expect(relativeError(g.array, expected) < 1e-5)
    }

    /// The forward-only path (inference arena, one layer's buffers) gives the training
    /// forward's logits and loss bit for bit.
    @Test(arguments: [(2, false), (4, true), (1, false)])
    func forwardOnlyLogitsEqualTrainingLogits(kvHeads: Int, tied: Bool) throws {
        let c = LlamaConfig(dim: 16, layers: 3, heads: 4, kvHeads: kvHeads, ffnDim: 24, vocab: 20, maxSeq: 8, tiedEmbeddings: tied, initStd: 0.3)
        let model = try LlamaModel(config: c, seed: 5)
        let batch = randomBatch(vocab: 20, batch: 3, seq: 7, seed: 6)
        let inference = try model.logits(batch).array
        let lossOnly = try model.loss(batch).loss
        #expect(model.activationBytes == ActivationMemory.bytes(config: c, batch: 3, seq: 7, rule: .forwardOnly))
        #expect(model.activationBytes < LlamaActivations.bytes(config: c, batch: 3, seq: 7))
        let training = try model.trainingLogits(batch).array
        #expect(inference == training)
        let trained = try LlamaModel(config: c, seed: 5)
        let forwardLoss = try trained.forward(batch)
        #expect(Float(lossOnly) == forwardLoss)
    }

    /// The planner prices by rule: backprop is the training arena and the gradients;
    /// forward-only is the inference arena and no gradients, which is what a forward-only
    /// rule really holds.
    @Test func plannerPricesByRule() throws {
        let c = try LlamaConfig.preset("tiny")
        let small = smallConfig()
        let back = try MemoryPlan(.init(config: small, optimizer: "sgd", batch: 2, seq: 6))
        let fwd = try MemoryPlan(.init(config: small, optimizer: "sgd", batch: 2, seq: 6, rule: .forwardOnly))
        #expect(back.gradientsBytes == back.weightsBytes && fwd.gradientsBytes == 0)
        #expect(fwd.activationsBytes < back.activationsBytes)
        #expect(fwd.weightsBytes == back.weightsBytes && fwd.optimizerStateBytes == back.optimizerStateBytes)

        let model = try LlamaModel(config: small, seed: 1)
        let rule = ZeroOrderTestStep(model: model)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 2)
        let before = try model.loss(batch).loss
        for _ in 0..<3 { _ = try rule.trainStep([batch]) }
        #expect(try model.loss(batch).loss != before)
        #expect(model.gradientBytes == fwd.gradientsBytes)
        #expect(model.activationBytes == fwd.activationsBytes)
        #expect(rule.memory.activationMode == .inference)

        let trainer: any StepRule = try StepRuleName.backprop.make(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: StepOptions())
        _ = try trainer.trainStep([batch])
        #expect(model.activationBytes - fwd.activationsBytes == back.activationsBytes)  // the inference arena is kept beside
        // Depth: the training arena grows with layers, the inference arena does not.
        var deep = c
        deep.layers *= 4
        #expect(ActivationMemory.bytes(config: deep, batch: 8, seq: 256, rule: .forwardOnly) == ActivationMemory.bytes(config: c, batch: 8, seq: 256, rule: .forwardOnly))
        #expect(ActivationMemory.bytes(config: deep, batch: 8, seq: 256) > 3 * ActivationMemory.bytes(config: c, batch: 8, seq: 256))
    }

    /// A run config names its rule; older configs (without the key) decode as backprop.
    @Test func runConfigNamesTheRule() throws {
        var rc = RunConfig(model: smallConfig(), data: "x.txt")
        #expect(!rc.jsonString().contains("stepRule") && rc.resolvedStepRule == .backprop)
        let decoded = try JSONDecoder().decode(RunConfig.self, from: Data(rc.jsonString().utf8))
        #expect(decoded.stepRule == nil)
        rc.stepRule = .backprop
        #expect(try JSONDecoder().decode(RunConfig.self, from: Data(rc.jsonString().utf8)).stepRule == .backprop)
        #expect(throws: ConfigurationError.self) { try StepRuleName(parsing: "no-such-rule") }
    }
}

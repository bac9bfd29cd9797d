import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct LoRATests {
    static let targets = ["q_proj", "v_proj", "o_proj", "down_proj"]

    static func model(tied: Bool = false, settings: AdapterSettings = AdapterSettings(rank: 3, alpha: 6, targets: targets, trainOthers: true)) throws -> LlamaModel {
        try LlamaModel(config: smallConfig(tied: tied), seed: 3, operators: settings.operators())
    }

    /// B drawn at random (it starts at zero, which would leave A without a gradient).
    static func randomizeB(_ model: LlamaModel, seed: UInt64 = 11) {
        for (i, op) in model.loraOperators.enumerated() {
            var r = RandomStream(seed: seed).split(op.b.name, index: UInt64(i))
            r.fillNormal(op.b.value, std: 0.3)
        }
    }

    /// LoRA on four slots (attention in and out, and the MLP's down slot, whose input buffer
    /// takes its input gradient): every trainable parameter's gradient, A and B and those
    /// upstream of the adapters, against central finite differences of the whole model's
    /// loss; the frozen bases get none.
    @Test(arguments: [false, true])
    func gradientsThroughTheWholeModel(tied: Bool) throws {
        let model = try Self.model(tied: tied)
        Self.randomizeB(model)
        let r = try expectModelGradients(model, batch: randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(r.frozen.count == 2 * Self.targets.count && r.frozen.allSatisfy { $0.hasSuffix(".base_layer.weight") })
        #expect(r.checked.count == model.parameters.count - r.frozen.count)
    }

    /// PEFT's names and initialisation: W0 is the dense model's weight bit for bit, A lies
    /// within torch's kaiming_uniform_(a = sqrt(5)) bound 1/sqrt(in), B is zero, so the new
    /// adapter model's logits are the dense model's exactly. Specs, activation bytes and
    /// checkpoint names follow the operators.
    @Test func startsAsTheDenseModel() throws {
        let model = try Self.model()
        let dense = try LlamaModel(config: smallConfig(), seed: 3)
        #expect(model.architecture.parameterSpecs == model.parameters.map { ParameterSpec($0) })
        #expect(model.parameters.count == dense.parameters.count + 2 * 2 * Self.targets.count)
        let q = try #require(model.slot("model.layers.0.self_attn.q_proj")?.op as? LoRALinear)
        #expect(q.parameters.map(\.name) == [
            "model.layers.0.self_attn.q_proj.base_layer.weight", "model.layers.0.self_attn.q_proj.lora_A.weight",
            "model.layers.0.self_attn.q_proj.lora_B.weight",
        ])
        #expect(q.a.shape == [3, 16] && q.b.shape == [16, 3] && q.scaling == 2)
        #expect(q.a.value.array.allSatisfy { abs($0) <= 1 / Float(16).squareRoot() } && q.a.value.array.contains { $0 != 0 })
        #expect(q.b.value.array.allSatisfy { $0 == 0 })
        #expect(model.slot("model.layers.0.self_attn.k_proj")?.op is DenseLinear)
        for op in model.loraOperators {
            let w = op.base.name.replacingOccurrences(of: ".base_layer.weight", with: ".weight")
            #expect(op.base.value.array == dense.parameter(named: w)?.value.array, "\(op.base.name)")
        }
        for p in dense.parameters where model.parameter(named: p.name) != nil {
            #expect(model.parameter(named: p.name)!.value.array == p.value.array, "\(p.name)")
        }
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        #expect(try model.logits(batch).array == dense.logits(batch).array)
        #expect(try model.trainingLogits(batch).array == dense.trainingLogits(batch).array)

        // A fresh model: the logits calls above keep the inference arena beside the training one.
        let fresh = try Self.model()
        try fresh.forward(batch)
        #expect(fresh.activationBytes == ActivationMemory.bytes(architecture: fresh.architecture, batch: 2, seq: 6))
        #expect(fresh.activationBytes == LlamaActivations.bytes(config: smallConfig(), batch: 2, seq: 6) + 2 * Self.targets.count * 4 * 12 * 3)
        fresh.backward()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-lora-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ck = dir.appendingPathComponent("ck")
        // Without the settings the adapters cannot be rebuilt: refused.
        #expect(throws: CheckpointError.self) { try Checkpoint.save(to: ck, model: fresh) }
        let settings = AdapterSettings(rank: 3, alpha: 6, targets: Self.targets, trainOthers: true)
        Self.randomizeB(fresh)
        try Checkpoint.save(to: ck, model: fresh, adapter: settings)
        // The base model under plain Hugging Face names, the factors under PEFT's.
        let file = try SafeTensorsFile.load(url: ck.appendingPathComponent(Checkpoint.modelFile))
        #expect(file.names == dense.parameters.map(\.name))
        let adapter = try SafeTensorsFile.load(url: ck.appendingPathComponent(Checkpoint.adapterWeightsFile))
        #expect(adapter.names == fresh.parameters.filter { $0.name.contains("lora_") }.map { "base_model.model." + $0.name })
        let loaded = try Checkpoint.loadModel(from: ck)
        #expect(try loaded.logits(batch).array == fresh.logits(batch).array)
        #expect(try Checkpoint.loadAdapterSettings(from: ck) == settings)
        // The merged model is a plain LLaMA with the same function.
        let merged = try LlamaModel(config: smallConfig(), seed: 9)
        try merged.loadDense(from: fresh)
        #expect(relativeError(try merged.logits(batch).array, try fresh.logits(batch).array) < 1e-5)
    }

    /// One operator against the dense map with W = W0 + s B A, with and without `accumulate`,
    /// over several rows and over one (the decoding step's matrix-vector path); rsLoRA
    /// scales by alpha / sqrt(r).
    @Test(arguments: [false, true])
    func operatorIsTheDenseMapOfTheMergedWeight(rsLoRA: Bool) throws {
        let settings = AdapterSettings(rank: 4, alpha: 3, rsLoRA: rsLoRA)
        #expect(settings.scaling == (rsLoRA ? 1.5 : 0.75))
        let slot = LinearSlotSpec(name: "q_proj", module: "self_attn", layer: 0, inFeatures: 10, outFeatures: 7, role: .attention)
        let kind = LoRALinear.Kind(rank: settings.rank, scaling: settings.scaling)
        let op = try #require(try kind.make(for: slot, initializer: ParameterInitializer(seed: 1, std: 0.2)) as? LoRALinear)
        var r = RandomStream(seed: 2)
        r.fillNormal(op.b.value, std: 0.5)
        let (o, i, k) = (7, 10, 4)
        var merged = op.base.value.array
        for a in 0..<o { for c in 0..<i { var s: Float = 0; for j in 0..<k { s += op.b.value.data[a * k + j] * op.a.value.data[j * i + c] }; merged[a * i + c] += settings.scaling * s } }
        expectDenseMap(op, weight: merged)
        #expect(relativeError(op.denseWeight().array, merged) < 1e-6)
    }

    /// merge() folds s B A into W0: the merged model's logits equal the adapter model's; the
    /// adapters then take no gradient; unmerge() restores W0 within float rounding; merging
    /// twice or unmerging an unmerged model is refused.
    @Test(arguments: [false, true])
    func mergeAndUnmerge(rsLoRA: Bool) throws {
        let model = try Self.model(settings: AdapterSettings(rank: 3, alpha: 6, rsLoRA: rsLoRA))
        #expect(model.loraOperators.count == 7 * 2)
        Self.randomizeB(model)
        let before = model.loraOperators.map(\.base.value.array)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        let adapter = try model.logits(batch).array
        let dense = try LlamaModel(config: smallConfig(), seed: 3).logits(batch).array
        #expect(relativeError(adapter, dense) > 1e-3, "the adapters must change the output for this test to mean anything")

        try model.mergeAdapters()
        #expect(model.loraOperators.allSatisfy { $0.isMerged })
        #expect(try relativeError(model.logits(batch).array, adapter) < 1e-5)
        #expect(try relativeError(model.trainingLogits(batch).array, adapter) < 1e-5)
        try model.forward(batch)
        model.backward()
        #expect(model.loraOperators.allSatisfy { $0.a.grad == nil && $0.b.grad == nil && $0.base.grad == nil })
        #expect(throws: ConfigurationError.self) { try model.mergeAdapters() }
        #expect(throws: ConfigurationError.self) { try model.loraOperators[0].merge() }

        try model.unmergeAdapters()
        for (op, w) in zip(model.loraOperators, before) {
            #expect(relativeError(op.base.value.array, w) < 1e-6, "\(op.base.name)")
        }
        #expect(try relativeError(model.logits(batch).array, adapter) < 1e-5)
        #expect(throws: ConfigurationError.self) { try model.unmergeAdapters() }
        #expect(throws: ConfigurationError.self) { try model.loraOperators[0].unmerge() }
    }

    /// AdamW through routing trains the factors: the loss falls over a few steps on one tiny
    /// batch, each W0 stays bit-identical and holds neither a gradient nor optimizer state.
    @Test func adamWTrainsTheFactorsOnly() throws {
        let model = try Self.model(settings: AdapterSettings(rank: 2, alpha: 2, targets: ["q_proj", "v_proj", "up_proj"]))
        let bases = model.loraOperators.map(\.base.value.array)
        let others = model.parameters.filter { !$0.name.contains("lora_") }.map { ($0, $0.value.array) }
        #expect(others.allSatisfy { !$0.0.requiresGrad }, "PEFT's default: only the adapters train")
        let optimizer = RoutedOptimizer(fallback: AdamW(learningRate: 2e-2, weightDecay: 0))
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        let first = try model.loss(batch).loss
        for _ in 0..<8 {
            model.zeroGradients()
            try model.forward(batch)
            model.backward()
            optimizer.step(model.parameters, lrScale: 1)
        }
        let last = try model.loss(batch).loss
        #expect(last < first - 0.05, "loss \(first) -> \(last)")
        for (op, w) in zip(model.loraOperators, bases) {
            #expect(op.base.value.array == w, "\(op.base.name) moved")
            #expect(op.base.grad == nil)
            #expect(optimizer.stateBytes([op.base]) == 0)
            #expect(optimizer.stateBytes([op.a, op.b]) > 0)
            #expect(op.b.value.array.contains { $0 != 0 })
        }
        // Everything outside the adapters is frozen: unchanged, no gradient, no state.
        for (p, w) in others {
            #expect(p.value.array == w, "\(p.name) moved")
            #expect(p.grad == nil && optimizer.stateBytes([p]) == 0, "\(p.name)")
        }
    }

    /// Defaults are PEFT's (r 8, alpha 8, scaling 1) on all seven slots; bad settings are refused.
    @Test func settingsDefaultsAndValidation() throws {
        let d = AdapterSettings()
        #expect(d.rank == 8 && d.alpha == 8 && !d.rsLoRA && d.scaling == 1)
        #expect(d.targets == LlamaArchitecture.slotNames)
        try d.validate()
        #expect(AdapterSettings(rank: 16, alpha: 8, rsLoRA: true).scaling == 2)
        let bad: [AdapterSettings] = [
            AdapterSettings(rank: 0), AdapterSettings(rank: -3), AdapterSettings(alpha: 0), AdapterSettings(alpha: -1),
            AdapterSettings(alpha: .nan), AdapterSettings(alpha: .infinity), AdapterSettings(targets: []),
            AdapterSettings(targets: ["qproj"]), AdapterSettings(targets: ["q_proj", "q_proj"]), AdapterSettings(targets: ["lm_head"]),
        ]
        for s in bad {
            #expect(throws: ConfigurationError.self, "\(s)") { try s.validate() }
            #expect(throws: ConfigurationError.self, "\(s)") { try s.operators() }
        }
        #expect(!d.othersTrain && AdapterSettings(method: .relora).othersTrain && AdapterSettings(trainOthers: true).othersTrain)
        // A rank above min(in, out) of a target slot is refused for that model.
        let c = smallConfig(tied: false)
        let kv = c.kvHeads * c.headDim  // k_proj is [kv, dim], the narrowest slot
        try AdapterSettings(rank: kv).validate(for: c)
        #expect(throws: ConfigurationError.self) { try AdapterSettings(rank: kv + 1).validate(for: c) }
        try AdapterSettings(rank: kv + 1, targets: ["q_proj"]).validate(for: c)
        let round = try JSONDecoder().decode(AdapterSettings.self, from: JSONEncoder().encode(AdapterSettings(rank: 4, alpha: 2, rsLoRA: true, targets: ["v_proj"])))
        #expect(round == AdapterSettings(rank: 4, alpha: 2, rsLoRA: true, targets: ["v_proj"]))
    }
}

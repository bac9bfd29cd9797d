import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Checkpoints: weights and config round trips, bit-for-bit resumption of training, every
/// failure mode as a typed error, crash safety of saving, and compatibility with
/// transformers' `save_pretrained` output (`Fixtures/hf_tiny`, written by
/// `scripts/make_hf_checkpoint.py`).
@Suite("Checkpoint", .serialized)
struct CheckpointTests {
    // MARK: Helpers

    /// A fresh directory that holds checkpoints (a checkpoint is a directory inside it).
    static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("subspace-checkpoint-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func config(kvHeads: Int = 2, tied: Bool = false) -> LlamaConfig {
        LlamaConfig(
            dim: 16, layers: 2, heads: 4, kvHeads: kvHeads, ffnDim: 24, vocab: 20, maxSeq: 8,
            ropeTheta: 500_000, normEps: 1e-5, tiedEmbeddings: tied, initStd: 0.3)
    }

    /// A model whose norm weights are not all one, so that misplaced norms would show.
    static func model(_ c: LlamaConfig, seed: UInt64) throws -> LlamaModel {
        let m = try LlamaModel(config: c, seed: seed)
        var r = RandomStream(seed: seed &+ 99)
        for p in m.parameters where p.role == .norm {
            for i in 0..<p.count { p.value.data[i] = 1 + 0.2 * r.normal() }
        }
        return m
    }

    static func batch(_ r: inout RandomStream, vocab: Int, batch: Int = 2, seq: Int = 8) -> TokenBatch {
        let toks = (0..<(batch * seq)).map { _ in Int32(r.int(vocab)) }
        let tgts = (0..<(batch * seq)).map { _ in Int32(r.int(vocab)) }
        return TokenBatch(tokens: toks, targets: tgts, batch: batch, seq: seq)
    }

    /// AdamW (amsgrad, weight decay) on the hidden matrices, SGD with Nesterov momentum on
    /// the rest: two rule types, two state layouts, both exported.
    static func optimizer() -> RoutedOptimizer {
        RoutedOptimizer(
            routes: [.init(.hiddenMatrices, AdamW(learningRate: 3e-3, weightDecay: 0.1, amsgrad: true))],
            fallback: SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov: true))
    }

    static func options() -> StepOptions {
        var o = StepOptions()
        o.clipNorm = 1
        o.schedule = .cosine(warmup: 2, total: 6, minRatio: 0.1)
        return o
    }

    static func bits(_ t: Tensor) -> [UInt32] { t.array.map(\.bitPattern) }

    /// Asserts that `body` throws a `CheckpointError` of `kind` whose one-line message names `file`.
    static func expectError(
        _ kind: CheckpointError.Kind, naming file: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected a \(kind) error, but it succeeded", sourceLocation: sourceLocation)
        } catch let e as CheckpointError {
            #expect(e.kind == kind, "got \(e.kind): \(e)", sourceLocation: sourceLocation)
            #expect(!e.description.contains("\n"), sourceLocation: sourceLocation)
            #expect(e.description.contains(file), "\(e) does not name \(file)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected CheckpointError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        }
    }

    // MARK: Config mapping

    @Test func configRoundTrip() throws {
        for c in [Self.config(), Self.config(kvHeads: 4, tied: true), try LlamaConfig.preset("llama60m")] {
            let tokens = SpecialTokenIds(bos: 1, eos: [2], pad: nil)
            let data = try c.huggingFaceJSON(specialTokens: tokens)
            let back = try HuggingFaceLlamaConfig(json: data)
            #expect(back.config == c)
            #expect(back.specialTokens == tokens)
            let obj = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(obj["architectures"] as? [String] == ["LlamaForCausalLM"])
            #expect(obj["model_type"] as? String == "llama")
            #expect(obj["hidden_act"] as? String == "silu")
            #expect(obj["torch_dtype"] as? String == "float32")
            #expect(obj["attention_bias"] as? Bool == false && obj["mlp_bias"] as? Bool == false)
            #expect(obj["rms_norm_eps"] as? Double == Double("\(c.normEps)"))
            #expect(obj["num_key_value_heads"] as? Int == c.kvHeads)
        }
    }

    /// What transformers 5 writes (`rope_parameters`, `dtype`) and what transformers 4 wrote
    /// (`rope_theta`, `torch_dtype`, sometimes no `num_key_value_heads`, eos lists).
    @Test func readsTransformersConfigs() throws {
        let v5 = """
            {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
             "bos_token_id": 1, "dtype": "float32", "eos_token_id": 2, "head_dim": 8, "hidden_act": "silu",
             "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": 32,
             "mlp_bias": false, "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
             "num_key_value_heads": 2, "pad_token_id": null, "pretraining_tp": 1, "rms_norm_eps": 1e-06,
             "rope_parameters": {"rope_theta": 50000.0, "rope_type": "default"}, "tie_word_embeddings": true,
             "transformers_version": "5.23.0", "use_cache": true, "vocab_size": 64}
            """
        let a = try HuggingFaceLlamaConfig(json: Data(v5.utf8))
        #expect(a.config == LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, vocab: 64, maxSeq: 32, ropeTheta: 50_000, normEps: 1e-6, tiedEmbeddings: true, initStd: 0.02))
        #expect(a.specialTokens == SpecialTokenIds(bos: 1, eos: [2], pad: nil))

        let v4 = """
            {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
             "num_hidden_layers": 3, "num_attention_heads": 8, "vocab_size": 100, "rope_theta": 10000,
             "rope_scaling": null, "torch_dtype": "bfloat16", "eos_token_id": [5, 6], "some_future_key": {"x": [1]}}
            """
        let b = try HuggingFaceLlamaConfig(json: Data(v4.utf8))
        #expect(b.config == LlamaConfig(dim: 64, layers: 3, heads: 8, kvHeads: 8, ffnDim: 172, vocab: 100, maxSeq: 2048))
        #expect(b.specialTokens.eos == [5, 6])
        // A list of eos ids is written back as a list.
        let again = try HuggingFaceLlamaConfig(json: try b.jsonData())
        #expect(again == b)

        func rejects(_ patch: String, _ expected: HuggingFaceConfigError, sourceLocation: SourceLocation = #_sourceLocation) {
            let json = """
                {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "vocab_size": 64\(patch)}
                """
            #expect(throws: expected, sourceLocation: sourceLocation) { try HuggingFaceLlamaConfig(json: Data(json.utf8)) }
        }
        rejects(#", "rope_scaling": {"type": "linear", "factor": 2.0}"#, .unsupportedRopeScaling("linear"))
        rejects(#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}"#, .unsupportedRopeScaling("llama3"))
        rejects(#", "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0}"#, .unsupportedRopeScaling("yarn"))
        rejects(#", "hidden_act": "gelu""#, .unsupportedActivation("gelu"))
        rejects(#", "attention_bias": true"#, .unsupportedBias(key: "attention_bias"))
        rejects(#", "mlp_bias": true"#, .unsupportedBias(key: "mlp_bias"))
        rejects(#", "head_dim": 16"#, .unsupportedHeadDim(headDim: 16, expected: 8))
        rejects(#", "model_type": "mistral""#, .unsupportedModelType("mistral"))
        rejects(#", "num_key_value_heads": 3"#, .invalidValue("kv heads 3 must divide heads 4"))
        rejects(#", "rms_norm_eps": "small""#, .wrongType(key: "rms_norm_eps", expected: "a number"))
        #expect(throws: HuggingFaceConfigError.missingKey("hidden_size")) {
            try HuggingFaceLlamaConfig(json: Data(#"{"intermediate_size": 64}"#.utf8))
        }
        #expect(throws: HuggingFaceConfigError.self) { try HuggingFaceLlamaConfig(json: Data("[1, 2]".utf8)) }
        #expect(throws: HuggingFaceConfigError.self) { try HuggingFaceLlamaConfig(json: Data("{\"hidden".utf8)) }
    }

    // MARK: Round trips

    @Test(arguments: [false, true])
    func saveLoadGivesIdenticalModel(tied: Bool) throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("ckpt")
        let m = try Self.model(Self.config(tied: tied), seed: 5)
        try Checkpoint.save(to: dir, model: m, specialTokens: SpecialTokenIds(bos: 1, eos: [2]))

        let weights = try SafeTensorsFile.load(url: dir.appendingPathComponent(Checkpoint.modelFile))
        #expect(weights.names.sorted() == m.parameters.map(\.name).sorted())
        #expect(weights.names.contains("lm_head.weight") == !tied)
        #expect(weights.entries.allSatisfy { $0.dtype == .f32 })
        #expect(weights.metadata["format"] == "pt")

        let loaded = try Checkpoint.loadModel(from: dir)
        #expect(loaded.config == m.config)
        #expect(loaded.parameters.map(\.name) == m.parameters.map(\.name))
        for (a, b) in zip(m.parameters, loaded.parameters) { #expect(Self.bits(a.value) == Self.bits(b.value), "\(a.name)") }
        var r = RandomStream(seed: 1)
        let x = Self.batch(&r, vocab: m.config.vocab)
        #expect(Self.bits(try m.logits(x)) == Self.bits(try loaded.logits(x)))
        #expect(try Checkpoint.loadConfig(from: dir).specialTokens == SpecialTokenIds(bos: 1, eos: [2]))
        #expect(try Checkpoint.loadTrainerState(from: dir) == nil)
        // Nothing but the checkpoint is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path) == ["ckpt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["config.json", "model.safetensors"])
    }

    /// Train 3 steps, checkpoint, restore into a fresh model and optimizer, train 3 more:
    /// the weights must equal those of 6 uninterrupted steps exactly. The data comes from a
    /// random stream saved in the trainer state, so that is checked too.
    @Test(arguments: [false, true])
    func resumeIsBitForBit(perLayer: Bool) throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("run")
        let c = Self.config(tied: true)
        var options = Self.options()
        options.perLayerUpdate = perLayer

        // Reference: 6 uninterrupted steps.
        let ref = try Self.model(c, seed: 11)
        let refTrainer = try Trainer(model: ref, optimizer: Self.optimizer(), options: options)
        var refData = RandomStream(seed: 42)
        for _ in 0..<6 { _ = try refTrainer.trainStep([Self.batch(&refData, vocab: c.vocab)]) }

        // 3 steps, save.
        let a = try Self.model(c, seed: 11)
        let aOpt = Self.optimizer()
        let aTrainer = try Trainer(model: a, optimizer: aOpt, options: options)
        var data = RandomStream(seed: 42)
        for _ in 0..<3 { _ = try aTrainer.trainStep([Self.batch(&data, vocab: c.vocab)]) }
        // A second stream with a cached spare normal and high state bits: it must survive too.
        var noise = RandomStream(seed: .max)
        _ = noise.normal()
        let state = TrainerState(
            step: aTrainer.step, tokensSeen: 3 * 16, dataPosition: 3, rng: ["data": data, "noise": noise],
            runConfig: #"{"lr": 0.003, "optimizer": "adamw"}"#, bestValLoss: .infinity, extras: ["note": "é\n\"quoted\""])
        try Checkpoint.save(to: dir, model: a, optimizer: aOpt, state: state)

        // Fresh model (other seed) and optimizer, restore, 3 more steps.
        let b = try Self.model(c, seed: 999)
        let bOpt = Self.optimizer()
        let restored = try #require(try Checkpoint.restore(from: dir, into: b, optimizer: bOpt))
        #expect(restored == state)
        var bNoise = try #require(restored.rng["noise"])
        #expect(bNoise.spareNormal != nil)
        #expect((0..<5).map { _ in bNoise.normal() } == (0..<5).map { _ in noise.normal() })
        var bData = try #require(restored.rng["data"])
        let bTrainer = try Trainer(model: b, optimizer: bOpt, options: options)
        bTrainer.setStep(restored.step)
        for _ in 0..<3 { _ = try bTrainer.trainStep([Self.batch(&bData, vocab: c.vocab)]) }
        #expect(bData == refData)
        for (p, q) in zip(ref.parameters, b.parameters) {
            #expect(Self.bits(p.value) == Self.bits(q.value), "\(p.name) differs after resuming")
        }

        // The state file holds what the format promises.
        let opt = try SafeTensorsFile.load(url: dir.appendingPathComponent(Checkpoint.optimizerFile))
        #expect(opt.names.contains("model.layers.0.self_attn.q_proj.weight/exp_avg"))
        #expect(opt.names.contains("model.layers.0.self_attn.q_proj.weight/max_exp_avg_sq"))
        #expect(opt.names.contains("model.norm.weight/momentum_buffer"))
        #expect(try opt.tensor("model.layers.1.mlp.down_proj.weight/step").array == [3])
        #expect(opt.metadata["format"] == "subspace-optimizer")
        let owners = try JSONDecoder().decode([String: String].self, from: Data(try #require(opt.metadata["owners"]).utf8))
        #expect(owners["model.embed_tokens.weight"] == "sgd" && owners["model.layers.1.mlp.up_proj.weight"] == "adamw")
    }

    @Test func optimizerStateExportImport() throws {
        let p = Parameter(name: "w", role: .mlp, value: Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6]))
        let g = Tensor(shape: [2, 3], values: [0.1, -0.2, 0.3, 0.4, -0.5, 0.6])
        let adam = AdamW(amsgrad: true)
        #expect(adam.exportState(for: p).isEmpty)
        adam.update(p, gradient: g, lrScale: 1)
        let s = adam.exportState(for: p)
        #expect(Set(s.keys) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"])
        let other = AdamW(amsgrad: true)
        try other.importState(s, for: p)
        #expect(other.states["w"]?.step == 1)
        #expect(throws: OptimizerStateError.shapeMismatch(parameter: "w", key: "exp_avg", expected: [2, 3], found: [6])) {
            var bad = s; bad["exp_avg"] = Tensor(zeros: [6]); try other.importState(bad, for: p)
        }
        #expect(throws: OptimizerStateError.missingTensor(parameter: "w", key: "max_exp_avg_sq")) {
            var bad = s; bad["max_exp_avg_sq"] = nil; try other.importState(bad, for: p)
        }
        #expect(throws: OptimizerStateError.unexpectedTensor(parameter: "w", key: "max_exp_avg_sq")) {
            try AdamW().importState(s, for: p)
        }
        #expect(throws: OptimizerStateError.self) {
            var bad = s; bad["step"] = Tensor(shape: [1], values: [1.5]); try other.importState(bad, for: p)
        }
        #expect(other.states["w"]?.step == 1, "a failed import keeps the old state")
        try other.importState([:], for: p)
        #expect(other.states["w"] == nil)

        let sgd = SGD(momentum: 0.9)
        sgd.update(p, gradient: g, lrScale: 1)
        #expect(Set(sgd.exportState(for: p).keys) == ["momentum_buffer"])
        #expect(SGD().exportState(for: p).isEmpty)
        #expect(throws: OptimizerStateError.unexpectedTensor(parameter: "w", key: "exp_avg")) {
            try SGD(momentum: 0.9).importState(s, for: p)
        }
    }

    // MARK: Failures

    @Test func corruptMissingAndMismatchedCheckpointsThrow() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        let c = Self.config()
        let good = root.appendingPathComponent("good")
        let m = try Self.model(c, seed: 3)
        let opt = Self.optimizer()
        let trainer = try Trainer(model: m, optimizer: opt, options: Self.options())
        var r = RandomStream(seed: 8)
        _ = try trainer.trainStep([Self.batch(&r, vocab: c.vocab)])
        try Checkpoint.save(to: good, model: m, optimizer: opt, state: TrainerState(step: 1, rng: ["data": r]))

        /// A copy of the good checkpoint with `edit` applied.
        var copies = 0
        func variant(_ edit: (URL) throws -> Void) throws -> URL {
            copies += 1
            let dir = root.appendingPathComponent("v\(copies)")
            try fm.copyItem(at: good, to: dir)
            try edit(dir)
            return dir
        }
        func truncate(_ url: URL, to fraction: Double) throws {
            let d = try Data(contentsOf: url)
            try d.prefix(Int(Double(d.count) * fraction)).write(to: url)
        }
        let weightsOf = { (dir: URL) in dir.appendingPathComponent(Checkpoint.modelFile) }
        func rewriteWeights(_ dir: URL, _ change: (inout [(String, Tensor)]) -> Void) throws {
            let f = try SafeTensorsFile.load(url: weightsOf(dir))
            var list = f.names.map { ($0, f.tensors[$0]!) }
            change(&list)
            try fm.removeItem(at: weightsOf(dir))
            try SafeTensorsFile.write(list, metadata: f.metadata, to: weightsOf(dir))
        }

        Self.expectError(.missingFile, naming: "nowhere") { _ = try Checkpoint.loadModel(from: root.appendingPathComponent("nowhere")) }
        let noConfig = try variant { try fm.removeItem(at: $0.appendingPathComponent("config.json")) }
        Self.expectError(.missingFile, naming: "config.json") { _ = try Checkpoint.loadModel(from: noConfig) }
        let noWeights = try variant { try fm.removeItem(at: weightsOf($0)) }
        Self.expectError(.missingFile, naming: "model.safetensors") { _ = try Checkpoint.loadModel(from: noWeights) }
        for fraction in [0.0, 0.003, 0.5, 0.999] {
            let cut = try variant { try truncate(weightsOf($0), to: fraction) }
            Self.expectError(.corruptFile, naming: "model.safetensors") { _ = try Checkpoint.loadModel(from: cut) }
        }
        let garbage = try variant { try Data((0..<4000).map { UInt8(truncatingIfNeeded: $0 &* 131) }).write(to: weightsOf($0)) }
        Self.expectError(.corruptFile, naming: "model.safetensors") { _ = try Checkpoint.loadModel(from: garbage) }
        let cutConfig = try variant { try truncate($0.appendingPathComponent("config.json"), to: 0.5) }
        Self.expectError(.corruptFile, naming: "config.json") { _ = try Checkpoint.loadModel(from: cutConfig) }
        let scaled = try variant { dir in
            let url = dir.appendingPathComponent("config.json")
            var obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            obj["rope_scaling"] = ["rope_type": "linear", "factor": 4.0]
            try JSONSerialization.data(withJSONObject: obj).write(to: url)
        }
        Self.expectError(.unsupportedConfig, naming: "config.json") { _ = try Checkpoint.loadModel(from: scaled) }
        let noKey = try variant { dir in
            let url = dir.appendingPathComponent("config.json")
            var obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            obj["vocab_size"] = nil
            try JSONSerialization.data(withJSONObject: obj).write(to: url)
        }
        Self.expectError(.invalidConfig, naming: "config.json") { _ = try Checkpoint.loadModel(from: noKey) }
        let missingTensor = try variant { try rewriteWeights($0) { $0.removeAll { $0.0 == "model.layers.1.mlp.up_proj.weight" } } }
        Self.expectError(.missingTensor, naming: "model.safetensors") { _ = try Checkpoint.loadModel(from: missingTensor) }
        let wrongShape = try variant { try rewriteWeights($0) { l in
            let i = l.firstIndex { $0.0 == "model.norm.weight" }!
            l[i].1 = Tensor(zeros: [17])
        } }
        Self.expectError(.shapeMismatch, naming: "model.safetensors") { _ = try Checkpoint.loadModel(from: wrongShape) }
        let extra = try variant { try rewriteWeights($0) { $0.append(("model.layers.2.input_layernorm.weight", Tensor(zeros: [16]))) } }
        Self.expectError(.unexpectedTensor, naming: "model.safetensors") { _ = try Checkpoint.loadModel(from: extra) }
        // Rotary buffers, as older transformers versions saved them, are ignored.
        let inv = try variant { try rewriteWeights($0) { $0.append(("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor(zeros: [2]))) } }
        _ = try Checkpoint.loadModel(from: inv)

        // Restoring: each failure leaves the model and optimizer untouched.
        let target = try Self.model(c, seed: 77)
        let targetOpt = Self.optimizer()
        let before = target.parameters.map { Self.bits($0.value) }
        func unchanged(sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(target.parameters.map { Self.bits($0.value) } == before, sourceLocation: sourceLocation)
            #expect(targetOpt.optimizers.allSatisfy { o in target.parameters.allSatisfy { o.exportState(for: $0).isEmpty } }, sourceLocation: sourceLocation)
        }
        let wider = try Self.model(LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 24, vocab: 20, maxSeq: 8, ropeTheta: 500_000, normEps: 1e-5, initStd: 0.3), seed: 1)
        Self.expectError(.configMismatch, naming: "config.json") { _ = try Checkpoint.restore(from: good, into: wider, optimizer: nil) }
        let tied = try Self.model(Self.config(tied: true), seed: 1)
        Self.expectError(.configMismatch, naming: "config.json") { _ = try Checkpoint.restore(from: good, into: tied, optimizer: nil) }
        let noOpt = try variant { try fm.removeItem(at: $0.appendingPathComponent(Checkpoint.optimizerFile)) }
        Self.expectError(.missingFile, naming: "optimizer.safetensors") { _ = try Checkpoint.restore(from: noOpt, into: target, optimizer: targetOpt) }
        unchanged()
        #expect(try Checkpoint.restore(from: noOpt, into: try Self.model(c, seed: 1), optimizer: nil)?.step == 1)
        let cutOpt = try variant { try truncate($0.appendingPathComponent(Checkpoint.optimizerFile), to: 0.7) }
        Self.expectError(.corruptFile, naming: "optimizer.safetensors") { _ = try Checkpoint.restore(from: cutOpt, into: target, optimizer: targetOpt) }
        unchanged()
        let rerouted = RoutedOptimizer(fallback: AdamW(amsgrad: true))
        Self.expectError(.optimizerMismatch, naming: "optimizer.safetensors") { _ = try Checkpoint.restore(from: good, into: target, optimizer: rerouted) }
        // A state tensor of the wrong shape, for a parameter imported late: earlier imports roll back.
        let badState = try variant { dir in
            let url = dir.appendingPathComponent(Checkpoint.optimizerFile)
            let f = try SafeTensorsFile.load(url: url)
            let list = f.names.map { n in (n, n == "model.layers.1.mlp.down_proj.weight/exp_avg" ? Tensor(zeros: [3]) : f.tensors[n]!) }
            try fm.removeItem(at: url)
            try SafeTensorsFile.write(list, metadata: f.metadata, to: url)
        }
        Self.expectError(.optimizerMismatch, naming: "optimizer.safetensors") { _ = try Checkpoint.restore(from: badState, into: target, optimizer: targetOpt) }
        unchanged()
        let cutState = try variant { try truncate($0.appendingPathComponent(Checkpoint.trainerStateFile), to: 0.5) }
        Self.expectError(.corruptFile, naming: "trainer_state.json") { _ = try Checkpoint.restore(from: cutState, into: target, optimizer: targetOpt) }
        unchanged()
        let badRNG = try variant { dir in
            let url = dir.appendingPathComponent(Checkpoint.trainerStateFile)
            var obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            obj["rng"] = ["data": ["seed": 1, "state": [1, 2, 3]]]
            try JSONSerialization.data(withJSONObject: obj).write(to: url)
        }
        Self.expectError(.corruptFile, naming: "trainer_state.json") { _ = try Checkpoint.restore(from: badRNG, into: target, optimizer: targetOpt) }
        unchanged()
        // And the good one restores.
        #expect(try Checkpoint.restore(from: good, into: target, optimizer: targetOpt)?.step == 1)
        for (p, q) in zip(m.parameters, target.parameters) { #expect(Self.bits(p.value) == Self.bits(q.value)) }

        // Saving refuses to replace a directory that is not a checkpoint.
        let precious = root.appendingPathComponent("precious")
        try fm.createDirectory(at: precious, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: precious.appendingPathComponent("notes.txt"))
        Self.expectError(.notACheckpoint, naming: "precious") { try Checkpoint.save(to: precious, model: m) }
        #expect(fm.fileExists(atPath: precious.appendingPathComponent("notes.txt").path))
    }

    /// A save that died part way leaves the last good checkpoint loadable, and the next save
    /// cleans up after it.
    @Test func interruptedSaveKeepsLastCheckpoint() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        let dir = root.appendingPathComponent("ckpt")
        let c = Self.config()
        let first = try Self.model(c, seed: 1), second = try Self.model(c, seed: 2)
        try Checkpoint.save(to: dir, model: first, state: TrainerState(step: 10))

        // Crash while writing: a half-written temporary directory of a dead process.
        let deadPid: Int32 = 2_147_483_000
        let stale = root.appendingPathComponent("ckpt.tmp-\(deadPid)")
        try fm.createDirectory(at: stale, withIntermediateDirectories: true)
        try Data("{\"hidden".utf8).write(to: stale.appendingPathComponent("config.json"))
        try Data([1, 2, 3]).write(to: stale.appendingPathComponent("model.safetensors"))
        var loaded = try Checkpoint.loadModel(from: dir)
        for (a, b) in zip(first.parameters, loaded.parameters) { #expect(Self.bits(a.value) == Self.bits(b.value)) }

        // Crash between the two renames: only `<dir>.old` holds a checkpoint.
        try fm.moveItem(at: dir, to: root.appendingPathComponent("ckpt.old"))
        loaded = try Checkpoint.loadModel(from: dir)
        for (a, b) in zip(first.parameters, loaded.parameters) { #expect(Self.bits(a.value) == Self.bits(b.value)) }
        #expect(try Checkpoint.loadTrainerState(from: dir)?.step == 10)

        // The next save publishes the new checkpoint and removes the leftovers.
        try Checkpoint.save(to: dir, model: second, state: TrainerState(step: 20))
        #expect(try fm.contentsOfDirectory(atPath: root.path) == ["ckpt"])
        loaded = try Checkpoint.loadModel(from: dir)
        for (a, b) in zip(second.parameters, loaded.parameters) { #expect(Self.bits(a.value) == Self.bits(b.value)) }
        #expect(try Checkpoint.loadTrainerState(from: dir)?.step == 20)

        // Overwriting a checkpoint in place, with a stale `.old` from an earlier crash around.
        try fm.createDirectory(at: root.appendingPathComponent("ckpt.old"), withIntermediateDirectories: true)
        try Checkpoint.save(to: dir, model: first, state: TrainerState(step: 30))
        #expect(try fm.contentsOfDirectory(atPath: root.path) == ["ckpt"])
        #expect(try Checkpoint.loadTrainerState(from: dir)?.step == 30)
    }

    // MARK: transformers compatibility

    /// Reads weights sharded as transformers does with `max_shard_size`.
    @Test func readsShardedWeights() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("sharded")
        let m = try Self.model(Self.config(), seed: 4)
        try Checkpoint.save(to: dir, model: m)
        try FileManager.default.removeItem(at: dir.appendingPathComponent(Checkpoint.modelFile))
        let half = m.parameters.count / 2
        var map: [String: String] = [:]
        for (i, part) in [Array(m.parameters[..<half]), Array(m.parameters[half...])].enumerated() {
            let file = "model-0000\(i + 1)-of-00002.safetensors"
            try SafeTensorsFile.write(part.map { ($0.name, $0.value) }, metadata: ["format": "pt"], to: dir.appendingPathComponent(file))
            for p in part { map[p.name] = file }
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": m.weightBytes], "weight_map": map])
        try index.write(to: dir.appendingPathComponent(Checkpoint.shardIndexFile))
        let loaded = try Checkpoint.loadModel(from: dir)
        for (a, b) in zip(m.parameters, loaded.parameters) { #expect(Self.bits(a.value) == Self.bits(b.value)) }

        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00002.safetensors"))
        Self.expectError(.missingFile, naming: "model-00002-of-00002.safetensors") { _ = try Checkpoint.loadModel(from: dir) }
    }

    /// `Fixtures/hf_tiny` is transformers' `save_pretrained` output for a small random LLaMA
    /// (GQA, untied, rope theta 50,000, eps 1e-5) with its float32 eager logits on fixed tokens.
    @Test func loadsTransformersCheckpoint() throws {
        let dir = Bundle.module.url(forResource: "hf_tiny", withExtension: nil, subdirectory: "Fixtures")
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf_tiny")
        try #require(
            FileManager.default.fileExists(atPath: dir.appendingPathComponent("config.json").path),
            "missing Fixtures/hf_tiny; run scripts/make_hf_checkpoint.py")
        let diff = try Self.logitDifference(dir)
        print("hf_tiny: max |logits - transformers| = \(diff)")
        #expect(diff < 1e-5)
    }

    /// Largest |logit difference| between our model loaded from `dir` and the transformers
    /// logits in `dir/expected_logits.safetensors` (as `make_hf_checkpoint.py` writes them).
    static func logitDifference(_ dir: URL) throws -> Float {
        let model = try Checkpoint.loadModel(from: dir)
        let expected = try SafeTensorsFile.load(url: dir.appendingPathComponent("expected_logits.safetensors"))
        let ids = try expected.integers("input_ids")
        let batch = TokenBatch(
            tokens: ids.values.map { Int32($0) }, targets: Array(repeating: -1, count: ids.values.count),
            batch: ids.shape[0], seq: ids.shape[1])
        let logits = try model.logits(batch)
        let reference = try expected.tensor("logits")
        try #require(logits.count == reference.count)
        return maxAbsDiff(logits.array, reference.array)
    }

    /// Not a test of its own: with `SUBSPACE_HF_CHECKPOINTS=DIR1:DIR2:...` set, loads each
    /// directory written by `scripts/make_hf_checkpoint.py` (any of its dtype, sharding or
    /// tying options) and prints how far our logits are from transformers'.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SUBSPACE_HF_CHECKPOINTS"] != nil))
    func compareWithTransformersCheckpoints() throws {
        for path in ProcessInfo.processInfo.environment["SUBSPACE_HF_CHECKPOINTS"]!.split(separator: ":") {
            let diff = try Self.logitDifference(URL(fileURLWithPath: String(path)))
            print("\(path): max |logits - transformers| = \(diff)")
            #expect(diff < 1e-4)
        }
    }

    /// Not a test of its own: with `SUBSPACE_CHECKPOINT_EXPORT=DIR` set, writes a trained
    /// checkpoint to `DIR/ckpt` and our logits on fixed tokens to `DIR/expected_logits.safetensors`
    /// for `scripts/check_hf_checkpoint.py DIR/ckpt --expect-logits DIR/expected_logits.safetensors`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SUBSPACE_CHECKPOINT_EXPORT"] != nil))
    func exportForTransformers() throws {
        let out = URL(fileURLWithPath: ProcessInfo.processInfo.environment["SUBSPACE_CHECKPOINT_EXPORT"]!)
        for tied in [false, true] {
            let c = LlamaConfig(
                dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 48, vocab: 64, maxSeq: 16,
                ropeTheta: 50_000, normEps: 1e-5, tiedEmbeddings: tied, initStd: 0.2)
            let m = try Self.model(c, seed: 21)
            let opt = RoutedOptimizer(fallback: AdamW(learningRate: 1e-2))
            let trainer = try Trainer(model: m, optimizer: opt, options: StepOptions())
            var r = RandomStream(seed: 5)
            for _ in 0..<5 { _ = try trainer.trainStep([Self.batch(&r, vocab: c.vocab, seq: 16)]) }
            let name = tied ? "tied" : "untied"
            try Checkpoint.save(to: out.appendingPathComponent("ckpt_\(name)"), model: m, optimizer: opt, state: TrainerState(step: 5))
            let x = Self.batch(&r, vocab: c.vocab, seq: 12)
            let ids = Tensor(shape: [x.batch, x.seq], values: x.tokens.map { Float($0) })
            try SafeTensorsFile.write(
                [("input_ids", ids), ("logits", try m.logits(x))],
                to: out.appendingPathComponent("expected_logits_\(name).safetensors"))
        }
    }
}

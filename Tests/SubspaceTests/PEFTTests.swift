import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceOptim
@testable import SubspaceTraining

/// PEFT compatibility in both directions, against adapters `peft` saved on the `hf_tiny`
/// base (`scripts/make_peft_fixtures.py`): Subspace computes PEFT's logits from them, and
/// writes the same adapter files back.
@Suite struct PEFTTests {
    static func fixture(_ name: String) throws -> URL {
        let dir = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures")
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
        try #require(FileManager.default.fileExists(atPath: dir.path), "missing Fixtures/\(name); run scripts/make_peft_fixtures.py")
        return dir
    }

    static func temp(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("subspace-peft-\(name)-\(UUID().uuidString)")
    }

    /// |logits - PEFT's| for `adapter` on hf_tiny, as Subspace loads them.
    static func logitDifference(base: URL, adapter: URL) throws -> Float {
        let model = try Checkpoint.loadModel(from: base, adapter: adapter)
        let expected = try SafeTensorsFile.load(url: adapter.appendingPathComponent("expected_logits.safetensors"))
        let ids = try expected.integers("input_ids")
        let batch = TokenBatch(
            tokens: ids.values.map { Int32($0) }, targets: Array(repeating: -1, count: ids.values.count), batch: ids.shape[0], seq: ids.shape[1])
        return maxAbsDiff(try model.logits(batch).array, try expected.tensor("logits").array)
    }

    @Test(arguments: ["peft_lora", "peft_rslora"])
    func computesPEFTsLogits(name: String) throws {
        let base = try Self.fixture("hf_tiny"), adapter = try Self.fixture(name)
        let diff = try Self.logitDifference(base: base, adapter: adapter)
        print("\(name): max |logits - peft| = \(diff)")
        #expect(diff < 1e-5)
        let s = try #require(try Checkpoint.loadAdapterSettings(from: adapter, layers: 2))
        if name == "peft_lora" {
            #expect(s == AdapterSettings(rank: 4, alpha: 8, targets: ["q_proj", "v_proj", "down_proj"], trainOthers: false))
        } else {
            #expect(s == AdapterSettings(rank: 2, alpha: 4, rsLoRA: true, targets: LlamaArchitecture.slotNames, trainOthers: false))
        }
    }

    /// A PEFT adapter loaded and saved again: the base file is the base model's tensors,
    /// the adapter file PEFT's tensors under PEFT's names bit for bit, and the config
    /// reads back to the same settings; the saved directory alone (base plus adapter)
    /// computes PEFT's logits.
    @Test func writesWhatPEFTWrites() throws {
        let base = try Self.fixture("hf_tiny"), adapter = try Self.fixture("peft_lora")
        let model = try Checkpoint.loadModel(from: base, adapter: adapter)
        let settings = try #require(try Checkpoint.loadAdapterSettings(from: adapter, layers: 2))
        let out = Self.temp("write")
        defer { try? FileManager.default.removeItem(at: out) }
        try Checkpoint.save(to: out, model: model, adapter: settings)
        let theirs = try SafeTensorsFile.load(url: adapter.appendingPathComponent(Checkpoint.adapterWeightsFile))
        let ours = try SafeTensorsFile.load(url: out.appendingPathComponent(Checkpoint.adapterWeightsFile))
        #expect(Set(ours.names) == Set(theirs.names))
        for n in theirs.names { #expect(ours.tensors[n]?.array == theirs.tensors[n]!.array, "\(n)") }
        let baseFile = try SafeTensorsFile.load(url: base.appendingPathComponent(Checkpoint.modelFile))
        let ourBase = try SafeTensorsFile.load(url: out.appendingPathComponent(Checkpoint.modelFile))
        #expect(Set(ourBase.names) == Set(baseFile.names))
        for n in baseFile.names { #expect(ourBase.tensors[n]?.array == baseFile.tensors[n]!.array, "\(n)") }
        let peft = try PEFTAdapterConfig.settings(json: Data(contentsOf: out.appendingPathComponent(Checkpoint.adapterConfigFile)), layers: 2)
        #expect(peft == settings)
        try FileManager.default.copyItem(
            at: adapter.appendingPathComponent("expected_logits.safetensors"), to: out.appendingPathComponent("expected_logits.safetensors"))
        #expect(try Self.logitDifference(base: out, adapter: out) < 1e-5)
    }

    /// PEFT configs this engine does not run are refused in one line naming the reason.
    @Test func refusesWhatItCannotRun() throws {
        let adapter = try Self.fixture("peft_lora")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: adapter.appendingPathComponent(Checkpoint.adapterConfigFile))) as! [String: Any]
        let cases: [(String, Any, String)] = [
            ("use_dora", true, "DoRA"), ("bias", "all", "biases"), ("target_modules", ["c_attn", "c_proj"], "another architecture"),
            ("target_modules", ["model.layers.0.self_attn.q_proj"], "1 of the model's 2 layers"),
            ("target_modules", ".*q_proj", "pattern"), ("modules_to_save", ["lm_head"], "modules_to_save"),
            ("peft_type", "IA3", "IA3"), ("task_type", "SEQ_CLS", "SEQ_CLS"), ("layers_to_transform", [0], "layers_to_transform"),
            ("r", 0, "rank"), ("lora_alpha", -1, "alpha"), ("fan_in_fan_out", true, "fan_in_fan_out"),
            ("rank_pattern", ["q_proj": 8], "rank_pattern"), ("lora_bias", true, "lora_bias"),
        ]
        for (key, value, expected) in cases {
            var j = json
            j[key] = value
            let data = try JSONSerialization.data(withJSONObject: j)
            do {
                _ = try PEFTAdapterConfig.settings(json: data, layers: 2)
                Issue.record("\(key) = \(value) was accepted")
            } catch let e as ConfigurationError {
                #expect(e.message.contains(expected) && !e.message.contains("\n"), "\(key): \(e.message)")
            }
        }
        #expect(throws: ConfigurationError.self) { try PEFTAdapterConfig.settings(json: Data("{\"r\": 4}".utf8), layers: 2) }
        #expect(throws: ConfigurationError.self) { try PEFTAdapterConfig.settings(json: Data("not json".utf8), layers: 2) }
    }

    /// An adapter whose tensors do not fit the base (another rank, another width), a
    /// missing weights file and a missing adapter are checkpoint errors naming the file.
    @Test func adapterThatDoesNotFitTheBase() throws {
        let base = try Self.fixture("hf_tiny"), adapter = try Self.fixture("peft_lora")
        let dir = Self.temp("misfit")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: adapter, to: dir)
        let configURL = dir.appendingPathComponent(Checkpoint.adapterConfigFile)
        var j = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        j["r"] = 8
        try JSONSerialization.data(withJSONObject: j).write(to: configURL)
        CheckpointTests.expectError(.shapeMismatch, naming: Checkpoint.adapterWeightsFile) { _ = try Checkpoint.loadModel(from: base, adapter: dir) }
        j["r"] = 4
        j["target_modules"] = ["q_proj", "v_proj", "down_proj", "up_proj"]
        try JSONSerialization.data(withJSONObject: j).write(to: configURL)
        CheckpointTests.expectError(.missingTensor, naming: Checkpoint.adapterWeightsFile) { _ = try Checkpoint.loadModel(from: base, adapter: dir) }
        j["target_modules"] = ["q_proj", "v_proj"]
        try JSONSerialization.data(withJSONObject: j).write(to: configURL)
        CheckpointTests.expectError(.unexpectedTensor, naming: Checkpoint.adapterWeightsFile) { _ = try Checkpoint.loadModel(from: base, adapter: dir) }
        j["target_modules"] = ["q_proj"]
        j["use_dora"] = true
        try JSONSerialization.data(withJSONObject: j).write(to: configURL)
        CheckpointTests.expectError(.unsupportedConfig, naming: Checkpoint.adapterConfigFile) { _ = try Checkpoint.loadModel(from: base, adapter: dir) }
        try FileManager.default.removeItem(at: configURL)
        CheckpointTests.expectError(.missingFile, naming: Checkpoint.adapterConfigFile) { _ = try Checkpoint.loadModel(from: base, adapter: dir) }
    }

    /// Not a test of its own: with `SUBSPACE_PEFT_EXPORT=DIR` set, trains a LoRA adapter on
    /// hf_tiny and writes the checkpoint to `DIR/ckpt` and our logits to
    /// `DIR/expected_logits.safetensors`, for
    /// `scripts/check_peft_adapter.py DIR/ckpt --expect-logits DIR/expected_logits.safetensors`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SUBSPACE_PEFT_EXPORT"] != nil))
    func exportForPEFT() throws {
        let out = URL(fileURLWithPath: ProcessInfo.processInfo.environment["SUBSPACE_PEFT_EXPORT"]!)
        let base = try Checkpoint.loadModel(from: try Self.fixture("hf_tiny"))
        let settings = AdapterSettings(rank: 4, alpha: 16, rsLoRA: true, targets: ["q_proj", "k_proj", "o_proj", "up_proj"])
        let model = try LlamaModel(config: base.config, seed: 3, operators: settings.operators())
        try model.loadDense(from: base)
        let opt = RoutedOptimizer(fallback: AdamW(learningRate: 1e-2))
        let trainer = try Trainer(model: model, optimizer: opt, options: StepOptions())
        var r = RandomStream(seed: 5)
        for _ in 0..<5 { _ = try trainer.trainStep([randomBatch(vocab: 64, batch: 2, seq: 12, seed: r.next())]) }
        try Checkpoint.save(to: out.appendingPathComponent("ckpt"), model: model, adapter: settings)
        let x = randomBatch(vocab: 64, batch: 2, seq: 12, seed: 99)
        let ids = Tensor(shape: [x.batch, x.seq], values: x.tokens.map { Float($0) })
        try SafeTensorsFile.write([("input_ids", ids), ("logits", try model.logits(x))], to: out.appendingPathComponent("expected_logits.safetensors"))
    }
}

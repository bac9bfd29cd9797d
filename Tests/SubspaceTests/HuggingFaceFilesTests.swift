import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// A run's checkpoint carries what transformers needs to load it whole: `AutoTokenizer` reads
/// `tokenizer.json` with `tokenizer_config.json`, and `generate()` reads its stopping and
/// padding ids from `generation_config.json`, so neither needs extra arguments. (Checked
/// against transformers 5.24 by hand: `AutoTokenizer.from_pretrained(dir)` encodes as we do
/// and `generate(**ids, do_sample=False)` runs without warnings and returns our greedy tokens.)
@Suite struct HuggingFaceFilesTests {
    @Test func checkpointHasTokenizerAndGenerationConfigs() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-hf-files-\(getpid())")
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let words = ["the", "king", "queen", "castle", "night", "sea", "moon", "men", "rose", "above"]
        var rng = RandomStream(seed: 1)
        let text = (0..<3000).map { _ in words[rng.int(words.count)] }.joined(separator: " ")
        try text.write(to: root.appendingPathComponent("c.txt"), atomically: true, encoding: .utf8)
        var c = RunConfig(model: LlamaConfig(dim: 32, layers: 1, heads: 2, ffnDim: 64, vocab: 300, maxSeq: 32), data: root.appendingPathComponent("c.txt").path)
        c.steps = 2; c.batch = 2; c.seq = 16; c.warmup = 0; c.evalEvery = 0
        let out = root.appendingPathComponent("run")
        _ = try TrainingRun(config: c, outDir: out).run()
        let ck = out.appendingPathComponent("checkpoint")
        func json(_ name: String) throws -> [String: Any] {
            try #require(JSONSerialization.jsonObject(with: Data(contentsOf: ck.appendingPathComponent(name))) as? [String: Any])
        }
        let tok = try TokenizerJSON.load(path: ck.appendingPathComponent("tokenizer.json").path)
        let eos = try #require(tok.endOfTextID)
        let gen = try json("generation_config.json")
        #expect(gen["eos_token_id"] as? Int == eos && gen["bos_token_id"] as? Int == eos && gen["pad_token_id"] as? Int == eos)
        let tc = try json("tokenizer_config.json")
        #expect(tc["eos_token"] as? String == "<|endoftext|>" && tc["pad_token"] as? String == "<|endoftext|>")
        #expect(tc["model_max_length"] as? Int == 32 && tc["tokenizer_class"] as? String == "PreTrainedTokenizerFast")
        let cfg = try Checkpoint.loadConfig(from: ck)
        #expect(cfg.specialTokens.eos == [eos] && cfg.specialTokens.bos == eos)
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Checks `LlamaModel` against transformers' `LlamaForCausalLM` (float32, eager attention)
/// on the fixtures written by `scripts/make_llama_fixtures.py`: logits, mean loss and the
/// gradient of every parameter for one batch.
@Suite("LlamaParity", .serialized)
struct LlamaParityTests {
    /// The fixture's `config` metadata.
    struct FixtureConfig: Decodable {
        let dim, layers, heads, kvHeads, ffnDim, vocab, maxSeq, batch, seq: Int
        let ropeTheta: Double
        let normEps: Float
        let initStd: Float
        let tiedEmbeddings: Bool

        var llama: LlamaConfig {
            LlamaConfig(
                dim: dim, layers: layers, heads: heads, kvHeads: kvHeads, ffnDim: ffnDim, vocab: vocab,
                maxSeq: maxSeq, ropeTheta: ropeTheta, normEps: normEps, tiedEmbeddings: tiedEmbeddings,
                initStd: initStd)
        }
    }

    struct Fixture {
        let file: SafeTensorsFile
        let config: FixtureConfig
        let batch: TokenBatch
    }

    static func fixture(_ name: String) throws -> Fixture {
        let url = try #require(
            Bundle.module.url(forResource: "llama_\(name)", withExtension: "safetensors", subdirectory: "Fixtures"),
            "missing fixture llama_\(name).safetensors; run scripts/make_llama_fixtures.py")
        let file = try SafeTensorsFile.load(url: url)
        let json = try #require(file.metadata["config"])
        let config = try JSONDecoder().decode(FixtureConfig.self, from: Data(json.utf8))
        let inputs = try file.integers("inputs"), targets = try file.integers("targets")
        #expect(inputs.shape == [config.batch, config.seq] && targets.shape == inputs.shape)
        let batch = TokenBatch(
            tokens: inputs.values.map { Int32($0) }, targets: targets.values.map { Int32($0) },
            batch: config.batch, seq: config.seq)
        return Fixture(file: file, config: config, batch: batch)
    }

    /// A model holding the fixture's weights; checks that the fixture has exactly the
    /// model's parameters.
    static func model(_ f: Fixture) throws -> LlamaModel {
        let model = try LlamaModel(config: f.config.llama)
        let reserved: Set<String> = ["inputs", "targets", "logits", "loss"]
        let weights = f.file.names.filter { !$0.hasPrefix("grad.") && !reserved.contains($0) }
        #expect(Set(weights) == Set(model.parameters.map(\.name)))
        for name in weights {
            let p = try #require(model.parameter(named: name), "model has no parameter \(name)")
            let w = try f.file.tensor(name)
            try #require(w.shape == p.shape, "\(name): fixture \(w.shape), model \(p.shape)")
            p.value.assign(w)
        }
        return model
    }

    static func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Float {
        precondition(a.count == b.count)
        var m: Float = 0
        for i in 0..<a.count { m = max(m, abs(a[i] - b[i])) }
        return m
    }

    static func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
        precondition(a.count == b.count)
        var num = 0.0, den = 0.0
        for i in 0..<a.count {
            let d = Double(a[i]) - Double(b[i])
            num += d * d
            den += Double(b[i]) * Double(b[i])
        }
        return (num / max(den, 1e-300)).squareRoot()
    }

    @Test("logits, loss and gradients match transformers", arguments: ["mha", "gqa"])
    func parity(_ name: String) throws {
        let f = try Self.fixture(name)
        let model = try Self.model(f)
        let c = f.config

        // Logits.
        let logits = try model.logits(f.batch)
        let refLogits = try f.file.tensor("logits")
        #expect(logits.count == c.batch * c.seq * c.vocab && refLogits.count == logits.count)
        let logitDiff = Self.maxAbsDiff(logits, refLogits)
        #expect(logitDiff <= 1e-5, "\(name): logits max |diff| \(logitDiff)")

        // Loss: the evaluation path and the training forward.
        let refLoss = try f.file.tensor("loss")[0]
        let eval = try model.loss(f.batch)
        #expect(eval.tokens == c.batch * c.seq)
        let evalRel = abs(eval.loss - Double(refLoss)) / Double(refLoss)
        #expect(evalRel <= 1e-6, "\(name): eval loss \(eval.loss) vs \(refLoss)")
        model.zeroGradients()
        let loss = try model.forward(f.batch)
        let lossRel = abs(Double(loss) - Double(refLoss)) / Double(refLoss)
        #expect(lossRel <= 1e-6, "\(name): loss \(loss) vs \(refLoss)")

        // Gradients.
        model.backward()
        var report: [String] = []
        var worst = (name: "", rel: 0.0)
        for p in model.parameters {
            let ref = try f.file.tensor("grad." + p.name)
            let g = try #require(p.grad, "\(p.name) has no gradient")
            try #require(g.shape == ref.shape, "\(p.name): gradient shape \(g.shape) vs \(ref.shape)")
            let rel = Self.relativeError(g, ref)
            let absDiff = Self.maxAbsDiff(g, ref)
            #expect(rel <= 1e-5, "\(name): grad \(p.name) relative error \(rel) (max |diff| \(absDiff))")
            report.append("  \(p.name): rel \(String(format: "%.3e", rel)), max |diff| \(String(format: "%.3e", absDiff))")
            if rel > worst.rel { worst = (p.name, rel) }
        }
        print("""
        LlamaParity[\(name)]: logits max |diff| \(logitDiff), loss \(loss) vs \(refLoss) (rel \(lossRel)), \
        eval loss rel \(evalRel), worst gradient \(worst.name) rel \(worst.rel)
        \(report.joined(separator: "\n"))
        """)
    }

    /// A second forward/backward on the same model accumulates exactly twice the gradient,
    /// and `zeroGradients` resets it (guards against stale activation or gradient buffers).
    @Test("gradients accumulate across backward passes", arguments: ["gqa"])
    func accumulation(_ name: String) throws {
        let f = try Self.fixture(name)
        let model = try Self.model(f)
        try model.forward(f.batch)
        model.backward()
        try model.forward(f.batch)
        model.backward()
        for p in model.parameters {
            let ref = try f.file.tensor("grad." + p.name)
            let doubled = Tensor(shape: ref.shape, values: ref.array.map { 2 * $0 })
            let rel = Self.relativeError(try #require(p.grad), doubled)
            #expect(rel <= 1e-3, "\(p.name): accumulated gradient relative error \(rel)")
        }
        model.zeroGradients()
        try model.forward(f.batch)
        model.backward()
        for p in model.parameters {
            let rel = Self.relativeError(try #require(p.grad), try f.file.tensor("grad." + p.name))
            #expect(rel <= 1e-3, "\(p.name): gradient after zeroing, relative error \(rel)")
        }
    }
}

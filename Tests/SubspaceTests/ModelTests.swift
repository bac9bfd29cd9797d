import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

func smallConfig(kvHeads: Int = 2, tied: Bool = false, std: Float = 0.3) -> LlamaConfig {
    LlamaConfig(dim: 16, layers: 2, heads: 4, kvHeads: kvHeads, ffnDim: 24, vocab: 20, maxSeq: 8, tiedEmbeddings: tied, initStd: std)
}

func randomBatch(vocab: Int, batch: Int, seq: Int, seed: UInt64) -> TokenBatch {
    var r = RandomStream(seed: seed)
    let toks = (0..<(batch * seq)).map { _ in Int32(r.int(vocab)) }
    let tgts = (0..<(batch * seq)).map { _ in Int32(r.int(vocab)) }
    return TokenBatch(tokens: toks, targets: tgts, batch: batch, seq: seq)
}

@Suite struct ModelTests {
    /// Whole-model finite-difference check: every parameter, sampled coordinates.
    @Test(arguments: [(2, false), (4, true), (1, false)])
    func wholeModelGradient(kvHeads: Int, tied: Bool) throws {
        let model = try LlamaModel(config: smallConfig(kvHeads: kvHeads, tied: tied), seed: 3)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        try model.forward(batch)
        model.backward()
        for p in model.parameters {
            let g = try #require(p.grad)
            let c = finiteDifference(p.value, analytic: g, samples: 12, h: 5e-3) {
                (try? model.loss(batch).loss) ?? .nan
            }
            let err = relativeError(c.analytic, c.numeric)
            #expect(err < 3e-2, "\(p.name): relative error \(err)")
        }
    }

    @Test func overfitsOneBatch() throws {
        let c = LlamaConfig(dim: 32, layers: 2, heads: 4, ffnDim: 64, vocab: 32, maxSeq: 16)
        let model = try LlamaModel(config: c, seed: 1)
        let trainer = try Trainer(model: model, optimizer: RoutedOptimizer(fallback: AdamW(learningRate: 1e-2, weightDecay: 0)), options: StepOptions())
        let batch = randomBatch(vocab: 32, batch: 2, seq: 16, seed: 2)
        var loss: Float = 0
        for _ in 0..<150 { loss = try trainer.trainStep([batch]).loss }
        #expect(loss < 0.05, "final loss \(loss)")
    }

    @Test func parameterNamesRolesAndShapes() throws {
        let model = try LlamaModel(config: LlamaConfig.preset("tiny"))
        #expect(model.parameters.count == 1 + 4 * 9 + 2)
        #expect(model.parameters.reduce(0) { $0 + $1.count } == model.config.parameterCount)
        let q = try #require(model.parameter(named: "model.layers.3.self_attn.q_proj.weight"))
        #expect(q.role == .attention && q.shape == [256, 256] && q.layerIndex == 3)
        let down = try #require(model.parameter(named: "model.layers.3.mlp.down_proj.weight"))
        #expect(down.role == .mlp && down.shape == [256, 688])
        #expect(model.parameter(named: "model.embed_tokens.weight")?.role == .embedding)
        #expect(model.parameter(named: "model.norm.weight")?.role == .norm)
        #expect(model.parameter(named: "lm_head.weight")?.shape == [4096, 256])
        // HF init: std 0.02 for matrices, ones for norms.
        let e = try #require(model.embedding).value
        let mean = e.array.reduce(0, +) / Float(e.count)
        let std = (e.array.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(e.count)).squareRoot()
        #expect(abs(std - 0.02) < 5e-4 && abs(mean) < 5e-4)
        #expect(model.finalNorm.value.array.allSatisfy { $0 == 1 })
    }

    @Test func presetSizes() throws {
        // GaLore's names: the counts land near the advertised sizes.
        let m60 = try LlamaConfig.preset("llama60m").parameterCount
        #expect(m60 > 55_000_000 && m60 < 60_000_000)
        let b1 = try LlamaConfig.preset("llama1b").parameterCount
        #expect(b1 > 1_300_000_000 && b1 < 1_400_000_000)
        let b7 = try LlamaConfig.preset("llama7b").parameterCount
        #expect(b7 > 6_700_000_000 && b7 < 6_800_000_000)
    }

    @Test func activationAccountingMatchesAllocation() throws {
        let c = smallConfig()
        let model = try LlamaModel(config: c)
        try model.forward(randomBatch(vocab: 20, batch: 3, seq: 7, seed: 1))
        #expect(model.activationBytes == LlamaActivations.bytes(config: c, batch: 3, seq: 7))
    }

    @Test func impossibleConfigurationsAreTypedErrors() throws {
        func err(_ c: LlamaConfig) -> String? {
            do { try c.validate(); return nil } catch { return "\(error)" }
        }
        #expect(err(LlamaConfig(dim: 30, layers: 1, heads: 4, ffnDim: 8, vocab: 10, maxSeq: 8))?.contains("not divisible") == true)
        #expect(err(LlamaConfig(dim: 32, layers: 1, heads: 4, kvHeads: 3, ffnDim: 8, vocab: 10, maxSeq: 8))?.contains("must divide") == true)
        #expect(err(LlamaConfig(dim: 32, layers: 0, heads: 4, ffnDim: 8, vocab: 10, maxSeq: 8))?.contains("layers must be positive") == true)
        #expect(err(LlamaConfig(dim: 32, layers: 1, heads: 4, ffnDim: 8, vocab: 0, maxSeq: 8))?.contains("vocab") == true)
        #expect(throws: ConfigurationError.self) { try LlamaModel(config: LlamaConfig(dim: 12, layers: 1, heads: 4, ffnDim: 8, vocab: 10, maxSeq: 8)) }
        let model = try LlamaModel(config: smallConfig())
        #expect(throws: ConfigurationError.self) { try model.forward(randomBatch(vocab: 20, batch: 1, seq: 9, seed: 1)) }
        #expect(throws: ConfigurationError.self) { try model.forward(TokenBatch(tokens: [25], targets: [1], batch: 1, seq: 1)) }
        #expect(throws: ConfigurationError.self) { try LlamaConfig.preset("llama-unknown") }
    }
}

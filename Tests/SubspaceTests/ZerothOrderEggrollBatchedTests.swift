import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// EGGROLL's batched population forward: every member in one stacked pass gives the same
/// fitnesses as perturbing the weights in place member by member, whatever the chunking,
/// with tied or untied embeddings and under gradient accumulation; a whole generation then
/// updates the weights alike.
@Suite struct ZerothOrderEggrollBatchedTests {
    typealias Z = ZerothOrderTests

    static func rule(_ model: LlamaModel, _ s: ZerothOrderSettings, gradAccum: Int = 1) throws -> EggrollStep {
        var o = Z.options(lr: 1e-2, s)
        o.gradAccum = gradAccum
        return try EggrollStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: o)
    }

    /// Fitnesses of one generation, evaluated both ways on the same weights.
    static func bothWays(
        config: LlamaConfig, chunk: Int?, rank: Int = 2, batches: [TokenBatch]
    ) throws -> (batched: [Double], sequential: [Double], base: Double) {
        let model = try LlamaModel(config: config, seed: 3)
        let generation = ZerothOrderNoise.stepStream(seed: 7, step: 0)
        func settings(_ f: PopulationForward) -> ZerothOrderSettings {
            .init(rank: rank, population: 8, sigma: 5e-2, forward: f, populationChunk: chunk)
        }
        let b = try rule(model, settings(.batched), gradAccum: batches.count).fitnesses(batches, generation: generation)
        let s = try rule(model, settings(.sequential), gradAccum: batches.count).fitnesses(batches, generation: generation)
        return (b, s, try model.loss(batches[0]).loss)
    }

    static func expectSame(_ r: (batched: [Double], sequential: [Double], base: Double), _ label: String) {
        let diff = zip(r.batched, r.sequential).map { abs($0 - $1) }.max()!
        #expect(diff < 1e-5, "\(label): batched and sequential fitnesses differ by \(diff)")
        // The members really run different weights: the comparison could fail.
        let spread = r.batched.map { abs(-$0 - r.base) }.max()!
        #expect(spread > 1e-3, "\(label): perturbations moved the loss by only \(spread)")
    }

    @Test(arguments: [nil, 1, 3, 8] as [Int?])
    func batchedEqualsSequential(chunk: Int?) throws {
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        Self.expectSame(try Self.bothWays(config: Z.config, chunk: chunk, batches: [batch]), "chunk \(chunk.map(String.init) ?? "auto")")
    }

    @Test func tiedEmbeddingsAndAccumulation() throws {
        var c = Z.config
        c.tiedEmbeddings = true
        let batches = [randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4), randomBatch(vocab: 16, batch: 2, seq: 6, seed: 5)]
        Self.expectSame(try Self.bothWays(config: c, chunk: 3, rank: 1, batches: batches), "tied, two micro-batches")
    }

    /// Many rows per member, so that logits chunks and the rows split over cores straddle
    /// member boundaries.
    @Test func longMembersStraddleChunks() throws {
        let c = LlamaConfig(dim: 16, layers: 2, heads: 2, ffnDim: 24, vocab: 300, maxSeq: 64, initStd: 0.3)
        let batch = randomBatch(vocab: 300, batch: 3, seq: 64, seed: 9)
        Self.expectSame(try Self.bothWays(config: c, chunk: 5, batches: [batch]), "long members")
    }

    /// A member with no delta reproduces `model.loss`, and zero-scale deltas change nothing.
    @Test func unperturbedMembersMatchLoss() throws {
        let model = try LlamaModel(config: Z.config, seed: 3)
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        let layout = PopulationLayout(members: 3)
        let p = try #require(model.parameter(named: "model.layers.0.self_attn.q_proj.weight"))
        let d = PopulationLayout.LowRank(a: Tensor(shape: [p.shape[0], 1], repeating: 1), b: Tensor(shape: [p.shape[1], 1], repeating: 1), scale: 0)
        layout.setLowRank(p.name, [d, d, d])
        let losses = try model.populationLoss(batch, layout)
        let base = try model.loss(batch).loss
        #expect(losses.allSatisfy { abs($0 - base) < 1e-6 }, "\(losses) vs \(base)")
    }

    /// One whole generation, batched or sequential, updates the weights alike.
    @Test func generationUpdatesAlike() throws {
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        func run(_ f: PopulationForward) throws -> [String: [Float]] {
            let model = try LlamaModel(config: Z.config, seed: 3)
            let r = try Self.rule(model, .init(rank: 2, population: 8, sigma: 5e-2, forward: f, populationChunk: 3))
            for _ in 0..<3 { _ = try r.trainStep([batch]) }
            return Z.weights(model)
        }
        let (b, s) = (try run(.batched), try run(.sequential))
        let before = Z.weights(try LlamaModel(config: Z.config, seed: 3))
        for (name, w) in b {
            #expect(maxAbsDiff(w, s[name]!) < 1e-5, "\(name)")
            #expect(maxAbsDiff(w, before[name]!) > 1e-6, "\(name) did not move")
        }
    }

    /// The default chunk fills the arena budget; a given one is capped by the population.
    @Test func chunkSizes() {
        let s = ZerothOrderSettings()
        let budget = ZerothOrderSettings.populationArenaBudget
        #expect(s.populationChunk(population: 64) { $0 * (budget / 5 + 1) } == 4)
        #expect(s.populationChunk(population: 64) { _ in 2 * budget } == 1)
        #expect(s.populationChunk(population: 6) { _ in 1 } == 6)
        #expect(ZerothOrderSettings(populationChunk: 16).populationChunk(population: 6) { _ in 1 } == 6)
        #expect(ZerothOrderSettings(populationChunk: 2).populationChunk(population: 6) { _ in 1 } == 2)
        #expect(throws: ConfigurationError.self) { try ZerothOrderSettings(populationChunk: 0).validate(for: .eggroll) }
    }

    /// Adapter factors are not what the stacked forward perturbs: asked for, it is refused
    /// in one line; by default the rule falls back to the sequential evaluation.
    @Test func adaptersFallBackToSequential() throws {
        let ops = LinearOperators.dense.replacing(where: { _ in true }, with: LoRALinear.Kind(rank: 2, scaling: 1)).freezingOthers()
        let model = try LlamaModel(config: Z.config, seed: 3, operators: ops)
        #expect(try Self.rule(model, .init(population: 4)).forward == .sequential)
        #expect(throws: ConfigurationError.self) { try Self.rule(model, .init(population: 4, forward: .batched)) }
        #expect(try Self.rule(try LlamaModel(config: Z.config, seed: 3), .init(population: 4)).forward == .batched)
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// CoMERA's TTM embedding (`TensorTrainEmbedding`): the per-token lookup against a naive
/// contraction, gradients, permanent pruning, shapes and padding, and the whole model.
@Suite struct ComeraEmbeddingTests {
    /// A TTM embedding of `vocab` rows of dim 16 (modes 2 x 2 x 2 x 2), rank `rank`, with gates
    /// in (0.5, 1.5), and when `prune` two of them under the threshold (one negative).
    static func embedding(vocab: Int = 30, rank: Int = 3, prune: Bool = false, seed: UInt64 = 1) throws -> TensorTrainEmbedding {
        var s = ComeraSettings.Embedding(); s.rank = rank
        let e = try TensorTrainEmbedding.Kind(settings: s, threshold: 1e-2).make(vocab: vocab, dim: 16, trainable: true, initializer: ParameterInitializer(seed: seed, std: 0.02))
        var r = RandomStream(seed: seed &+ 3)
        for g in e.gates { r.fillUniform(g.value, 0.5, 1.5) }
        if prune { e.gates[0].value.data[1] = 0.004; e.gates[1].value.data[0] = -0.006 }
        for c in e.cores { r.fillNormal(c.value, std: 0.7) }
        return e
    }

    /// E[t, j] by the definition, in Double: a row vector through the cores' (i_k, j_k) slices,
    /// each gate applied unless its rank is inactive.
    static func naiveRow(_ e: TensorTrainEmbedding, _ t: Int) -> [Double] {
        let s = e.shape, i = e.digits(t)
        var out: [Double] = []
        for j in 0..<s.inFeatures {
            var jd = [Int](repeating: 0, count: s.order), rest = j
            for k in stride(from: s.order - 1, through: 0, by: -1) { jd[k] = rest % s.inModes[k]; rest /= s.inModes[k] }
            var v = [1.0]
            for k in 0..<s.order {
                let (r0, m, n, r1) = (s.ranks[k], s.outModes[k], s.inModes[k], s.ranks[k + 1])
                var w = [Double](repeating: 0, count: r1)
                for a in 0..<r0 {
                    for b in 0..<r1 { w[b] += v[a] * Double(e.cores[k].value.data[((a * m + i[k]) * n + jd[k]) * r1 + b]) }
                }
                if k < e.gates.count { for b in 0..<r1 { w[b] *= e.isActive(gate: k, rank: b) ? Double(e.gates[k].value.data[b]) : 0 } }
                v = w
            }
            out.append(v[0])
        }
        return out
    }

    static func lookup(_ e: TensorTrainEmbedding, _ tokens: [Int32], mode: ForwardMode = .inference) -> Tensor {
        let out = Tensor(zeros: [tokens.count, e.dim])
        tokens.withUnsafeBufferPointer { e.forward(tokens: $0.baseAddress!, out: out.data, count: tokens.count, mode: mode) }
        return out
    }

    /// Rows of repeated tokens are the definition's, the vocabulary is padded to 32 = 2^3 x 4,
    /// and the dense table is every real row.
    @Test func lookupIsTheTTMatrixRow() throws {
        let e = try Self.embedding(prune: true)
        #expect(e.shape.outModes == [2, 2, 2, 4] && e.shape.inModes == [2, 2, 2, 2] && e.shape.ranks == [1, 3, 3, 3, 1])
        #expect(e.vocab == 30 && e.shape.outFeatures == 32)
        let tokens: [Int32] = [29, 0, 7, 29, 13, 7, 29]
        let y = Self.lookup(e, tokens)
        for (p, t) in tokens.enumerated() {
            let want = Self.naiveRow(e, Int(t)).map(Float.init)
            #expect(relativeError(Array(y.array[(p * 16)..<((p + 1) * 16)]), want) < 1e-6, "token \(t)")
        }
        let (unique, index) = TensorTrainEmbedding.deduplicate(tokens, count: tokens.count)
        #expect(unique == [29, 0, 7, 13] && index == [0, 1, 2, 0, 3, 2, 0])
        let table = e.denseTable()
        #expect(table.shape == [30, 16])
        #expect(Array(table.array[(13 * 16)..<(14 * 16)]) == Array(y.array[(4 * 16)..<(5 * 16)]))
    }

    /// Central differences of a probe of the rows, for every core and gate (pruned gates and
    /// their rank slices: exactly zero gradient), with repeated tokens.
    @Test func finiteDifferences() throws {
        let e = try Self.embedding(prune: true)
        let tokens: [Int32] = [3, 17, 3, 29, 0, 17, 3]
        let w = randomTensor([tokens.count, 16], seed: 6)
        func f() -> Double { let y = Self.lookup(e, tokens); return withExtendedLifetime(y) { probe(y.data, w) } }
        tokens.withUnsafeBufferPointer { e.backward(tokens: $0.baseAddress!, dOut: w.data, count: tokens.count) }
        for p in e.cores + e.gates {
            let c = finiteDifference(p.value, analytic: p.grad!, samples: 40, h: p.shape.count == 1 ? 1e-3 : 1e-2, f)
            #expect(relativeError(c.analytic, c.numeric) < 2e-3, "\(p.name): \(relativeError(c.analytic, c.numeric))")
        }
        #expect(e.masks.allSatisfy { $0.grad == nil })
        #expect(e.gates[0].grad!.data[1] == 0 && e.gates[1].grad!.data[0] == 0)
        let r = e.shape.ranks[1]
        #expect(stride(from: 1, to: e.cores[0].count, by: r).allSatisfy { e.cores[0].grad!.data[$0] == 0 })
    }

    /// Once a gate falls under the threshold in a training forward, its rank is gone for
    /// good: moving the gate back up changes nothing, and neither does its slice of the cores.
    /// An inference forward never prunes (but a gate under the threshold is inactive there too).
    @Test func pruningIsPermanentAndExact() throws {
        let e = try Self.embedding()
        let tokens: [Int32] = [1, 5, 9, 22]
        let g = e.gates[1].value
        let saved = g.data[2]
        g.data[2] = 0.009
        let inference = Self.lookup(e, tokens)
        #expect(e.masks[1].value.data[2] == 1)
        let training = Self.lookup(e, tokens, mode: .training)
        #expect(e.masks[1].value.data[2] == 0 && training.array == inference.array)
        #expect(e.activeRanks == [3, 2, 3])
        g.data[2] = saved  // an optimizer carries it back
        #expect(!e.isActive(gate: 1, rank: 2) && e.activeRanks == [3, 2, 3])
        let r = e.shape.ranks[2]
        for i in stride(from: 2, to: e.cores[1].count, by: r) { e.cores[1].value.data[i] = 1e3 }  // rank 2's slice of G_2
        #expect(Self.lookup(e, tokens, mode: .training).array == inference.array)
        // The same rank zeroed by hand in a fresh copy: the same rows, bit for bit.
        let f = try Self.embedding()
        f.gates[1].value.data[2] = 0
        #expect(Self.lookup(f, tokens).array == inference.array)
        #expect(e.activeParameterCount == 1 * 2 * 2 * 3 + 3 * 2 * 2 * 2 + 2 * 2 * 2 * 3 + 3 * 4 * 2 * 1)
    }

    /// Modes: V as it is when it factors, padded otherwise; d must factor exactly; explicit
    /// modes that do not cover V or d, and bad ranks, are refused.
    @Test func shapesPaddingAndRefusals() throws {
        typealias E = ComeraSettings.Embedding
        #expect(E.paddedVocabModes(4096) == [8, 8, 8, 8])
        #expect(E.paddedVocabModes(32000) == [10, 10, 16, 20])
        let p = try #require(E.paddedVocabModes(4099))
        #expect(p.reduce(1, *) >= 4099 && p.reduce(1, *) < 4200 && p.last! <= 18, "\(p)")
        let tiny = try E().shape(vocab: 4096, dim: 256)
        #expect(tiny.outModes == [8, 8, 8, 8] && tiny.inModes == [4, 4, 4, 4] && tiny.ranks == [1, 32, 32, 32, 1])
        var s = E(); s.vocabModes = [16, 20, 10, 10]; s.dimModes = [4, 4, 8, 6]
        let ref = try s.shape(vocab: 30522, dim: 768)
        // The reference's BERT embedding: 167,808 TT parameters against 23.4 M.
        #expect(ref.coreParameters(internalRanks: ref.internalRanks) == 16 * 4 * 32 + 32 * 20 * 4 * 32 + 32 * 10 * 8 * 32 + 32 * 10 * 6)
        var bad: [E] = []
        var b = E(); b.vocabModes = [2, 2, 2, 2]; b.dimModes = [2, 2, 2, 2]; bad.append(b)  // 16 < 30
        b = E(); b.vocabModes = [2, 4, 4, 2]; b.dimModes = [2, 2, 2, 4]; bad.append(b)  // 32 != 16
        b = E(); b.vocabModes = [4, 8]; b.dimModes = [2, 2, 4]; bad.append(b)
        b = E(); b.rank = 0; bad.append(b)
        for e in bad { #expect(throws: ConfigurationError.self) { try e.shape(vocab: 30, dim: 16) } }
        #expect(throws: ConfigurationError.self) { try E().shape(vocab: 30, dim: 14) }  // 14 = 2 x 7
        b = E(); b.vocabModes = [8, 8]
        #expect(throws: ConfigurationError.self) { try b.validate() }
    }

    static func settings(rank: Int = 3) -> AdapterSettings {
        var s = ComeraSettings(); s.rank = rank
        var e = ComeraSettings.Embedding(); e.rank = 4
        s.embedding = e
        var a = AdapterSettings(method: .comera); a.comera = s
        return a
    }

    /// Through the whole model: the embedding's cores and gates against finite differences
    /// of the loss; no dense table exists; a tied head is refused in one line.
    @Test func wholeModelGradientsAndTiedRefusal() throws {
        let model = try LlamaModel(config: smallConfig(), seed: 3, operators: Self.settings().operators())
        #expect(model.embedding == nil && model.parameter(named: LlamaArchitecture.embeddingName) == nil)
        let e = try #require(model.tensorEmbedding)
        var r = RandomStream(seed: 40)
        for g in e.gates { r.fillUniform(g.value, 0.5, 1.5) }
        for c in e.cores { r.fillNormal(c.value, std: 0.6) }
        let res = try expectModelGradients(model, batch: randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(res.checked.contains("model.embed_tokens.tensor.factors.0") && res.checked.contains("model.embed_tokens.tensor.rank_parameters.2"))
        #expect(res.frozen.contains("model.embed_tokens.tensor.rank_masks.0"))
        #expect(model.tensorTrainSummary!.denseParameters == model.tensorTrainOperators.reduce(0) { $0 + $1.denseParameterCount } + 20 * 16)
        do {
            _ = try LlamaModel(config: smallConfig(tied: true), operators: Self.settings().operators())
            Issue.record("a tied head with a TT embedding was built")
        } catch let err as ConfigurationError { #expect(err.message.contains("untied") && !err.message.contains("\n")) }
        #expect(throws: ConfigurationError.self) { try Self.settings().validate(for: smallConfig(tied: true)) }
    }

    /// The planner prices the TT embedding exactly (cores and gates trained, masks frozen).
    @Test func plannerPricesTheEmbeddingExactly() throws {
        let config = LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, vocab: 40, maxSeq: 16)
        let plan = try AdapterRunTests.expectPlanMatchesAStep(config, Self.settings())
        #expect(plan.parameters < config.parameterCount - 40 * 32)
    }

    /// The embedding's gates take the gate penalty (only while active, masks included) and
    /// the gates' learning-rate scale; S and the dense size count the embedding.
    @Test func objectiveCountsTheEmbeddingGates() throws {
        let model = try LlamaModel(config: ComeraRunTests.config, seed: 2, operators: Self.settings().operators())
        let e = try #require(model.tensorEmbedding)
        var s = try #require(Self.settings().comera); s.lambda = 0.05; s.penalty = .sum
        e.gates[0].value.data[0] = 0.5
        e.masks[0].value.data[0] = 0  // pruned for good, though its gate is above the threshold
        let o = try ComeraObjective(model: model, settings: s, steps: 30)
        #expect(o.size == model.tensorTrainOperators.reduce(0) { $0 + $1.activeParameterCount } + e.activeParameterCount)
        let g = ComeraRunTests.adjusted(model, o, step: 0, loss: 4)
        #expect(g[e.gates[0].name]![0] == 1 && g[e.gates[0].name]![1] == 1.05)
        #expect(g[e.cores[0].name]!.allSatisfy { $0 == 1 })
        #expect(o.learningRateMultiplier(for: e.gates[1]) == s.gateLearningRateScale && o.learningRateMultiplier(for: e.cores[1]) == 1)
    }
}

import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// EGGROLL (float): fitness shaping, antithetic pairs, fresh noise per generation, the
/// one-generation update in closed form, and the low-rank estimate against the full-rank ES
/// estimate as the population grows.
@Suite struct ZerothOrderEggrollTests {
    typealias Z = ZerothOrderTests

    @Test func centredRanksAndZScore() {
        let r = EggrollStep.centredRanks([3, 1, 2, 10])
        #expect(maxAbsDiff(r.map(Float.init), [1.0 / 6, -0.5, -1.0 / 6, 0.5]) < 1e-7)
        let z = EggrollStep.zscore([1, 3])
        #expect(abs(z[0] + 1) < 1e-4 && abs(z[1] - 1) < 1e-4)
    }

    /// A pair's noise is the same with opposite signs for its two members (the rule moves
    /// +sigma E then -2 sigma E), E = A B^T / sqrt(r) has rank r, and the next generation
    /// draws other noise.
    @Test func noiseIsLowRankAndFreshEachGeneration() throws {
        let model = try LlamaModel(config: Z.config, seed: 3)
        let rule = try EggrollStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: Z.options(.init(rank: 2, population: 4)))
        let p = try #require(model.parameter(named: "model.layers.0.mlp.gate_proj.weight"))  // 16 x 8
        func noise(generation: Int, pair: Int) -> Tensor {
            let d = Parameter(name: p.name, role: p.role, value: Tensor(zeros: p.shape))
            rule.perturb(d, scale: 1, stream: EggrollStep.pairStream(ZerothOrderNoise.stepStream(seed: 7, step: generation), pair))
            return d.value
        }
        let e = noise(generation: 0, pair: 0)
        #expect(e.array == noise(generation: 0, pair: 0).array)
        #expect(e.array != noise(generation: 0, pair: 1).array)
        #expect(e.array != noise(generation: 1, pair: 0).array)
        let s = try Linalg.svd(e).s
        #expect(s[1] > 1e-3 && s[2] < 1e-5 * s[0])
    }

    /// One generation of two members equals its closed form: the member with the lower loss
    /// gets shaped fitness +1/2, the other -1/2, and the optimizer is handed
    /// -u = -(f~_0 - f~_1) sigma / sqrt(2) E_0, E_0 regenerated here.
    @Test func oneGenerationClosedForm() throws {
        let sigma: Float = 1e-2
        let model = try LlamaModel(config: Z.config, seed: 3)
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        let collector = GradientCollector()
        let rule = try EggrollStep(
            model: model, optimizer: RoutedOptimizer(fallback: collector),
            options: Z.options(.init(rank: 2, update: .optimizer, population: 2, sigma: sigma)))
        let pair = EggrollStep.pairStream(ZerothOrderNoise.stepStream(seed: 7, step: 0), 0)
        func loss(_ sign: Float) throws -> Double {
            let m = try LlamaModel(config: Z.config, seed: 3)
            for (q, p) in zip(m.parameters, model.parameters) {
                let d = Parameter(name: p.name, role: p.role, value: Tensor(zeros: p.shape))
                rule.perturb(d, scale: sign * sigma, stream: pair)
                for i in 0..<q.count { q.value.data[i] = p.value.data[i] + d.value.data[i] }
            }
            return try m.loss(batch).loss
        }
        let (plus, minus) = (try loss(1), try loss(-1))
        let shapedDiff: Float = plus < minus ? 1 : -1  // f~_0 - f~_1, fitness = -loss
        let report = try rule.trainStep([batch])
        #expect(abs(Double(report.loss) - (plus + minus) / 2) < 1e-5)
        for p in model.parameters {
            let d = Parameter(name: p.name, role: p.role, value: Tensor(zeros: p.shape))
            rule.perturb(d, scale: -shapedDiff * sigma / Float(2).squareRoot(), stream: pair)
            #expect(relativeError(collector.sums[p.name]!.map(Float.init), d.value.array) < 1e-5, "\(p.name)")
        }
    }

    /// The low-rank ES estimate approaches the full-rank one as the population grows: the
    /// direction handed to the optimizer (summed over generations, i.e. a population of
    /// 8 x 2,048 members of fresh noise) points along the full-rank ES estimate of the same size
    /// (dense Gaussian noise, same shaping) and along minus the backprop gradient (u ascends
    /// the fitness -L), which both approach for small sigma; a population of 8 does not.
    static let generations = 2048

    @Test func lowRankEstimateApproachesFullRankEstimate() throws {
        let sigma: Float = 1e-3
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        let model = try LlamaModel(config: Z.config, seed: 3)
        let g = try Z.gradient(model, batch)
        func lowRank(generations: Int) throws -> [Double] {
            let collector = GradientCollector()
            let rule = try EggrollStep(
                model: model, optimizer: RoutedOptimizer(fallback: collector),
                options: Z.options(.init(rank: 1, update: .optimizer, population: 8, sigma: sigma)))
            for _ in 0..<generations { _ = try rule.trainStep([batch]) }
            return model.parameters.flatMap { collector.sums[$0.name]!.map { -$0 } }
        }
        // Full-rank ES: the same antithetic, rank-shaped estimate with dense Gaussian noise.
        var full = [Double](repeating: 0, count: g.count)
        for gen in 0..<Self.generations {
            var f: [Double] = [], noise: [[Float]] = []
            let stream = ZerothOrderNoise.stepStream(seed: 99, step: gen)
            for k in 0..<4 {
                let e = model.parameters.flatMap { ZerothOrderNoise.gaussianTensor($0.shape, stream: stream.split("pair", index: UInt64(k)), name: $0.name).array }
                noise.append(e)
                for sign: Float in [1, -1] {
                    let m = try LlamaModel(config: Z.config, seed: 3)
                    var o = 0
                    for p in m.parameters { for i in 0..<p.count { p.value.data[i] += sign * sigma * e[o + i] }; o += p.count }
                    f.append(-(try m.loss(batch).loss))
                }
            }
            let shaped = EggrollStep.centredRanks(f)
            for k in 0..<4 { for i in full.indices { full[i] += (shaped[2 * k] - shaped[2 * k + 1]) * Double(noise[k][i]) } }
        }
        let small = try lowRank(generations: 1), large = try lowRank(generations: Self.generations)
        let cLarge = Z.cosine(large, full), cSmall = Z.cosine(small, full)
        // u ascends the fitness -L: it points along -grad L.
        let descent = g.map { -$0 }
        let cg = (Z.cosine(large, descent), Z.cosine(full, descent))
        #expect(cLarge > 0.6, "low rank vs full rank at \(8 * Self.generations) members: \(cLarge)")
        #expect(cSmall < cLarge, "\(cSmall) at 8 members, \(cLarge) at \(8 * Self.generations)")
        #expect(cg.0 > 0.75 && cg.1 > 0.75, "against the gradient: low rank \(cg.0), full rank \(cg.1)")
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite("GUM") struct GUMTests {
    static let layerName = "model.layers.0.mlp.up_proj.weight"

    /// The two branches' estimates weighted by their probabilities sum to G exactly.
    @Test(arguments: [ProjectionType.left, .std])
    func branchEstimatesAverageToTheGradient(type: ProjectionType) throws {
        let shape = [24, 16], q: Float = 0.3
        let gum = try GUM(rank: 4, fullRankProbability: q, projection: type)
        let g = randomTensor(shape, seed: 1)
        var proj = gum.makeProjector(for: Parameter(name: "w", role: .mlp, value: Tensor(zeros: shape)))
        proj.refresh(gradient: g, step: 0)
        let low = gum.estimate(g, projector: proj, fullRank: false), full = gum.estimate(g, projector: proj, fullRank: true)
        let mean = (0..<g.count).map { (1 - q) * low.data[$0] + q * full.data[$0] }
        #expect(relativeError(mean, g.array) < 1e-5)
        // The low-rank branch alone is biased by the complement.
        #expect(relativeError(low.array.map { $0 * (1 - q) }, g.array) > 0.3)
    }

    /// Monte Carlo over seeds on a fixed gradient, through the real update path with
    /// `orthogonalize: false` and momentum 0, so that the step is -lr·ratio·(the estimate):
    /// the mean step matches the full gradient step; the full-rank fraction matches q.
    @Test func updateIsUnbiasedInExpectation() throws {
        let shape = [24, 16], q: Float = 0.25, trials = 4000
        let g = randomTensor(shape, seed: 1)
        var sum = [Double](repeating: 0, count: g.count)
        var fullRank = 0
        var ratio: Float = 1
        for s in 0..<trials {
            let gum = try GUM(
                learningRate: 1, rule: MuonRule(momentum: 0, nesterov: false), rank: 4, updateGap: 10,
                fullRankProbability: q, seed: UInt64(s), orthogonalize: false)
            ratio = gum.rule.ratio(rows: 24, cols: 16)
            let p = Parameter(name: Self.layerName, role: .mlp, value: Tensor(zeros: shape))
            gum.update(p, gradient: g, lrScale: 1)
            if gum.states[p.name]!.fullRank { fullRank += 1 }
            for i in 0..<g.count { sum[i] -= Double(p.value.data[i] / ratio) }
        }
        let mean = sum.map { Float($0 / Double(trials)) }
        let err = relativeError(mean, g.array)
        let fraction = Double(fullRank) / Double(trials)
        print("GUM Monte Carlo (\(trials) seeds, q \(q)): mean-step relative error \(err), full-rank fraction \(fraction)")
        #expect(err < 0.06)
        #expect(abs(fraction - Double(q)) < 0.02)
        // GaLore's biased estimate (the low-rank branch without reweighting) is far off.
        var proj = try GUM(rank: 4).makeProjector(for: Parameter(name: "w", role: .mlp, value: Tensor(zeros: shape)))
        proj.refresh(gradient: g, step: 0)
        let biased = proj.projectBack(proj.project(g))
        let biasErr = relativeError(biased.array, g.array)
        print("GaLore low-rank estimate relative error \(biasErr)")
        #expect(biasErr > 5 * err)
    }

    @Test func samplingFractionAndUnits() throws {
        let q: Float = 0.2
        let gum = try GUM(fullRankProbability: q, seed: 5)
        var hits = 0, total = 0
        for layer in 0..<50 {
            let p = Parameter(name: "model.layers.\(layer).self_attn.q_proj.weight", role: .attention, value: Tensor(zeros: [1, 1]))
            let k = Parameter(name: "model.layers.\(layer).mlp.down_proj.weight", role: .mlp, value: Tensor(zeros: [1, 1]))
            for period in 0..<100 {
                let d = gum.isFullRank(p, period: period)
                #expect(d == gum.isFullRank(k, period: period))  // one draw per decoder layer
                if d { hits += 1 }
                total += 1
            }
        }
        let fraction = Double(hits) / Double(total)
        print("GUM sampling: full-rank fraction \(fraction) over \(total) layer-periods, q \(q)")
        #expect(abs(fraction - Double(q)) < 0.015)
        // Per-parameter sampling draws the matrices of a layer independently.
        let perParam = try GUM(fullRankProbability: 0.5, seed: 5, samplingUnit: .parameter)
        let a = Parameter(name: "model.layers.0.self_attn.q_proj.weight", role: .attention, value: Tensor(zeros: [1, 1]))
        let b = Parameter(name: "model.layers.0.self_attn.k_proj.weight", role: .attention, value: Tensor(zeros: [1, 1]))
        #expect((0..<64).contains { perParam.isFullRank(a, period: $0) != perParam.isFullRank(b, period: $0) })
    }

    /// Periods of K steps: the SVD, the draw and a fresh momentum at steps 0, K, 2K; state
    /// r(m + n) in low-rank periods and mn + mr in full-rank ones (left projection).
    @Test func periodsAndStateBytes() throws {
        let shape = [24, 16], m = 24, n = 16, r = 4, k = 3
        let gum = try GUM(rank: r, updateGap: k, fullRankProbability: 0.5, seed: 2)
        let p = Parameter(name: Self.layerName, role: .mlp, value: randomTensor(shape, seed: 1))
        var seen: Set<Bool> = []
        var lastP: [Float] = []
        for step in 0..<(k * 8) {
            gum.update(p, gradient: randomTensor(shape, seed: UInt64(100 + step)), lrScale: 1)
            let s = gum.states[p.name]!
            let period = step / k
            #expect(s.fullRank == gum.isFullRank(p, period: period))
            #expect(s.momentum!.shape == (s.fullRank ? shape : [r, n]))
            #expect(gum.stateBytes(for: p) == (s.fullRank ? m * n + m * r : r * (m + n)) * 4)
            let now = s.projector.matrix!.array
            #expect((now != lastP) == (step % k == 0), "projector changes only at period starts (step \(step))")
            lastP = now
            seen.insert(s.fullRank)
        }
        #expect(seen == [true, false])
    }

    @Test func checkpointRoundTripMidPeriod() throws {
        let shape = [16, 24]
        func make() throws -> GUM { try GUM(learningRate: 0.01, rank: 4, updateGap: 3, fullRankProbability: 0.5, seed: 4, weightDecay: 0.1) }
        for seed in 0..<4 {  // some runs end the saved period full-rank, some low-rank
            let a = try make(), b = try make()
            let pa = Parameter(name: "model.layers.\(seed).self_attn.o_proj.weight", role: .attention, value: randomTensor(shape, seed: 5))
            for s in 0..<4 { a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) }
            let saved = a.exportState(for: pa)
            #expect(Set(saved.keys) == ["step", "momentum_buffer", "ortho_matrix"])
            let pb = Parameter(name: pa.name, role: .attention, value: pa.value.copy())
            try b.importState(saved.mapValues { $0.copy() }, for: pb)
            for s in 4..<9 {
                a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
                b.update(pb, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
            }
            #expect(pa.value.array == pb.value.array)
        }
    }

    @Test func convergesOnLeastSquares() throws {
        let gum = try GUM(learningRate: 0.05, rank: 4, updateGap: 10, fullRankProbability: 0.25)
        let (initial, final) = leastSquaresRun(gum, shape: [24, 16], steps: 400, name: Self.layerName)
        print("GUM least squares: \(initial) -> \(final)")
        #expect(final < 0.05 * initial)
    }

    @Test func registry() throws {
        let routed = try OptimizerRegistry.make("gum", options: OptimizerOptions())
        let gum = try #require(routed.routes.first?.optimizer as? GUM)
        #expect(routed.fallback is AdamW)
        #expect(gum.learningRate == 0.02 && gum.rule.momentum == 0.95 && !gum.rule.nesterov)
        #expect(gum.rank == 128 && gum.updateGap == 200 && gum.fullRankProbability == 0.25 && gum.projection == .left)
        var o = OptimizerOptions(); o.fullRankProbability = 1
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("gum", options: o) }
        o = OptimizerOptions(); o.projectionType = "gaussian"
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("gum", options: o) }
    }
}

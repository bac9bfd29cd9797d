import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct QGaLoreTests {
    // MARK: INT4 projector storage

    /// q-galore-torch's `_quantize` (INT4, groups of 256) on a [16, 32] matrix whose second
    /// group is all positive (clamped zero point): the same codes, scales, zero points and
    /// dequantized values.
    @Test func int4MatchesQGaloreTorch() throws {
        let fx = BnbFixtures.qgalore
        let q = GroupQuantizedTensor(quantizing: try fx.tensor("int4.input"), bits: 4, groupSize: 256)
        #expect((0..<q.count).map { q.code($0) } == BnbFixtures.codes(try fx.tensor("int4.codes")))
        #expect(q.scales == (try fx.tensor("int4.scales")).array)
        #expect(q.zeros.map(Float.init) == (try fx.tensor("int4.zeros")).array)
        #expect(q.dequantized().array == (try fx.tensor("int4.dequant")).array)
        #expect(q.zeros[1] == 0)  // the all-positive group
        #expect(q.bytes == 256 + 2 * 5)
    }

    /// Groups whose range contains zero read back within half a step (scale / 2); codes pack
    /// 8 / bits per byte; a short last group is allowed; the byte formula holds.
    @Test(arguments: [1, 2, 4, 8])
    func roundTripWithinGroupError(bits: Int) throws {
        for shape in [[64, 8], [8, 40], [5, 7]] {
            let t = randomTensor(shape, seed: 8)
            t.data[0] = -abs(t.data[0]) - 0.1; t.data[1] = abs(t.data[1]) + 0.1  // each group spans 0
            for g in [256, 16] {
                for i in stride(from: 0, to: t.count, by: g) where i + 1 < t.count {
                    t.data[i] = -abs(t.data[i]) - 0.01; t.data[i + 1] = abs(t.data[i + 1]) + 0.01
                }
                let q = GroupQuantizedTensor(quantizing: t, bits: bits, groupSize: g)
                let y = q.dequantized()
                for i in 0..<t.count {
                    #expect(abs(y.data[i] - t.data[i]) <= q.scales[i / g] / 2 * (1 + 1e-4), "bits \(bits) group \(g) element \(i)")
                    #expect(Int(q.code(i)) <= q.maxCode)
                }
                #expect(q.bytes == GroupQuantizedTensor.byteCount(elements: t.count, bits: bits, groupSize: g))
                #expect(q.packed.count == (t.count * bits + 7) / 8)
            }
        }
        #expect(throws: ConfigurationError.self) { try GroupQuantizedTensor.validate(bits: 3, groupSize: 256) }
        #expect(throws: ConfigurationError.self) { try GroupQuantizedTensor.validate(bits: 4, groupSize: 0) }
    }

    // MARK: Parity with q-galore-torch

    static func fixtureOptimizer(rule: QGaLore.LazyRule = .reference) throws -> QGaLore {
        try QGaLore(
            learningRate: 0.01, eps: 1e-8, weightDecay: 0.1, rank: 8, updateGap: 1, scale: 0.25, bits: 4, groupSize: 256,
            threshold: 0.4, queueSize: 2, growth: 2, rule: rule, quantization: try StateQuantization(blockSize: 256, minimumSize: 256))
    }

    /// q-galore-torch 1.0's `QGaLoreAdamW8bit` (INT4 projector, lazy refresh with a window of
    /// 2, initial gap 1) for 7 steps on a [32, 40] matrix: SVDs at steps 0-4 (the first
    /// similarity is negative, so the gap doubles at steps 3 and 4, to 4), the weights after
    /// steps 3 and 7, and the final projector and moment state.
    @Test(arguments: [QGaLore.LazyRule.reference, .paper])
    func matchesQGaloreTorch(rule: QGaLore.LazyRule) throws {
        let fx = BnbFixtures.qgalore
        let opt = try Self.fixtureOptimizer(rule: rule)
        let w0 = try fx.tensor("w0")
        let p = Parameter(name: "model.layers.0.mlp.up_proj.weight", role: .mlp, value: w0.copy())
        for t in 0..<7 {
            opt.update(p, gradient: try fx.tensor("grad.\(t)"), lrScale: 1)
            guard t == 2 || t == 6 else { continue }
            let ref = try fx.tensor("w.\(t)")
            let err = relativeError(p.value.array, ref.array)
            let delta = relativeError(zip(p.value.array, w0.array).map { $0 - $1 }, zip(ref.array, w0.array).map { $0 - $1 })
            #expect(err < 1e-5, "step \(t): weights off by \(err)")
            #expect(delta < 2e-3, "step \(t): update off by \(delta)")
        }
        let s = try #require(opt.states[p.name])
        #expect(s.gap == Int(try fx.tensor("update_proj_gap")[0]))
        #expect(s.refreshes == Int(try fx.tensor("svd_count")[0]))
        #expect(maxAbsDiff(s.similarities, try fx.tensor("queue").array) < 1e-4)
        #expect(maxAbsDiff(try #require(s.previousVector), try fx.tensor("past_ortho_vector").array) < 1e-4)
        let state = opt.exportState(for: p)
        let codes = BnbFixtures.codes(state["ortho_matrix"]!), ref = BnbFixtures.codes(try fx.tensor("ortho_matrix"))
        #expect(zip(codes, ref).filter { $0 != $1 }.count <= 2, "INT4 codes differ")
        #expect(relativeError(state["ortho_matrix_scales"]!.array, try fx.tensor("ortho_matrix_scales").array) < 1e-4)
        #expect(state["ortho_matrix_zeros"]!.array == (try fx.tensor("ortho_matrix_zeros")).array)
        for key in ["state1", "state2"] {
            let ours = BnbFixtures.codes(state[key]!), theirs = BnbFixtures.codes(try fx.tensor(key))
            #expect(zip(ours, theirs).filter { $0 != $1 }.count <= 3, "\(key) codes differ")
        }
    }

    // MARK: Lazy refresh

    /// Runs `opt` on one matrix with `gradient(t)` and returns the steps at which an SVD ran.
    static func refreshSteps(_ opt: QGaLore, shape: [Int], steps: Int, gradient: (Int) -> Tensor) -> [Int] {
        let p = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
        var out: [Int] = []
        for t in 0..<steps {
            let before = opt.states[p.name]?.refreshes ?? 0
            opt.update(p, gradient: gradient(t), lrScale: 1)
            if opt.states[p.name]!.refreshes > before { out.append(t) }
        }
        return out
    }

    /// A fixed subspace (similarity 1): the gap doubles at every refresh once the window of 5
    /// is full (the reference keeps doubling), under both rules.
    @Test(arguments: [QGaLore.LazyRule.reference, .paper])
    func stableSubspaceDoublesTheGap(rule: QGaLore.LazyRule) throws {
        let opt = try QGaLore(rank: 2, updateGap: 1, queueSize: 5, rule: rule)
        let g = randomTensor([12, 20], seed: 2)
        let steps = Self.refreshSteps(opt, shape: [12, 20], steps: 40, gradient: { _ in g })
        #expect(steps == [0, 1, 2, 3, 4, 5, 6, 8, 16, 32])
        #expect(opt.states["w"]!.gap == 32)
    }

    /// Independent random gradients: successive subspaces are unrelated, the gap stays.
    @Test func driftingSubspaceKeepsTheGap() throws {
        let opt = try QGaLore(rank: 2, updateGap: 2, queueSize: 3)
        let steps = Self.refreshSteps(opt, shape: [12, 20], steps: 20, gradient: { randomTensor([12, 20], seed: 10 + UInt64($0)) })
        #expect(steps == Array(stride(from: 0, to: 20, by: 2)))
        #expect(opt.states["w"]!.gap == 2)
    }

    /// Where the rules differ: similarities [1, 0] have mean 0.5 ≥ 0.4 (the reference doubles)
    /// but not every one reaches 0.4 (the paper's rule does not).
    @Test func paperAndReferenceRulesDiffer() throws {
        let u = randomTensor([12], seed: 3), w = randomTensor([12], seed: 4)
        // Make w orthogonal to u.
        let c = zip(u.array, w.array).reduce(0) { $0 + $1.0 * $1.1 } / u.array.reduce(0) { $0 + $1 * $1 }
        for i in 0..<12 { w.data[i] -= c * u.data[i] }
        let v = randomTensor([20], seed: 5)
        func outer(_ a: Tensor) -> Tensor {
            let g = Tensor(zeros: [12, 20])
            for i in 0..<12 { for j in 0..<20 { g.data[i * 20 + j] = a.data[i] * v.data[j] } }
            return g
        }
        let grads = [outer(u), outer(u), outer(w)]
        for (rule, gap) in [(QGaLore.LazyRule.reference, 2), (QGaLore.LazyRule.paper, 1)] {
            let opt = try QGaLore(rank: 1, updateGap: 1, queueSize: 2, rule: rule)
            _ = Self.refreshSteps(opt, shape: [12, 20], steps: 3, gradient: { grads[$0] })
            let s = opt.states["w"]!
            #expect(abs(s.similarities[0] - 1) < 1e-5 && abs(s.similarities[1]) < 1e-5)
            #expect(s.gap == gap, "\(rule)")
        }
    }

    // MARK: State, checkpoints, options

    /// Bytes: 8-bit moments of R, INT4 P with 5 bytes per group, the previous first singular
    /// vector and the similarity window; against float32 GaLore's.
    @Test func stateBytesFollowTheFormula() throws {
        let opt = try QGaLore(rank: 32, updateGap: 1)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([64, 128], seed: 1))
        opt.update(p, gradient: randomTensor([64, 128], seed: 2), lrScale: 1)
        // m < n: left side, P 64 x 32 (2048 entries, 8 groups), R 32 x 128 (4096, 8-bit).
        let moments = 2 * (4096 + 4 * 16), projector = 2048 / 2 + 8 * 5, vector = 4 * 64
        #expect(opt.stateBytes(for: p) == moments + projector + vector)
        #expect(opt.stateFootprint(for: ParameterSpec(p))?.bytes == opt.stateBytes(for: p))
        opt.update(p, gradient: randomTensor([64, 128], seed: 3), lrScale: 1)
        #expect(opt.stateBytes(for: p) == moments + projector + vector + 4)
        let galore = try GaLore(rank: 32)
        galore.update(p, gradient: randomTensor([64, 128], seed: 2), lrScale: 1)
        #expect(galore.stateBytes(for: p) == 4 * (2 * 4096 + 2048))
    }

    @Test func checkpointRoundTrip() throws {
        let make = { try QGaLore(learningRate: 1e-2, rank: 4, updateGap: 1, groupSize: 32, queueSize: 2, quantization: try StateQuantization(blockSize: 64, minimumSize: 0)) }
        try expectContinuesAfterImport(make, shape: [24, 40])
        try expectContinuesAfterImport(make, shape: [40, 24])
        let a = try make()
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([24, 40], seed: 1))
        for s in 0..<4 { a.update(p, gradient: randomTensor([24, 40], seed: UInt64(s)), lrScale: 1) }
        let saved = a.exportState(for: p)
        #expect(Set(saved.keys) == [
            "step", "state1", "absmax1", "state2", "absmax2", "ortho_matrix", "ortho_matrix_scales", "ortho_matrix_zeros",
            "update_proj_gap", "svd_count", "past_ortho_vector", "queue",
        ])
        for (key, value) in [("ortho_matrix", Float(16)), ("ortho_matrix_scales", 0), ("update_proj_gap", 0), ("queue", 7)] {
            let bad = saved.mapValues { $0.copy() }
            bad[key]!.data[0] = value
            #expect(throws: OptimizerStateError.self, "\(key)") { try a.importState(bad, for: p) }
        }
        var missing = saved
        missing["svd_count"] = nil
        #expect(throws: OptimizerStateError.self) { try a.importState(missing, for: p) }
        // A vector goes through unprojected 8-bit Adam.
        let v = Parameter(name: "v", role: .norm, value: randomTensor([30], seed: 2))
        a.update(v, gradient: randomTensor([30], seed: 3), lrScale: 1)
        #expect(Set(a.exportState(for: v).keys) == ["step", "state1", "absmax1", "state2", "absmax2"])
    }

    @Test func registryDefaultsAndErrors() throws {
        let r = try OptimizerRegistry.make("qgalore", options: OptimizerOptions())
        let q = try #require(r.routes.first?.optimizer as? QGaLore)
        #expect(q.bits == 4 && q.groupSize == 256 && q.threshold == 0.4 && q.queueSize == 5 && q.growth == 2)
        #expect(q.rule == .paper && q.settings.rank == 128 && q.settings.updateGap == 200 && q.settings.scale == 0.25)
        #expect(q.settings.eps == 1e-8 && q.settings.weightDecay == 0)
        #expect((r.fallback as? AdamW8bit)?.weightDecay == 0)
        let g8 = try OptimizerRegistry.make("galore8bit", options: OptimizerOptions())
        let galore = try #require(g8.routes.first?.optimizer as? GaLore)
        #expect(galore.settings.weightDecay == 1e-2 && galore.settings.eps == 1e-8 && galore.settings.quantization != nil)
        #expect((g8.fallback as? AdamW8bit)?.weightDecay == 1e-2)
        for bad in [
            { (o: inout OptimizerOptions) in o.projectionType = "gaussian" },
            { (o: inout OptimizerOptions) in o.projectionBits = 3 },
            { (o: inout OptimizerOptions) in o.projectionGroupSize = 0 },
            { (o: inout OptimizerOptions) in o.lazyThreshold = 2 },
            { (o: inout OptimizerOptions) in o.lazyQueueSize = 0 },
            { (o: inout OptimizerOptions) in o.lazyGrowth = 0 },
            { (o: inout OptimizerOptions) in o.variant = "sometimes" },
            { (o: inout OptimizerOptions) in o.rank = 0 },
        ] as [(inout OptimizerOptions) -> Void] {
            var o = OptimizerOptions(); bad(&o)
            #expect(throws: ConfigurationError.self, "\(o)") { try OptimizerRegistry.make("qgalore", options: o) }
        }
    }
}

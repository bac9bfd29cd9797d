import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// `scripts/make_galore_adafactor_fixtures.py`: galore-torch 1.0's `GaLoreAdafactor` on the
/// gradients of `galore_steps.safetensors` (rank 8, gap 3, scale 0.25, lr 0.01, weight decay
/// 0.1, relative_step and scale_parameter off unless the run says otherwise, 8 steps).
enum GaLoreAdafactorFixtures {
    static let reference: SafeTensorsFile = try! ProjectionFixtures.load("galore_adafactor_steps")
}

@Suite("GaLoreAdafactor") struct GaLoreAdafactorTests {
    static func make(beta1: Float? = nil, scaleParameter: Bool = false) throws -> GaLoreAdafactor {
        try GaLoreAdafactor(
            learningRate: ProjectionFixtures.lr,
            rule: AdafactorRule(beta1: beta1, relativeStep: false, scaleParameter: scaleParameter),
            weightDecay: ProjectionFixtures.weightDecay, rank: ProjectionFixtures.rank,
            updateGap: ProjectionFixtures.gap, scale: ProjectionFixtures.scale)
    }

    @Test(arguments: [
        ("gaf", "tall"), ("gaf", "wide"), ("gaf", "square"), ("gaf_beta1", "tall"), ("gaf_beta1", "wide"),
        ("gaf_scaled", "wide"),
    ])
    func matchesGaloreTorch(run: String, shape: String) throws {
        let opt = try Self.make(beta1: run == "gaf_beta1" ? 0.9 : nil, scaleParameter: run == "gaf_scaled")
        let p = try ProjectionFixtures.replay(opt, shape: shape, run: run, reference: GaLoreAdafactorFixtures.reference)
        try ProjectionFixtures.checkState(
            opt, p, shape: shape, run: run, reference: GaLoreAdafactorFixtures.reference,
            keys: ["step", "exp_avg_sq_row", "exp_avg_sq_col", "ortho_matrix"] + (run == "gaf_beta1" ? ["exp_avg"] : []))
    }

    @Test(arguments: [[48, 20], [20, 48]])
    func stateBytesFollowTheFormula(shape: [Int]) throws {
        let m = shape[0], n = shape[1], r = 8
        let p = Parameter(name: "w", role: .mlp, value: Tensor(zeros: shape))
        let plain = try GaLoreAdafactor(rank: r, updateGap: 3)
        plain.update(p, gradient: randomTensor(shape, seed: 1), lrScale: 1)
        // Factors of R (max(m, n) + r), projector r·min(m, n).
        #expect(plain.stateBytes(for: p) == (max(m, n) + r + r * min(m, n)) * 4)
        let momentum = try GaLoreAdafactor(rule: AdafactorRule(beta1: 0.9, relativeStep: false, scaleParameter: false), rank: r, updateGap: 3)
        momentum.update(p, gradient: randomTensor(shape, seed: 1), lrScale: 1)
        #expect(momentum.stateBytes(for: p) == (max(m, n) + r + r * max(m, n) + r * min(m, n)) * 4)
        let random = try GaLoreAdafactor(rank: r, updateGap: 3, projection: .gaussian)
        random.update(p, gradient: randomTensor(shape, seed: 1), lrScale: 1)
        #expect(random.stateBytes(for: p) == (max(m, n) + r) * 4)
    }

    @Test(arguments: [ProjectionType.std, .rademacher])
    func checkpointRoundTrip(type: ProjectionType) throws {
        let shape = [24, 40]
        func make() throws -> GaLoreAdafactor {
            try GaLoreAdafactor(
                learningRate: 0.02, rule: AdafactorRule(beta1: 0.9, relativeStep: false, scaleParameter: true),
                weightDecay: 0.05, rank: 5, updateGap: 3, projection: type)
        }
        let a = try make(), b = try make()
        let pa = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 5))
        for s in 0..<4 { a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) }
        let saved = a.exportState(for: pa)
        #expect(Set(saved.keys) == Set(["step", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg"] + (type.isRandom ? [] : ["ortho_matrix"])))
        let pb = Parameter(name: "w", role: .mlp, value: pa.value.copy())
        try b.importState(saved.mapValues { $0.copy() }, for: pb)
        for s in 4..<9 {
            a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
            b.update(pb, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
        }
        #expect(pa.value.array == pb.value.array)
        // Wrong keys and shapes are rejected.
        var bad = saved
        bad["exp_avg_sq_row"] = Tensor(zeros: [3])
        #expect(throws: OptimizerStateError.self) { try b.importState(bad, for: pb) }
        bad = saved
        bad["momentum_buffer"] = Tensor(zeros: [1])
        #expect(throws: OptimizerStateError.self) { try b.importState(bad, for: pb) }
    }

    @Test func skipsNonFiniteGradientsAndRoutesTheRestToAdafactor() throws {
        let opt = try GaLoreAdafactor(rank: 4, updateGap: 2)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([12, 8], seed: 1))
        let before = p.value.array
        let g = randomTensor([12, 8], seed: 2)
        g.data[5] = .nan
        opt.update(p, gradient: g, lrScale: 1)
        #expect(p.value.array == before)
        #expect(opt.states["w"]?.skipped == 1)
        #expect(opt.exportState(for: p).isEmpty)

        var o = OptimizerOptions()
        o.rank = 4
        let routed = try OptimizerRegistry.make("galore-adafactor", options: o)
        let model = try LlamaModel(config: smallConfig())
        for q in model.parameters {
            let isProjected = routed.optimizer(for: q) is GaLoreAdafactor
            #expect(isProjected == ((q.role == .attention || q.role == .mlp) && q.shape.count == 2), "\(q.name)")
            if !isProjected { #expect(routed.optimizer(for: q) is Adafactor) }
        }
        o.relativeStep = true
        o.learningRate = 0.1
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("galore-adafactor", options: o) }
        o = OptimizerOptions(); o.beta2 = 0.9
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("galore-adafactor", options: o) }
    }
}

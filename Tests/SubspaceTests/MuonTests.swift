import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Muon against `torch.optim.Muon` (torch 2.15), whose step is KellerJordan/Muon's: the same
/// lerp momentum (its docstring writes B <- mu B + g, but the code is B.lerp_(G, 1 - mu),
/// which NS would not distinguish anyway), the same Nesterov mix, Jordan's coefficients and
/// shape factor, decoupled decay with the unadjusted rate. So the settings are configured
/// equal and whole weight trajectories are compared. The one difference is precision: torch
/// runs Newton–Schulz in bfloat16, we run it in float32, so the fixture holds both torch's
/// stock trajectory and one with its iteration redirected to float32.
@Suite struct MuonTests {
    static let params = ["tall", "wide", "square"]

    static func make(_ kw: [String: Any]) throws -> Muon {
        func f(_ k: String) -> Float? { (kw[k] as? NSNumber)?.floatValue }
        let adjustment = try #require(MuonLRAdjustment(rawValue: (kw["adjust_lr_fn"] as? String) ?? "original"))
        let rule = MuonRule(momentum: f("momentum") ?? 0.95, nesterov: (kw["nesterov"] as? Bool) ?? true, adjustment: adjustment)
        return Muon(learningRate: f("lr") ?? 1e-3, rule: rule, weightDecay: f("weight_decay") ?? 0.1)
    }

    /// Five steps against torch with float32 Newton–Schulz: weights within 1e-5 relative and
    /// the change w_t - w_0 within 1e-4. Against stock torch (bfloat16 iteration) the change
    /// is within 3e-2, which is the bfloat16 rounding of the iteration, not a semantic gap.
    @Test func matchesTorchMuon() throws {
        let fx = try BaseRuleFixture.load()
        let cases = fx.cases("muon")
        #expect(cases.count >= 2)
        for c in cases {
            let errs = try fx.replay(try Self.make(c.kwargs), rule: "muon", params: Self.params, prefix: c.name)
            let bf16 = try fx.replay(try Self.make(c.kwargs), rule: "muon", params: Self.params, prefix: "\(c.name).bf16")
            for p in Self.params {
                let e = try #require(errs[p]), b = try #require(bf16[p])
                print("muon parity \(c.name) \(p): f32 weights \(e.weights), change \(e.change); bf16 change \(b.change)")
                #expect(e.weights < 1e-5, "\(c.name) \(p): weights \(e.weights)")
                #expect(e.change < 1e-4, "\(c.name) \(p): change \(e.change)")
                #expect(b.change < 3e-2, "\(c.name) \(p): bf16 change \(b.change)")
            }
        }
    }

    /// `NewtonSchulz.orthogonalize` against torch's `_zeropower_via_newtonschulz`.
    @Test(arguments: ["32x12", "12x32", "20x20"])
    func newtonSchulzMatchesTorch(shape: String) throws {
        let fx = try BaseRuleFixture.load()
        let x = NewtonSchulz.orthogonalize(try fx.tensor("ns.\(shape).input"))
        let f32 = relativeError(x.array, try fx.tensor("ns.\(shape).f32").array)
        let bf16 = relativeError(x.array, try fx.tensor("ns.\(shape).bf16").array)
        print("newton-schulz \(shape): vs torch float32 \(f32), vs torch bfloat16 \(bf16)")
        #expect(f32 < 1e-5)
        #expect(bf16 < 3e-2)
    }

    /// The update divided by lr * ratio is nearly orthogonal: its singular values lie in the
    /// quintic's band, for tall, wide and square matrices, over several momentum steps.
    @Test(arguments: [[24, 10], [10, 24], [16, 16]])
    func updateIsNearlyOrthogonal(shape: [Int]) throws {
        let lr: Float = 0.05
        let opt = Muon(learningRate: lr)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
        let ratio = max(1, Float(shape[0]) / Float(shape[1])).squareRoot()
        for t in 0..<4 {
            let before = p.value.copy()
            opt.update(p, gradient: randomTensor(shape, seed: UInt64(20 + t)), lrScale: 1)
            let o = Tensor(uninitialized: shape)
            for i in 0..<o.count { o[i] = (before[i] - p.value[i]) / (lr * ratio) }
            let s = try Linalg.svd(o).s
            #expect(s.count == min(shape[0], shape[1]))
            #expect(s.allSatisfy { $0 > 0.55 && $0 < 1.3 }, "\(shape) step \(t): \(s)")
        }
    }

    /// Jordan's shape factor: a tall matrix moves sqrt(rows / cols) times as far as its
    /// transpose fed the transposed gradients; match_rms_adamw scales both by
    /// 0.2 sqrt(max(rows, cols)).
    @Test(arguments: MuonLRAdjustment.allCases)
    func shapeScaling(adjustment: MuonLRAdjustment) throws {
        let opt = Muon(learningRate: 0.01, rule: MuonRule(adjustment: adjustment))
        // From zero weights the change is the weights themselves, free of cancellation.
        let w = Tensor(zeros: [24, 10])
        let tall = Parameter(name: "tall", role: .mlp, value: w.copy())
        let wide = Parameter(name: "wide", role: .mlp, value: w.transposed())
        for t in 0..<3 {
            let g = randomTensor([24, 10], seed: UInt64(t + 40))
            opt.update(tall, gradient: g, lrScale: 1)
            opt.update(wide, gradient: g.transposed(), lrScale: 1)
        }
        let dTall = zip(tall.value.array, w.array).map { $0 - $1 }
        let dWide = zip(wide.value.transposed().array, w.array).map { $0 - $1 }
        let expected: Float
        switch adjustment {
        case .original: expected = (24.0 / 10.0 as Float).squareRoot()
        case .matchRMSAdamW: expected = 1
        case .spectralUnclamped: expected = 24.0 / 10.0
        }
        #expect(relativeError(dTall, dWide.map { $0 * expected }) < 1e-5)
        #expect(adjustment.ratio(rows: 10, cols: 24) == (adjustment == .matchRMSAdamW ? 0.2 * Float(24).squareRoot() : adjustment == .original ? 1 : (10.0 / 24.0 as Float).squareRoot()))
    }

    /// Without Nesterov, the reusable rule's direction is NS of the lerp momentum.
    @Test func ruleMomentum() {
        let rule = MuonRule(momentum: 0.9, nesterov: false)
        let b = Tensor(zeros: [3, 2])
        let g1 = randomTensor([3, 2], seed: 1), g2 = randomTensor([3, 2], seed: 2)
        _ = rule.direction(gradient: g1, buffer: b)
        let d = rule.direction(gradient: g2, buffer: b)
        let expected = (0..<6).map { 0.9 * 0.1 * g1[$0] + 0.1 * g2[$0] }
        #expect(maxAbsDiff(b.array, expected) < 1e-7)
        #expect(relativeError(d.array, NewtonSchulz.orthogonalize(b).array) < 1e-7)
        var n = rule; n.nesterov = true
        let bn = Tensor(zeros: [3, 2])
        let u = n.momentumStep(gradient: g1, buffer: bn)
        #expect(maxAbsDiff(u.array, (0..<6).map { g1[$0] + 0.9 * (0.1 * g1[$0] - g1[$0]) }) < 1e-7)
    }

    @Test func stateBytesAndRouting() throws {
        let model = try LlamaModel(config: smallConfig())
        let routed = try OptimizerRegistry.make("muon", options: OptimizerOptions())
        let trainer = try Trainer(model: model, optimizer: routed, options: StepOptions())
        _ = try trainer.trainStep([randomBatch(vocab: 20, batch: 2, seq: 8, seed: 1)])
        var expected = 0
        for p in model.parameters {
            let hidden = (p.role == .attention || p.role == .mlp) && p.shape.count == 2
            let o = routed.optimizer(for: p)
            if hidden {
                #expect(o is Muon, "\(p.name)")
                #expect(o.stateBytes(for: p) == p.count * 4)
                expected += p.count * 4
            } else {
                #expect(o is AdamW, "\(p.name)")
                expected += 2 * p.count * 4
            }
        }
        #expect(routed.stateBytes(model.parameters) == expected)
        let muon = try #require(routed.routes.first?.optimizer as? Muon)
        let adam = try #require(routed.fallback as? AdamW)
        #expect(muon.learningRate == 0.02 && muon.rule == MuonRule() && muon.weightDecay == 0)
        #expect(adam.learningRate == 3e-4 && adam.beta1 == 0.9 && adam.beta2 == 0.95 && adam.eps == 1e-10 && adam.weightDecay == 0)
        var o = OptimizerOptions()
        o.learningRate = 0.01; o.adamLearningRate = 1e-3; o.weightDecay = 0.1; o.nesterov = false; o.momentum = 0.9
        o.muonAdjustment = "match_rms_adamw"
        let r2 = try OptimizerRegistry.make("muon", options: o)
        let m2 = try #require(r2.routes.first?.optimizer as? Muon), a2 = try #require(r2.fallback as? AdamW)
        #expect(m2.learningRate == 0.01 && m2.weightDecay == 0.1 && !m2.rule.nesterov && m2.rule.momentum == 0.9)
        #expect(m2.rule.adjustment == .matchRMSAdamW)
        #expect(a2.learningRate == 1e-3 && a2.weightDecay == 0.1)
    }

    @Test func checkpoint() throws {
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([6, 4], seed: 1))
        let opt = Muon()
        opt.update(p, gradient: randomTensor([6, 4], seed: 2), lrScale: 1)
        let s = opt.exportState(for: p)
        #expect(Set(s.keys) == ["momentum_buffer"])
        #expect(throws: OptimizerStateError.self) { try Muon().importState(["momentum_buffer": Tensor(zeros: [4, 6])], for: p) }
        #expect(throws: OptimizerStateError.self) { try Muon().importState(["exp_avg": s["momentum_buffer"]!], for: p) }
        var o = OptimizerOptions(); o.weightDecay = 0.01; o.adamLearningRate = 1e-3
        try BaseRuleChecks.stateRoundTrip(try OptimizerRegistry.make("muon", options: o), try OptimizerRegistry.make("muon", options: o))
    }

    @Test(arguments: [1, 2])
    func perLayerUpdateMatchesOrdinaryMode(accum: Int) throws {
        try BaseRuleChecks.perLayerMatchesOrdinary({
            var o = OptimizerOptions(); o.weightDecay = 0.01; o.adamLearningRate = 1e-3
            return try OptimizerRegistry.make("muon", options: o)
        }, accum: accum)
    }

    @Test func lossDecreases() throws {
        var o = OptimizerOptions(); o.adamLearningRate = 3e-3
        let (before, after) = try BaseRuleChecks.convergence(try OptimizerRegistry.make("muon", options: o))
        print("muon smoke: loss \(before) -> \(after)")
        #expect(after < 0.7 * before)
    }

    @Test func registryRejectsImpossibleHyperparameters() {
        for bad in [
            { (o: inout OptimizerOptions) in o.learningRate = 0 },
            { o in o.momentum = 1 },
            { o in o.momentum = -0.5 },
            { o in o.weightDecay = -1 },
            { o in o.adamLearningRate = -1 },
            { o in o.beta2 = 1 },
            { o in o.eps = 0 },
            { o in o.muonAdjustment = "spectral" },
        ] as [(inout OptimizerOptions) -> Void] {
            var o = OptimizerOptions(); bad(&o)
            #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("muon", options: o) }
        }
    }
}

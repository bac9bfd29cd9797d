import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// `Fixtures/base_rules.safetensors`, written by `scripts/make_base_rule_fixtures.py`:
/// reference weights after each of five steps of transformers' Adafactor and
/// torch.optim.Muon on fixed gradient sequences.
struct BaseRuleFixture {
    struct Case { let name: String; let rule: String; let kwargs: [String: Any] }
    let file: SafeTensorsFile
    let cases: [Case]
    let steps: Int

    static func load() throws -> BaseRuleFixture {
        let url = try #require(
            Bundle.module.url(forResource: "base_rules", withExtension: "safetensors", subdirectory: "Fixtures"),
            "missing Fixtures/base_rules.safetensors; run scripts/make_base_rule_fixtures.py")
        let file = try SafeTensorsFile.load(url: url)
        let json = try #require(file.metadata["cases"])
        let list = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        let cases = list.map { Case(name: $0["name"] as! String, rule: $0["rule"] as! String, kwargs: $0["kwargs"] as! [String: Any]) }
        return BaseRuleFixture(file: file, cases: cases, steps: Int(file.metadata["steps"] ?? "") ?? 5)
    }

    func cases(_ rule: String) -> [Case] { cases.filter { $0.rule == rule } }
    func tensor(_ name: String) throws -> Tensor { try file.tensor(name) }

    /// Runs `optimizer` over the fixture's gradient sequence for `params` of `rule` and
    /// returns, per parameter, the largest relative error of the weights and of the weight
    /// change (w_t - w_0) against `<prefix>.<param>.<t>` over all steps.
    func replay(
        _ optimizer: ParameterOptimizer, rule: String, params: [String], prefix: String
    ) throws -> [String: (weights: Double, change: Double)] {
        let ps = try params.map { Parameter(name: $0, role: .mlp, value: try tensor("\(rule).init.\($0)").copy()) }
        var worst: [String: (weights: Double, change: Double)] = [:]
        for t in 1...steps {
            for p in ps {
                optimizer.update(p, gradient: try tensor("\(rule).grad.\(p.name).\(t)"), lrScale: 1)
            }
            for p in ps {
                let ref = try tensor("\(prefix).\(p.name).\(t)").array, w0 = try tensor("\(rule).init.\(p.name)").array
                let ours = p.value.array
                let we = relativeError(ours, ref)
                let ce = relativeError(zip(ours, w0).map { $0 - $1 }, zip(ref, w0).map { $0 - $1 })
                let old = worst[p.name] ?? (0, 0)
                worst[p.name] = (max(old.weights, we), max(old.change, ce))
            }
        }
        return worst
    }
}

/// Checks shared by the base-rule suites (Adafactor, Lion, Muon).
enum BaseRuleChecks {
    /// Training with `make()`'s optimizer in per-layer mode gives exactly the weights of the
    /// ordinary mode (OptimizerTests.perLayerUpdateMatchesOrdinaryMode for every rule).
    static func perLayerMatchesOrdinary(_ make: () throws -> RoutedOptimizer, accum: Int = 1) throws {
        func run(perLayer: Bool) throws -> LlamaModel {
            let model = try LlamaModel(config: smallConfig(), seed: 9)
            var o = StepOptions(); o.gradAccum = accum; o.perLayerUpdate = perLayer
            let trainer = try Trainer(model: model, optimizer: try make(), options: o)
            for s in 0..<3 {
                let mbs = (0..<accum).map { randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(10 * s + $0)) }
                _ = try trainer.trainStep(mbs)
            }
            #expect(!perLayer || model.gradientBytes == 0)
            return model
        }
        let a = try run(perLayer: false), b = try run(perLayer: true)
        for (p, q) in zip(a.parameters, b.parameters) {
            #expect(maxAbsDiff(p.value.array, q.value.array) == 0, "\(p.name)")
        }
    }

    /// The mean loss on a fixed batch before and after `steps` steps.
    static func convergence(_ optimizer: RoutedOptimizer, steps: Int = 40) throws -> (before: Double, after: Double) {
        let model = try LlamaModel(config: smallConfig(), seed: 5)
        let trainer = try Trainer(model: model, optimizer: optimizer, options: StepOptions())
        let batch = randomBatch(vocab: 20, batch: 4, seq: 8, seed: 77)
        let before = try model.loss(batch).loss
        for _ in 0..<steps { _ = try trainer.trainStep([batch]) }
        return (before, try model.loss(batch).loss)
    }

    /// Steps `a` twice on every model parameter, moves its state into `b` through
    /// export/import (copies, as a checkpoint would), then steps both three more times:
    /// the two models must stay bit-identical.
    static func stateRoundTrip(_ a: RoutedOptimizer, _ b: RoutedOptimizer) throws {
        let m1 = try LlamaModel(config: smallConfig(), seed: 4), m2 = try LlamaModel(config: smallConfig(), seed: 4)
        let t1 = try Trainer(model: m1, optimizer: a, options: StepOptions())
        for s in 0..<2 { _ = try t1.trainStep([randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(s))]) }
        for (p, q) in zip(m1.parameters, m2.parameters) {
            q.value.assign(p.value)
            let state = a.optimizer(for: p).exportState(for: p).mapValues { $0.copy() }
            #expect(!state.isEmpty, "\(p.name)")
            try b.optimizer(for: q).importState(state, for: q)
            #expect(b.optimizer(for: q).stateBytes(for: q) == a.optimizer(for: p).stateBytes(for: p))
        }
        let t2 = try Trainer(model: m2, optimizer: b, options: StepOptions())
        t2.setStep(2)
        for s in 2..<5 {
            let batch = randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(s))
            _ = try t1.trainStep([batch]); _ = try t2.trainStep([batch])
        }
        for (p, q) in zip(m1.parameters, m2.parameters) {
            #expect(p.value.array.map(\.bitPattern) == q.value.array.map(\.bitPattern), "\(p.name)")
        }
    }
}

@Suite struct AdafactorTests {
    static let params = ["tall", "wide", "vector"]

    /// transformers' keyword arguments as an `Adafactor`.
    static func make(_ kw: [String: Any]) -> Adafactor {
        func f(_ k: String) -> Float? { (kw[k] as? NSNumber)?.floatValue }
        func b(_ k: String, _ d: Bool) -> Bool { (kw[k] as? Bool) ?? d }
        let rule = AdafactorRule(
            clipThreshold: f("clip_threshold") ?? 1, decayRate: f("decay_rate") ?? -0.8, beta1: f("beta1"),
            relativeStep: b("relative_step", true), scaleParameter: b("scale_parameter", true),
            warmupInit: b("warmup_init", false))
        return Adafactor(learningRate: f("lr"), rule: rule, weightDecay: f("weight_decay") ?? 0)
    }

    /// Five steps of every fixture case against transformers' Adafactor (float32): weights
    /// within 1e-5 relative, and the accumulated change w_t - w_0 within 1e-4 relative.
    @Test func matchesTransformers() throws {
        let fx = try BaseRuleFixture.load()
        let cases = fx.cases("adafactor")
        #expect(cases.count >= 5)
        for c in cases {
            let errs = try fx.replay(Self.make(c.kwargs), rule: "adafactor", params: Self.params, prefix: c.name)
            for p in Self.params {
                let e = try #require(errs[p])
                print("adafactor parity \(c.name) \(p): weights \(e.weights), change \(e.change)")
                #expect(e.weights < 1e-5, "\(c.name) \(p): weights \(e.weights)")
                #expect(e.change < 1e-4, "\(c.name) \(p): change \(e.change)")
            }
        }
    }

    /// The reusable rule (`advance` + `update`, what GaLore-Adafactor runs on R) takes the
    /// same step as the fused per-parameter optimizer.
    @Test(arguments: [nil, 0.9] as [Float?])
    func ruleMatchesFusedStep(beta1: Float?) throws {
        let rule = AdafactorRule(beta1: beta1, relativeStep: false, scaleParameter: true)
        let opt = Adafactor(learningRate: 0.05, rule: rule, weightDecay: 0.1)
        for shape in [[12, 7], [7, 12], [10], [2, 3, 5]] {
            let p = Parameter(name: "\(shape)", role: .mlp, value: randomTensor(shape, seed: 1))
            let w = p.value.copy()
            var s = rule.makeMoments(shape: shape)
            for t in 1...4 {
                let g = randomTensor(shape, seed: UInt64(10 + t), std: Float(t))
                let rms = AdafactorRule.rms(w)
                opt.update(p, gradient: g, lrScale: 1)
                rule.advance(g, moments: &s)
                let lr = rule.stepSize(step: s.step, learningRate: 0.05, parameterRMS: rms)
                let u = rule.update(g, moments: s, stepSize: lr)
                for i in 0..<w.count { w[i] = w[i] - lr * 0.1 * w[i] - u[i] }
                #expect(relativeError(w.array, p.value.array) < 1e-6, "\(shape) step \(t)")
            }
            #expect(s.step == 4)
        }
    }

    /// Clipping bounds the RMS of the normalised, clipped update by the threshold, and the
    /// unclipped normalised update has RMS about 1 on the first step (v = g^2).
    @Test func normalisedUpdateAndClipping() {
        let rule = AdafactorRule(clipThreshold: 0.5, relativeStep: false, scaleParameter: false)
        let g = randomTensor([9], seed: 3, std: 100)
        var s = rule.makeMoments(shape: [9])
        rule.advance(g, moments: &s)
        let u = rule.normalized(g, moments: s)
        #expect(abs(AdafactorRule.rms(u) - 1) < 1e-5)
        #expect(abs(rule.normalizedRMS(g, moments: s) - AdafactorRule.rms(u)) < 1e-6)
        let step = rule.update(g, moments: s, stepSize: 2)
        #expect(abs(AdafactorRule.rms(step) - 2 * 0.5) < 1e-5)
        #expect(rule.beta2(step: 1) == 0)
        #expect(abs(rule.beta2(step: 10) - Float(1 - pow(10.0, -0.8))) < 1e-7)
        // transformers' step sizes.
        let rel = AdafactorRule()
        #expect(abs(rel.stepSize(step: 1, learningRate: 1, parameterRMS: 0.5) - 0.01 * 0.5) < 1e-9)
        #expect(abs(rel.stepSize(step: 40_000, learningRate: 1, parameterRMS: 1e-6) - 0.005 * 1e-3) < 1e-9)
        var warm = rel; warm.warmupInit = true
        #expect(abs(warm.stepSize(step: 3, learningRate: 1, parameterRMS: 2) - 6e-6) < 1e-10)
    }

    /// State: rows + cols floats per matrix, n per vector, plus n per element with beta1.
    @Test func stateBytes() {
        for beta1 in [nil, 0.9] as [Float?] {
            let opt = Adafactor(rule: AdafactorRule(beta1: beta1))
            let extra = beta1 == nil ? 0 : 1
            for (shape, factored) in [([16, 6], 16 + 6), ([5, 14], 5 + 14), ([9], 9), ([2, 3, 5], 2 * 3 + 2 * 5)] {
                let p = Parameter(name: "\(shape)", role: .mlp, value: randomTensor(shape, seed: 2))
                #expect(opt.stateBytes(for: p) == 0)
                opt.update(p, gradient: randomTensor(shape, seed: 3), lrScale: 1)
                let n = shape.reduce(1, *)
                #expect(opt.stateBytes(for: p) == 4 * (factored + extra * n), "\(shape)")
            }
        }
    }

    @Test(arguments: [nil, 0.9] as [Float?])
    func checkpointRoundTrip(beta1: Float?) throws {
        var o = OptimizerOptions(); o.learningRate = 0.01; o.beta1 = beta1; o.weightDecay = 0.01
        try BaseRuleChecks.stateRoundTrip(try OptimizerRegistry.make("adafactor", options: o), try OptimizerRegistry.make("adafactor", options: o))
        let d = try OptimizerRegistry.make("adafactor", options: OptimizerOptions())
        try BaseRuleChecks.stateRoundTrip(d, try OptimizerRegistry.make("adafactor", options: OptimizerOptions()))
    }

    @Test func checkpointRejectsBadState() throws {
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([4, 3], seed: 1))
        let opt = Adafactor(rule: AdafactorRule(beta1: 0.9))
        opt.update(p, gradient: randomTensor([4, 3], seed: 2), lrScale: 1)
        let s = opt.exportState(for: p)
        #expect(Set(s.keys) == ["step", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg"])
        #expect(s["exp_avg_sq_row"]!.shape == [4] && s["exp_avg_sq_col"]!.shape == [3])
        #expect(throws: OptimizerStateError.self) { try Adafactor().importState(s, for: p) }  // no beta1: exp_avg unexpected
        #expect(throws: OptimizerStateError.self) {
            var bad = s; bad["exp_avg_sq_col"] = Tensor(zeros: [4]); try opt.importState(bad, for: p)
        }
        #expect(throws: OptimizerStateError.self) {
            var bad = s; bad["step"] = Tensor(shape: [1], values: [-1]); try opt.importState(bad, for: p)
        }
        let v = Parameter(name: "v", role: .norm, value: randomTensor([5], seed: 1))
        opt.update(v, gradient: randomTensor([5], seed: 2), lrScale: 1)
        #expect(Set(opt.exportState(for: v).keys) == ["step", "exp_avg_sq", "exp_avg"])
        try opt.importState([:], for: v)
        #expect(opt.stateBytes(for: v) == 0)
    }

    @Test(arguments: [1, 2])
    func perLayerUpdateMatchesOrdinaryMode(accum: Int) throws {
        try BaseRuleChecks.perLayerMatchesOrdinary({
            var o = OptimizerOptions(); o.beta1 = 0.9; o.weightDecay = 0.01
            return try OptimizerRegistry.make("adafactor", options: o)
        }, accum: accum)
    }

    @Test func lossDecreases() throws {
        var o = OptimizerOptions(); o.learningRate = 1e-2
        let (before, after) = try BaseRuleChecks.convergence(try OptimizerRegistry.make("adafactor", options: o))
        print("adafactor smoke: loss \(before) -> \(after)")
        #expect(after < 0.7 * before)
        // transformers' defaults (relative step, parameter scaling) also learn.
        let (b2, a2) = try BaseRuleChecks.convergence(try OptimizerRegistry.make("adafactor", options: OptimizerOptions()))
        print("adafactor (relative step) smoke: loss \(b2) -> \(a2)")
        #expect(a2 < b2)
    }

    @Test func registry() throws {
        // No lr: transformers' defaults.
        let d = try #require(try OptimizerRegistry.make("adafactor", options: OptimizerOptions()).fallback as? Adafactor)
        #expect(d.rule == AdafactorRule() && d.learningRate == 1 && d.weightDecay == 0)
        // An lr: external rate without parameter scaling (GaLore's script).
        var o = OptimizerOptions(); o.learningRate = 1e-2; o.beta1 = 0.9
        let g = try #require(try OptimizerRegistry.make("adafactor", options: o).fallback as? Adafactor)
        #expect(!g.rule.relativeStep && !g.rule.scaleParameter && g.rule.beta1 == 0.9 && g.rule.decayRate == -0.8)
        for bad in [
            { (o: inout OptimizerOptions) in o.learningRate = 1e-2; o.relativeStep = true },
            { o in o.relativeStep = false },
            { o in o.learningRate = 1e-2; o.warmupInit = true },
            { o in o.beta2 = 0.999 },
            { o in o.beta1 = 1 },
            { o in o.learningRate = -1 },
            { o in o.decayRate = 0.8 },
            { o in o.clipThreshold = 0 },
            { o in o.eps = 0 },
            { o in o.weightDecay = -1 },
        ] as [(inout OptimizerOptions) -> Void] {
            var o = OptimizerOptions(); bad(&o)
            #expect(throws: ConfigurationError.self, "\(o)") { try OptimizerRegistry.make("adafactor", options: o) }
        }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

func param(_ values: [Float], name: String = "w", role: ParameterRole = .mlp) -> Parameter {
    Parameter(name: name, role: role, value: Tensor(shape: [values.count], values: values))
}

@Suite struct OptimizerTests {
    /// AdamW's first two steps in closed form (torch semantics: decay first, bias-corrected
    /// moments, eps outside the square root).
    @Test func adamWClosedForm() {
        let lr: Float = 0.1, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8, wd: Float = 0.1
        let p0: [Float] = [1, -2, 0.5], g1: [Float] = [0.3, -0.1, 2], g2: [Float] = [-0.2, 0.4, 1]
        let p = param(p0)
        let opt = AdamW(learningRate: lr, beta1: b1, beta2: b2, eps: eps, weightDecay: wd)
        opt.update(p, gradient: Tensor(shape: [3], values: g1), lrScale: 1)
        opt.update(p, gradient: Tensor(shape: [3], values: g2), lrScale: 1)
        for i in 0..<3 {
            var x = Double(p0[i]), m = 0.0, v = 0.0
            for (t, g) in [(1.0, Double(g1[i])), (2.0, Double(g2[i]))] {
                x *= 1 - Double(lr * wd)
                m = Double(b1) * m + (1 - Double(b1)) * g
                v = Double(b2) * v + (1 - Double(b2)) * g * g
                let mh = m / (1 - pow(Double(b1), t)), vh = v / (1 - pow(Double(b2), t))
                x -= Double(lr) * mh / (vh.squareRoot() + Double(eps))
            }
            #expect(abs(Double(p.value[i]) - x) < 1e-6)
        }
        #expect(opt.stateBytes(for: p) == 2 * 3 * 4)
        // One step moves each coordinate by about lr * sign(g) (plus decay).
        let q = param([0, 0])
        AdamW(learningRate: 0.01, weightDecay: 0).update(q, gradient: Tensor(shape: [2], values: [5, -1e-3]), lrScale: 1)
        #expect(abs(q.value[0] + 0.01) < 1e-6 && abs(q.value[1] - 0.01) < 1e-4)
    }

    /// The vectorised path (8 lanes) and the scalar tail agree with a Double reference.
    @Test func adamWVectorPathMatchesReference() {
        let n = 37
        let p0 = randomTensor([n], seed: 1).array
        let p = param(p0)
        let opt = AdamW(learningRate: 0.01, weightDecay: 0.1)
        var ref = p0.map(Double.init), m = [Double](repeating: 0, count: n), v = m
        for t in 1...3 {
            let g = randomTensor([n], seed: UInt64(10 + t))
            opt.update(p, gradient: g, lrScale: 1)
            for i in 0..<n {
                let gi = Double(g[i])
                ref[i] *= 1 - 0.01 * 0.1
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                let mh = m[i] / (1 - pow(0.9, Double(t))), vh = v[i] / (1 - pow(0.999, Double(t)))
                ref[i] -= 0.01 * mh / (vh.squareRoot() + 1e-8)
            }
        }
        #expect(relativeError(p.value.array, ref.map(Float.init)) < 1e-6)
    }

    @Test func amsgradKeepsMaximum() {
        let p = param([0])
        let opt = AdamW(learningRate: 0.1, weightDecay: 0, amsgrad: true)
        opt.update(p, gradient: Tensor(shape: [1], values: [10]), lrScale: 1)
        opt.update(p, gradient: Tensor(shape: [1], values: [0.1]), lrScale: 1)
        let s = opt.states["w"]!
        #expect(s.vMax![0] >= s.v[0])
        #expect(opt.stateBytes(for: p) == 3 * 4)
    }

    @Test func sgdNesterovClosedForm() {
        let p = param([1])
        let opt = SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true)
        opt.update(p, gradient: Tensor(shape: [1], values: [0.5]), lrScale: 1)
        // d = 0.5 + 0.01 = 0.51, b = 0.51, step = d + 0.9 b = 0.969
        #expect(abs(p.value[0] - (1 - 0.0969)) < 1e-6)
        opt.update(p, gradient: Tensor(shape: [1], values: [0.5]), lrScale: 1)
        let x1: Float = 1 - 0.0969
        let d2 = 0.5 + 0.01 * x1, b2 = 0.9 * 0.51 + d2
        #expect(abs(p.value[0] - (x1 - 0.1 * (d2 + 0.9 * b2))) < 1e-6)
    }

    @Test func schedules() {
        let c = LearningRateSchedule.cosine(warmup: 10, total: 110, minRatio: 0.1)
        #expect(c.multiplier(step: 0) == 0)
        #expect(abs(c.multiplier(step: 5) - 0.5) < 1e-6)
        #expect(abs(c.multiplier(step: 10) - 1) < 1e-6)
        #expect(abs(c.multiplier(step: 60) - 0.55) < 1e-6)
        #expect(abs(c.multiplier(step: 110) - 0.1) < 1e-6)
        #expect(LearningRateSchedule.constant(warmup: 4).multiplier(step: 2) == 0.5)
        #expect(LearningRateSchedule.constant(warmup: 0).multiplier(step: 0) == 1)
    }

    @Test func clipping() {
        let a = param([3, 4], name: "a"), b = param([0], name: "b")
        a.gradient().assign(Tensor(shape: [2], values: [3, 4]))
        b.gradient().assign(Tensor(shape: [1], values: [0]))
        let norm = GradientClipping.clipGlobalNorm([a, b], maxNorm: 1)
        #expect(abs(norm - 5) < 1e-6)
        #expect(abs(BLAS.nrm2(2, a.grad!.data) - 1) < 1e-5)
        // Per-parameter: limit is maxNorm * sqrt(2/3) for 2 of 3 elements.
        a.gradient().assign(Tensor(shape: [2], values: [3, 4]))
        GradientClipping.clipParameter(a, maxNorm: 1, totalCount: 3)
        #expect(abs(BLAS.nrm2(2, a.grad!.data) - (2.0 / 3.0).squareRoot()) < 1e-5)
    }

    @Test func routingByRoleAndName() throws {
        let model = try LlamaModel(config: smallConfig())
        let special = AdamW(learningRate: 1), rest = SGD()
        let r = RoutedOptimizer(routes: [.init(.hiddenMatrices, special)], fallback: rest)
        for p in model.parameters {
            let expected: AnyObject = (p.role == .attention || p.role == .mlp) ? special : rest
            #expect(r.optimizer(for: p) === expected, "\(p.name)")
        }
        #expect(r.optimizers.count == 2)
        #expect(ParameterSelector.nameContains("q_proj").matches(model.parameters[1]))
    }

    /// The per-layer mode must give the same weights as the ordinary mode, with and without
    /// gradient accumulation, while never holding all gradients at once.
    @Test(arguments: [1, 2])
    func perLayerUpdateMatchesOrdinaryMode(accum: Int) throws {
        func run(perLayer: Bool) throws -> (LlamaModel, Int) {
            let model = try LlamaModel(config: smallConfig(), seed: 9)
            var o = StepOptions(); o.gradAccum = accum; o.perLayerUpdate = perLayer
            let trainer = try Trainer(model: model, optimizer: RoutedOptimizer(fallback: AdamW(learningRate: 1e-2)), options: o)
            var peak = 0
            for s in 0..<3 {
                let mbs = (0..<accum).map { randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(10 * s + $0)) }
                _ = try trainer.trainStep(mbs)
                peak = max(peak, model.gradientBytes)
            }
            return (model, peak)
        }
        let (a, _) = try run(perLayer: false), (b, residentAfter) = try run(perLayer: true)
        for (p, q) in zip(a.parameters, b.parameters) {
            #expect(maxAbsDiff(p.value.array, q.value.array) == 0, "\(p.name)")
        }
        #expect(residentAfter == 0)
    }

    @Test func perLayerModeHoldsOneLayerOfGradients() throws {
        let model = try LlamaModel(config: smallConfig(), seed: 1)
        var o = StepOptions(); o.perLayerUpdate = true
        let opt = RoutedOptimizer(fallback: AdamW())
        try model.forward(randomBatch(vocab: 20, batch: 1, seq: 8, seed: 1))
        var peak = 0
        model.backward { p in
            peak = max(peak, model.gradientBytes)
            opt.update(p, lrScale: 1); p.releaseGradient()
        }
        let largest = model.parameters.map(\.value.byteCount).max()!
        #expect(peak <= largest)
        _ = o
    }

    @Test func nonFiniteLossStopsBeforeUpdate() throws {
        let model = try LlamaModel(config: smallConfig(), seed: 1)
        let trainer = try Trainer(model: model, optimizer: RoutedOptimizer(fallback: AdamW()), options: StepOptions())
        model.finalNorm.value[0] = .nan
        let before = model.parameters.map(\.value.array)
        #expect(throws: TrainingError.self) { try trainer.trainStep([randomBatch(vocab: 20, batch: 1, seq: 4, seed: 1)]) }
        for (p, b) in zip(model.parameters, before) where p !== model.finalNorm { #expect(maxAbsDiff(p.value.array, b) == 0) }
    }

    @Test func registryRejectsImpossibleHyperparameters() {
        var o = OptimizerOptions(); o.learningRate = -1
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("adamw", options: o) }
        o = OptimizerOptions(); o.beta1 = 1
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("adamw", options: o) }
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("nope", options: OptimizerOptions()) }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// A rule that keeps the gradients it is handed (summed) and leaves the weights alone: the
/// `.optimizer` update's estimates, collected.
final class GradientCollector: ParameterOptimizer {
    var name: String { "collector" }
    var learningRate: Float = 0
    var sums: [String: [Double]] = [:]
    var calls = 0
    func update(_ parameter: Parameter, gradient: Tensor, lrScale: Float) {
        var s = sums[parameter.name] ?? [Double](repeating: 0, count: gradient.count)
        for i in 0..<gradient.count { s[i] += Double(gradient.data[i]) }
        sums[parameter.name] = s
        calls += 1
    }
    func stateBytes(for parameter: Parameter) -> Int { 0 }
    func exportState(for parameter: Parameter) -> [String: Tensor] { [:] }
    func importState(_ state: [String: Tensor], for parameter: Parameter) throws {}
}

/// MeZO, LOZO, LOZO-M and SubZero: the estimate, seed replay, closed-form steps, the factors'
/// invariants and bit-exact resume.
@Suite struct ZerothOrderTests {
    static let config = LlamaConfig(dim: 8, layers: 1, heads: 2, ffnDim: 16, vocab: 16, maxSeq: 8, initStd: 0.3)

    static func options(lr: Float = 0, wd: Float = 0, seed: UInt64 = 7, _ zo: ZerothOrderSettings = .init()) -> StepOptions {
        var o = StepOptions()
        o.seed = seed; o.zerothOrder = zo; o.zerothOrderLearningRate = lr; o.zerothOrderWeightDecay = wd
        return o
    }

    static func weights(_ m: LlamaModel) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: m.parameters.map { ($0.name, $0.value.array) })
    }

    /// The backprop gradient of `batch`'s loss, flattened in model order.
    static func gradient(_ m: LlamaModel, _ batch: TokenBatch) throws -> [Double] {
        try m.forward(batch)
        m.backward()
        defer { m.zeroGradients() }
        return m.parameters.flatMap { $0.grad!.array.map(Double.init) }
    }

    static func cosine(_ a: [Double], _ b: [Double]) -> Double {
        var ab = 0.0, aa = 0.0, bb = 0.0
        for i in a.indices { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i] }
        return ab / (aa * bb).squareRoot()
    }

    /// MeZO's estimate c z is unbiased for the gradient: the Monte Carlo mean over 3,000
    /// seeds (the real `trainStep`, its estimates handed to a collecting optimizer) points
    /// along the backprop gradient (cosine 0.87 expected for d = 920 at this sample size,
    /// 0 for a wrong sign) and its projection on the gradient's direction is the gradient's
    /// norm within 10% (a wrong scale, e.g. a missing 1/2 in (L+ - L-)/(2 eps), fails).
    @Test func mezoEstimateIsUnbiased() throws {
        let model = try LlamaModel(config: Self.config, seed: 3)
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        let g = try Self.gradient(model, batch)
        let collector = GradientCollector()
        let rule = try MeZOStep(model: model, optimizer: RoutedOptimizer(fallback: collector), options: Self.options(.init(update: .optimizer)))
        let before = Self.weights(model)
        let n = 3000
        for _ in 0..<n { _ = try rule.trainStep([batch]) }
        #expect(collector.calls == n * model.parameters.count)
        let mean = model.parameters.flatMap { collector.sums[$0.name]!.map { $0 / Double(n) } }
        let gnorm = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let projection = zip(mean, g).reduce(0) { $0 + $1.0 * $1.1 } / gnorm
        #expect(Self.cosine(mean, g) > 0.8)
        #expect(abs(projection / gnorm - 1) < 0.1, "projection \(projection), norm \(gnorm)")
        // The weights came back after every step (to rounding: the same values are added back).
        for p in model.parameters { #expect(maxAbsDiff(p.value.array, before[p.name]!) < 1e-5, "\(p.name)") }
    }

    /// Seed replay: a direction regenerated from the same step seed and name is bit-identical
    /// (across chunk boundaries), and differs between names and steps.
    @Test func perturbationsReplayBitForBit() {
        let s = ZerothOrderNoise.stepStream(seed: 11, step: 5)
        let n = ZerothOrderNoise.chunk * 2 + 123
        let a = ZerothOrderNoise.gaussianTensor([n], stream: s, name: "w").array
        let b = ZerothOrderNoise.gaussianTensor([n], stream: ZerothOrderNoise.stepStream(seed: 11, step: 5), name: "w").array
        #expect(a == b)
        #expect(a != ZerothOrderNoise.gaussianTensor([n], stream: s, name: "v").array)
        #expect(a != ZerothOrderNoise.gaussianTensor([n], stream: ZerothOrderNoise.stepStream(seed: 11, step: 6), name: "w").array)
        let mean = a.reduce(0, +) / Float(n), varr = a.reduce(0) { $0 + $1 * $1 } / Float(n)
        #expect(abs(mean) < 0.01 && abs(varr - 1) < 0.01)
    }

    /// With lr 0 a step leaves the weights where they were, to within rounding (each element
    /// gets +eps z, -2 eps z, +eps z in float: a few ulps), and two runs from the same seed
    /// agree bit for bit.
    @Test(arguments: [StepRuleName.mezo, .lozo, .lozoM, .subzero, .eggroll])
    func stepWithZeroRateRestoresTheWeights(rule: StepRuleName) throws {
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        var runs: [[String: [Float]]] = []
        for _ in 0..<2 {
            let model = try LlamaModel(config: Self.config, seed: 3)
            let before = Self.weights(model)
            let step = try rule.make(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: Self.options(.init(population: 4)))
            for _ in 0..<3 { _ = try step.trainStep([batch]) }
            for p in model.parameters {
                let b = before[p.name]!
                let ulps = zip(p.value.array, b).map { abs($0 - $1) / max(abs($1).ulp, Float.leastNormalMagnitude) }.max()!
                #expect(ulps <= 8, "\(p.name): \(ulps) ulps")
            }
            runs.append(Self.weights(model))
        }
        #expect(runs[0] == runs[1])
    }

    /// One MeZO step equals theta - lr (c z + wd theta), computed independently: z drawn
    /// from the step's seed, L+ and L- on copies of the model, weight decay only on matrices.
    @Test func mezoOneStepClosedForm() throws {
        let (lr, wd, eps): (Float, Float, Float) = (0.05, 0.1, 1e-3)
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        let model = try LlamaModel(config: Self.config, seed: 3)
        let theta = Self.weights(model)
        let stream = ZerothOrderNoise.stepStream(seed: 7, step: 0)
        let z = Dictionary(uniqueKeysWithValues: model.parameters.map {
            ($0.name, ZerothOrderNoise.gaussianTensor($0.shape, stream: stream, name: $0.name).array)
        })
        func loss(_ sign: Float) throws -> Double {
            let m = try LlamaModel(config: Self.config, seed: 3)
            for p in m.parameters { for i in 0..<p.count { p.value.data[i] = theta[p.name]![i] + sign * eps * z[p.name]![i] } }
            return try m.loss(batch).loss
        }
        let c = Float((try loss(1) - loss(-1)) / Double(2 * eps))
        let rule = try MeZOStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: Self.options(lr: lr, wd: wd, .init(eps: eps)))
        let report = try rule.trainStep([batch])
        #expect(report.learningRate == lr)
        for p in model.parameters {
            let decay: Float = p.shape.count >= 2 ? wd : 0
            let expected = zip(theta[p.name]!, z[p.name]!).map { $0 - lr * (c * $1 + decay * $0) }
            #expect(relativeError(p.value.array, expected) < 1e-4, "\(p.name)")
        }
    }

    /// LOZO: the update moves each matrix along -lr c U V^T with the U it was evaluated with,
    /// on refresh steps too (the reference's bug is absent), and V is held for nu steps.
    @Test func lozoUpdatesAlongTheEvaluatedDirection() throws {
        let lr: Float = 0.05
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        let model = try LlamaModel(config: Self.config, seed: 3)
        let rule = try LOZOStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: Self.options(lr: lr, .init(rank: 2, interval: 2)))
        let name = "model.layers.0.mlp.up_proj.weight"
        let p = try #require(model.parameter(named: name))
        var vs: [[Float]] = []
        for step in 0..<4 {
            let before = p.value.array
            let plus = try Self.probeLoss(model, batch, rule: rule, sign: 1)
            let minus = try Self.probeLoss(model, batch, rule: rule, sign: -1)
            _ = try rule.trainStep([batch])
            vs.append(rule.v[name]!.array)
            let c = Float((plus - minus) / Double(2 * rule.eps))
            let u = rule.drawU(p, stream: ZerothOrderNoise.stepStream(seed: 7, step: step))
            let expected = Tensor(shape: p.shape, values: before)
            ZerothOrderNoise.addProduct(expected, alpha: -lr * c, u, rule.v[name]!)
            #expect(relativeError(p.value.array, expected.array) < 1e-4, "step \(step)")
        }
        #expect(vs[0] == vs[1] && vs[2] == vs[3] && vs[1] != vs[2])
        #expect(vs[2] == rule.drawV(p, index: 1).array)
    }

    /// L(theta + sign eps z) for the step the rule is about to take, on a copy of the model,
    /// z built here from the step's U (`drawU` on the step's stream) and the held V, not by
    /// the rule's own perturbation, so a rule that evaluated another U would fail.
    static func probeLoss(_ model: LlamaModel, _ batch: TokenBatch, rule: LOZOStep, sign: Float) throws -> Double {
        let copy = try LlamaModel(config: model.config, seed: 0)
        try rule.prepareStep()
        let stream = ZerothOrderNoise.stepStream(seed: rule.options.seed, step: rule.step)
        for (q, p) in zip(copy.parameters, model.parameters) {
            q.value.assign(p.value)
            if p.shape.count == 2 {
                ZerothOrderNoise.addProduct(q.value, alpha: sign * rule.eps, rule.drawU(p, stream: stream), rule.v[p.name]!)
            } else {
                ZerothOrderNoise.addGaussian(q.value, scale: sign * rule.eps, stream: stream, name: p.name)
            }
        }
        return try copy.loss(batch).loss
    }

    /// LOZO-M: N <- beta N + (1 - beta) c U within a V period; on a refresh the momentum is
    /// first carried over, N V_old^T V_new / n; the matrix moves by -lr N V^T.
    @Test func lozoMomentumFollowsThePaper() throws {
        let (lr, beta): (Float, Float) = (0.05, 0.9)
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        let model = try LlamaModel(config: Self.config, seed: 3)
        let rule = try LOZOStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: Self.options(lr: lr, .init(rank: 2, interval: 2, momentum: beta)), rule: .lozoM)
        let name = "model.layers.0.self_attn.q_proj.weight"
        let p = try #require(model.parameter(named: name))
        var n = Tensor(zeros: [8, 2])
        for step in 0..<3 {
            let vOld = rule.v[name]
            let before = p.value.array
            let plus = try Self.probeLoss(model, batch, rule: rule, sign: 1)
            let minus = try Self.probeLoss(model, batch, rule: rule, sign: -1)
            let vNew = rule.v[name]!
            if step == 2, let vOld {
                let proj = vOld.matmul(vNew, transposeSelf: true)
                n = n.matmul(proj)
                for i in 0..<n.count { n.data[i] /= 8 }
            }
            _ = try rule.trainStep([batch])
            let c = Float((plus - minus) / Double(2 * rule.eps))
            let u = rule.drawU(p, stream: ZerothOrderNoise.stepStream(seed: 7, step: step))
            for i in 0..<n.count { n.data[i] = beta * n.data[i] + (1 - beta) * c * u.data[i] }
            #expect(relativeError(rule.n[name]!.array, n.array) < 1e-4, "N at step \(step)")
            let expected = Tensor(shape: p.shape, values: before)
            ZerothOrderNoise.addProduct(expected, alpha: -lr, n, vNew)
            #expect(relativeError(p.value.array, expected.array) < 1e-4, "W at step \(step)")
        }
    }

    /// SubZero: U and V orthonormal; z = sqrt(mn / r^2) U Z0 V^T, so |z|_F = sqrt(mn) / r
    /// |Z0|_F exactly; bases held for the interval and redrawn after it.
    @Test func subzeroBasesAndScaling() throws {
        let model = try LlamaModel(config: Self.config, seed: 3)
        let rule = try SubZeroStep(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: Self.options(.init(rank: 3, interval: 2)))
        let batch = randomBatch(vocab: 16, batch: 2, seq: 6, seed: 4)
        _ = try rule.trainStep([batch])
        let name = "model.layers.0.mlp.down_proj.weight"  // 8 x 16
        let p = try #require(model.parameter(named: name))
        let u = rule.u[name]!, v = rule.v[name]!
        #expect(u.shape == [8, 3] && v.shape == [16, 3])
        for q in [u, v] {
            let gram = q.matmul(q, transposeSelf: true).array
            let eye: [Float] = (0..<9).map { $0 % 4 == 0 ? 1 : 0 }
            #expect(maxAbsDiff(gram, eye) < 1e-5)
        }
        let stream = ZerothOrderNoise.stepStream(seed: 7, step: 1)
        let d = Parameter(name: name, role: p.role, value: Tensor(zeros: p.shape))
        rule.perturb(d, scale: 1, stream: stream)
        let z0 = ZerothOrderNoise.normalMatrix(3, 3, stream: stream.split(name)).array
        let norm = d.value.array.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let z0norm = z0.reduce(0) { $0 + $1 * $1 }.squareRoot()
        #expect(abs(norm - (8 * 16 as Float).squareRoot() / 3 * z0norm) < 1e-4 * norm)
        _ = try rule.trainStep([batch])
        #expect(rule.u[name]!.array == u.array)
        _ = try rule.trainStep([batch])
        #expect(rule.u[name]!.array != u.array)
    }
}

/// Zeroth-order runs end to end: resume is bit-exact (with factor state across refreshes
/// and the resume boundary), the planner prices the rules' state exactly, and the run
/// config records and checks the settings.
@Suite(.serialized) struct ZerothOrderRunTests {
    /// N steps equal N/2 + a resume to N, bit for bit: losses, final validation loss,
    /// weights. Intervals of 3 put a factor refresh on each side of the boundary at 4.
    @Test(arguments: [StepRuleName.mezo, .lozo, .lozoM, .subzero, .eggroll])
    func resumeIsBitExact(rule: StepRuleName) throws {
        let runs = TrainingRunTests()
        let root = runs.tempDir("zo-resume")
        defer { try? FileManager.default.removeItem(at: root) }
        var c = try runs.config(root, steps: 8)
        c.stepRule = rule
        c.zerothOrder = rule == .mezo ? nil : rule == .eggroll ? ZerothOrderSettings(population: 4) : ZerothOrderSettings(rank: 2, interval: 3)
        c.gradAccum = rule == .subzero ? 2 : 1
        c.evalEvery = 4
        let a = root.appendingPathComponent("a"), b = root.appendingPathComponent("b")
        let full = try TrainingRun(config: c, outDir: a).run()
        _ = try TrainingRun(config: c, outDir: b, stopAfter: 4).run()
        _ = try TrainingRun(config: c, outDir: b, resume: true).run()
        let ma = try MetricsLog.read(url: a.appendingPathComponent("metrics.jsonl"))
        let mb = try MetricsLog.read(url: b.appendingPathComponent("metrics.jsonl"))
        #expect(ma.count == 8 && ma.map(\.loss) == mb.map(\.loss))
        #expect(ma.last?.val_loss == mb.last?.val_loss)
        #expect(ma.first?.lr == Double(1e-3 as Float) * Double(c.learningRateSchedule.multiplier(step: 0)))
        let wa = try Checkpoint.loadModel(from: a.appendingPathComponent("checkpoint"))
        let wb = try Checkpoint.loadModel(from: b.appendingPathComponent("checkpoint"))
        for (p, q) in zip(wa.parameters, wb.parameters) { #expect(p.value.array == q.value.array, "\(p.name)") }
        let stateFile = a.appendingPathComponent("checkpoint/\(Checkpoint.stepRuleFile)")
        #expect(FileManager.default.fileExists(atPath: stateFile.path) == (rule != .mezo && rule != .eggroll))
        // The run learned something from forward passes alone, and kept no optimizer state.
        #expect(full.optimizerStateBytes == 0)
        #expect(try Checkpoint.loadModel(from: a.appendingPathComponent("checkpoint")).parameters.map(\.value.array)
                != (try LlamaModel(config: c.model, seed: c.seed)).parameters.map(\.value.array))
    }

    /// `subspace memory --trainer R` prices the rule's own state exactly as the rule keeps
    /// it after a step, no gradients, the inference arena, and no optimizer state under the
    /// `.sgd` update (AdamW's, under `.optimizer`).
    @Test(arguments: [StepRuleName.mezo, .lozo, .lozoM, .subzero, .eggroll])
    func plannerPricesTheRuleState(rule: StepRuleName) throws {
        let c = ZerothOrderTests.config
        let zo = ZerothOrderSettings(rank: 3, population: 4)
        let plan = try MemoryPlan(.init(config: c, optimizer: "adamw", batch: 2, seq: 6, stepRule: rule, zerothOrder: zo))
        let model = try LlamaModel(config: c, seed: 1)
        let step = try rule.make(model: model, optimizer: RoutedOptimizer(fallback: SGD()), options: ZerothOrderTests.options(zo))
        _ = try step.trainStep([randomBatch(vocab: 16, batch: 2, seq: 6, seed: 2)])
        let kept = (step as? StatefulStepRule)?.exportState().values.reduce(0) { $0 + $1.byteCount } ?? 0
        #expect(plan.stepRuleStateBytes == kept)
        #expect([.mezo, .eggroll].contains(rule) ? kept == 0 : kept > 0)
        #expect(plan.gradientsBytes == 0 && plan.optimizerStateBytes == 0)
        #expect(plan.activationsBytes == model.activationBytes)
        if rule != .lozoM {
            let adam = try MemoryPlan(.init(config: c, optimizer: "adamw", stepRule: rule, zerothOrder: ZerothOrderSettings(rank: 3, update: .optimizer, population: 4)))
            #expect(adam.optimizerStateBytes == 2 * adam.weightsBytes)
        }
    }

    /// The run config stores the settings only when given, resolves each rule's defaults,
    /// and a resume with other settings is refused.
    @Test func runConfigRecordsAndChecksTheSettings() throws {
        var c = RunConfig(model: ZerothOrderTests.config, data: "x.txt")
        c.stepRule = .lozo
        #expect(!c.jsonString().contains("zerothOrder"))
        #expect(c.resolvedZerothOrder == ZerothOrderSettings(eps: 1e-3, rank: 1, interval: 100, momentum: 0, update: .sgd))
        var d = c
        d.zerothOrder = ZerothOrderSettings(eps: 1e-3)
        #expect(c.resumeMismatches(with: d).isEmpty)  // the default, given explicitly
        d.zerothOrder = ZerothOrderSettings(eps: 1e-2)
        #expect(c.resumeMismatches(with: d) == ["zeroth-order settings"])
        let decoded = try JSONDecoder().decode(RunConfig.self, from: Data(d.jsonString().utf8))
        #expect(decoded.zerothOrder == d.zerothOrder && decoded.stepRule == .lozo)
        #expect(ZerothOrderSettings(rank: 4).unused(by: .mezo) == ["--zo-rank"])
        #expect(throws: ConfigurationError.self) { try ZerothOrderSettings(eps: 0).validate(for: .mezo) }
        #expect(throws: ConfigurationError.self) { try ZerothOrderSettings(rank: 0).validate(for: .subzero) }
        // Without --lr a zeroth-order run keeps its own rate, not train's AdamW default.
        c.applyTrainDefaults()
        #expect(c.optimizerOptions.learningRate == nil && c.stepOptions.zerothOrderLearningRate == nil)
    }
}

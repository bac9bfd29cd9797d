import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

@Suite("MKOR") struct MKORTests {
    static let name = "model.layers.0.mlp.up_proj.weight"

    /// The inverse of a symmetric positive definite matrix by LAPACK's eigendecomposition,
    /// V diag(1/lambda) Vᵀ.
    static func lapackInverse(_ f: Tensor) throws -> Tensor {
        let d = f.shape[0]
        let (values, vectors) = try Linalg.topEigenvectors(symmetric: f, count: d)
        let out = Tensor(zeros: [d, d])
        for i in 0..<d {
            for j in 0..<d {
                var s: Float = 0
                for k in 0..<d { s += vectors.data[i * d + k] * vectors.data[j * d + k] / values[k] }
                out.data[i * d + j] = s
            }
        }
        return out
    }

    static func vector(_ n: Int, seed: UInt64, std: Float = 1) -> Tensor { randomTensor([n], seed: seed, std: std) }

    /// gamma F + (1 - gamma) v vᵀ (the running factor), built explicitly.
    static func runningAverage(_ f: Tensor, _ v: Tensor, gamma: Float) -> Tensor {
        let d = v.count, out = Tensor(uninitialized: f.shape)
        for i in 0..<d { for j in 0..<d { out.data[i * d + j] = gamma * f.data[i * d + j] + (1 - gamma) * v.data[i] * v.data[j] } }
        return out
    }

    /// Over several updates (one of them a reset), the Sherman–Morrison inverse equals
    /// LAPACK's inverse of the running factor, which the test keeps explicitly.
    @Test(arguments: [5, 12])
    func paperInverseEqualsTheExactInverseOfTheRunningFactor(d: Int) throws {
        let rule = InverseFactor(rule: .paper, decay: 0.9, stabilization: 0.1)
        let inverse = InverseFactor.identity(d)
        var factor = InverseFactor.identity(d)
        for k in 0..<8 {
            if k == 4 {
                rule.reset(inverse)
                // The reset's running factor: ((1 - zeta) F⁻¹ + zeta I)⁻¹ of the exact F⁻¹.
                let exact = try Self.lapackInverse(factor)
                for i in 0..<exact.count { exact.data[i] *= 0.9 }
                for i in 0..<d { exact.data[i * d + i] += 0.1 }
                factor = try Self.lapackInverse(exact)
            } else {
                let v = Self.vector(d, seed: UInt64(k + 10 * d), std: 0.7)
                rule.update(inverse, with: v.data)
                factor = Self.runningAverage(factor, v, gamma: 0.9)
            }
            let exact = try Self.lapackInverse(factor)
            #expect(maxAbsDiff(inverse.array, exact.array) < 1e-4, "update \(k)")
        }
    }

    /// The reference rule: P = 0.95 F⁻¹ + 0.05 I, then the unit-weight update of P, equal
    /// to LAPACK's (P⁻¹ + v vᵀ)⁻¹; its reset is the identity.
    @Test func referenceInverseIsTheDampedUnitUpdate() throws {
        let d = 6
        let rule = InverseFactor(rule: .reference)
        let inverse = InverseFactor.identity(d)
        for k in 0..<5 {
            let p = inverse.copy()
            for i in 0..<p.count { p.data[i] *= 0.95 }
            for i in 0..<d { p.data[i * d + i] += 0.05 }
            let v = Self.vector(d, seed: UInt64(k), std: 0.5)
            let f = try Self.lapackInverse(p)
            for i in 0..<d { for j in 0..<d { f.data[i * d + j] += v.data[i] * v.data[j] } }
            rule.update(inverse, with: v.data)
            #expect(maxAbsDiff(inverse.array, try Self.lapackInverse(f).array) < 1e-4)
        }
        rule.reset(inverse)
        #expect(inverse.array == InverseFactor.identity(d).array)
    }

    static func make(inner: MKOR.Inner = .sgd, lr: Float = 0.1, momentum: Float = 0, interval: Int = 1, gamma: Float = 0.95) -> MKOR {
        MKOR(
            learningRate: lr, inner: inner, adam: AdamW(learningRate: lr, weightDecay: 0),
            sgd: SGD(learningRate: lr, momentum: momentum), factor: InverseFactor(decay: gamma), factorInterval: interval)
    }

    static func statistics(_ x: Tensor, _ dy: Tensor) -> SlotStatistics {
        var s = SlotStatistics(inFeatures: x.shape[1], outFeatures: dy.shape[1])
        s.addInput(ActivationView(data: x.data, rows: x.shape[0], columns: x.shape[1]))
        s.addOutputGradient(ActivationView(data: dy.data, rows: dy.shape[0], columns: dy.shape[1]))
        return s
    }

    /// One step from identity factors, computed independently in Double: L⁻¹ and R⁻¹ by the
    /// closed form (gamma I + (1 - gamma) v vᵀ)⁻¹ = (I - c v vᵀ / (1 + c vᵀv)) / gamma, then
    /// U = L⁻¹ G R⁻¹ rescaled to ‖G‖ and W - lr U.
    @Test func oneStepClosedForm() throws {
        let (m, n, rows) = (4, 6, 5)
        let x = randomTensor([rows, n], seed: 1), dy = randomTensor([rows, m], seed: 2, std: 0.3)
        let g = randomTensor([m, n], seed: 3)
        let w0 = randomTensor([m, n], seed: 4)
        let opt = Self.make(lr: 0.05, gamma: 0.9)
        let p = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        opt.setStatistics(Self.statistics(x, dy), for: Self.name)
        opt.update(p, gradient: g, lrScale: 1)

        func inverse(_ v: [Double], gamma: Double) -> [[Double]] {
            let c = (1 - gamma) / gamma, vv = v.reduce(0) { $0 + $1 * $1 }
            return (0..<v.count).map { i in (0..<v.count).map { j in ((i == j ? 1 : 0) - c * v[i] * v[j] / (1 + c * vv)) / gamma } }
        }
        let a = (0..<n).map { j in (0..<rows).reduce(0.0) { $0 + Double(x.data[$1 * n + j]) } / Double(rows) }
        let gs = (0..<m).map { i in (0..<rows).reduce(0.0) { $0 + Double(dy.data[$1 * m + i]) } }
        let l = inverse(gs, gamma: 0.9), r = inverse(a, gamma: 0.9)
        var u = [[Double]](repeating: [Double](repeating: 0, count: n), count: m)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for k in 0..<m { for q in 0..<n { s += l[i][k] * Double(g.data[k * n + q]) * r[q][j] } }
            u[i][j] = s
        } }
        let gNorm = g.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let uNorm = u.joined().reduce(0.0) { $0 + $1 * $1 }.squareRoot()
        for i in 0..<m { for j in 0..<n {
            let expected = Double(w0.data[i * n + j]) - 0.05 * u[i][j] * gNorm / uNorm
            #expect(abs(Double(p.value.data[i * n + j]) - expected) < 1e-5)
        } }
    }

    /// Without statistics the factors stay the identity: MKOR is its inner rule exactly.
    @Test func withoutStatisticsItIsTheInnerRule() throws {
        let opt = Self.make(inner: .adam, lr: 0.01)
        let adam = AdamW(learningRate: 0.01, weightDecay: 0)
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor([5, 7], seed: 1))
        let q = Parameter(name: Self.name, role: .mlp, value: p.value.copy())
        for s in 0..<3 {
            let g = randomTensor([5, 7], seed: UInt64(10 + s))
            opt.update(p, gradient: g, lrScale: 1)
            adam.update(q, gradient: g, lrScale: 1)
        }
        #expect(p.value.array == q.value.array)
    }

    /// Steps of plain gradient descent (SGD, or MKOR over SGD) on a least-squares problem
    /// with inputs around a large common mean (condition number ~40), until the loss falls
    /// to 1e-3 of its start; the best over a grid of learning rates.
    static func stepsToTolerance(mkor: Bool) -> Int {
        let (m, n, rows) = (4, 8, 64)
        var rng = RandomStream(seed: 7)
        let mu = (0..<n).map { _ in rng.normal() }
        let scale = 6 / mu.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let x = Tensor(uninitialized: [rows, n])
        for r in 0..<rows { for j in 0..<n { x.data[r * n + j] = mu[j] * scale + rng.normal() } }
        let wStar = randomTensor([m, n], seed: 8)
        let y = x.matmul(wStar, transposeOther: true)
        var best = Int.max
        for k in 0..<20 {
            let lr = 0.001 * Foundation.pow(1.5, Float(k))
            let opt: ParameterOptimizer = mkor ? Self.make(lr: lr) : SGD(learningRate: lr)
            let p = Parameter(name: Self.name, role: .mlp, value: Tensor(zeros: [m, n]))
            func residual() -> Tensor {
                let r = x.matmul(p.value, transposeOther: true)
                for i in 0..<r.count { r.data[i] = (r.data[i] - y.data[i]) / Float(rows) }
                return r
            }
            func loss() -> Float { residual().array.reduce(0) { $0 + $1 * $1 } * Float(rows) / 2 }
            let start = loss()
            for step in 0..<400 {
                let l = loss()
                guard l.isFinite else { break }
                if l < 1e-3 * start { best = min(best, step); break }
                let dy = residual()
                let g = dy.matmul(x, transposeSelf: true)
                if let mk = opt as? MKOR { mk.setStatistics(Self.statistics(x, dy), for: Self.name) }
                opt.update(p, gradient: g, lrScale: 1)
            }
        }
        return best
    }

    @Test func convergesFasterThanSGDOnAnIllConditionedQuadratic() {
        let sgd = Self.stepsToTolerance(mkor: false), mkor = Self.stepsToTolerance(mkor: true)
        #expect(mkor < 400)
        #expect(2 * mkor <= sgd, "MKOR \(mkor) steps, SGD \(sgd)")
    }

    /// The statistics of a step: a is the mean of every input row, g the sum of every
    /// output-gradient row, over micro-batches.
    @Test func statisticsAreTheRowMeanAndTheRowSum() {
        let x1 = randomTensor([3, 4], seed: 1), x2 = randomTensor([5, 4], seed: 2)
        let d1 = randomTensor([3, 2], seed: 3), d2 = randomTensor([5, 2], seed: 4)
        var s = SlotStatistics(inFeatures: 4, outFeatures: 2)
        for (x, d) in [(x1, d1), (x2, d2)] {
            s.addInput(ActivationView(data: x.data, rows: x.shape[0], columns: 4))
            s.addOutputGradient(ActivationView(data: d.data, rows: d.shape[0], columns: 2))
        }
        let (a, g) = s.vectors(clip: 100)
        for j in 0..<4 {
            let mean = ((0..<3).map { x1.data[$0 * 4 + j] } + (0..<5).map { x2.data[$0 * 4 + j] }).reduce(0, +) / 8
            #expect(abs(a.data[j] - mean) < 1e-6)
        }
        for i in 0..<2 {
            let sum = (0..<3).map { d1.data[$0 * 2 + i] }.reduce(0, +) + (0..<5).map { d2.data[$0 * 2 + i] }.reduce(0, +)
            #expect(abs(g.data[i] - sum) < 1e-5)
        }
        let (ca, _) = s.vectors(clip: 0.01)
        #expect(ca.array.allSatisfy { abs($0) <= 0.01 })
    }

    static func config() -> LlamaConfig {
        LlamaConfig(dim: 16, layers: 2, heads: 4, kvHeads: 2, ffnDim: 24, vocab: 20, maxSeq: 8, initStd: 0.3)
    }

    static func batches(_ count: Int, batch: Int, seed: UInt64) -> [TokenBatch] {
        var r = RandomStream(seed: seed)
        return (0..<count).map { _ in
            TokenBatch(tokens: (0..<(batch * 8)).map { _ in Int32(r.int(20)) }, targets: (0..<(batch * 8)).map { _ in Int32(r.int(20)) }, batch: batch, seq: 8)
        }
    }

    static func run(_ options: StepOptions, split: Bool, steps: Int = 3) throws -> (LlamaModel, MKOR) {
        let model = try LlamaModel(config: config(), seed: 3)
        let settings = try OptimizerRegistry.settings("mkor", options: {
            var o = OptimizerOptions(); o.factorInterval = 1; o.learningRate = 1e-2; o.mkorInner = "sgd"; return o
        }()) as! MKORSettings
        let optimizer = try settings.build()
        let rule = optimizer.routes[0].optimizer as! MKOR
        let step = try BackpropStep(model: model, optimizer: optimizer, options: options)
        for s in 0..<steps {
            let whole = batches(1, batch: 4, seed: UInt64(s))[0]
            if split {
                let half = 2 * 8
                let a = TokenBatch(tokens: Array(whole.tokens[..<half]), targets: Array(whole.targets[..<half]), batch: 2, seq: 8)
                let b = TokenBatch(tokens: Array(whole.tokens[half...]), targets: Array(whole.targets[half...]), batch: 2, seq: 8)
                _ = try step.trainStep([a, b])
            } else {
                _ = try step.trainStep([whole])
            }
        }
        return (model, rule)
    }

    /// Through `BackpropStep`: the slot observers feed the factors; two micro-batches of 2
    /// sequences give the statistics (and weights) of one batch of 4; the per-layer mode gives
    /// the weights of the ordinary mode.
    @Test func gradientAccumulationAndPerLayerUpdatesSeeTheSameStatistics() throws {
        var split = StepOptions(), perLayer = StepOptions()
        split.gradAccum = 2
        perLayer.perLayerUpdate = true
        let (m1, r1) = try Self.run(StepOptions(), split: false, steps: 1)
        let (m2, r2) = try Self.run(split, split: true, steps: 1)
        let key = "model.layers.1.self_attn.q_proj.weight"
        let f1 = try #require(r1.states[key]?.left), f2 = try #require(r2.states[key]?.left)
        #expect(maxAbsDiff(f1.array, InverseFactor.identity(f1.shape[0]).array) > 1e-3, "the factors moved")
        #expect(maxAbsDiff(f1.array, f2.array) < 1e-5)
        #expect(maxAbsDiff(r1.states[key]!.right!.array, r2.states[key]!.right!.array) < 1e-5)
        // (The preconditioned SGD steps agree; AdamW's first step on the other parameters is
        // about lr·sign(g), which float noise can flip where g is near zero.)
        for (p, q) in zip(m1.parameters, m2.parameters) where p.role == .attention || p.role == .mlp {
            #expect(maxAbsDiff(p.value.array, q.value.array) < 1e-6, "\(p.name)")
        }
        let (n1, _) = try Self.run(StepOptions(), split: false)
        let (n3, _) = try Self.run(perLayer, split: false)
        for (p, q) in zip(n1.parameters, n3.parameters) { #expect(p.value.array == q.value.array, "\(p.name)") }
    }

    @Test func checkpointHooksResumeBitIdentically() throws {
        for inner in MKOR.Inner.allCases {
            let keys: Set<String> = inner == .adam
                ? ["step", "exp_avg", "exp_avg_sq", "left_inverse", "right_inverse", "reset_pending"]
                : ["momentum_buffer", "left_inverse", "right_inverse", "reset_pending"]
            try expectResumeIsBitIdentical(
                { Self.make(inner: inner, lr: 0.01, momentum: 0.9) }, shape: [6, 4], keys: keys, requiredKey: "left_inverse")
        }
    }

    /// The switch rule on a scripted loss curve: windows of 4, threshold 10%.
    @Test func hybridSwitchesWhenTheDecreaseRateFalls() throws {
        var s = MKORHybridSwitch(window: 4, threshold: 0.1)
        let losses: [Float] = [10, 10, 10, 10, 8, 8, 8, 8, 7.5, 7.5, 7.5, 7.5, 1, 1]
        var switchedAt: [Int] = []
        for (i, l) in losses.enumerated() {
            s.observe(l)
            if s.switched && switchedAt.isEmpty { switchedAt.append(i + 1) }
        }
        // Window 2 fell 20%; window 3 fell 6.25% < 10%: the switch comes after step 12.
        #expect(switchedAt == [12])
        #expect(s.switchStep == 12)
        let p = Parameter(name: "w", role: .mlp, value: Tensor(zeros: [1]))
        let restored = try MKORHybridSwitch(window: 4, threshold: 0.1).decoded(s.encode(), parameter: p)
        #expect(restored == s)
        #expect(throws: OptimizerStateError.self) { try MKORHybridSwitch(window: 2, threshold: 0.1).decoded(Tensor(shape: [6], values: [0, -1, 3, 3, 1, 1]), parameter: p) }
    }

    /// After the switch MKOR-H drops its factors and steps the raw gradient with its inner
    /// rule: AdamW.
    @Test func afterTheSwitchItIsAdamW() throws {
        let opt = MKOR(
            learningRate: 0.01, inner: .adam, adam: AdamW(learningRate: 0.01, weightDecay: 0), sgd: SGD(),
            factor: InverseFactor(), factorInterval: 1, hybrid: MKORHybridSwitch(window: 1, threshold: 1))
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor([4, 3], seed: 1))
        opt.setStatistics(Self.statistics(randomTensor([2, 3], seed: 2), randomTensor([2, 4], seed: 3)), for: Self.name)
        opt.update(p, gradient: randomTensor([4, 3], seed: 4), lrScale: 1)
        #expect(opt.states[Self.name]?.left != nil)
        opt.observeLoss(2)
        opt.observeLoss(2)
        #expect(opt.switched && !opt.wantsStatistics(atStep: 0))
        // A twin AdamW with the same moments takes the same step.
        let adam = AdamW(learningRate: 0.01, weightDecay: 0)
        let q = Parameter(name: Self.name, role: .mlp, value: p.value.copy())
        let moments = try #require(opt.states[Self.name]?.adam)
        adam.states[Self.name] = AdamW.State(step: moments.step, m: moments.m.copy(), v: moments.v.copy())
        let g = randomTensor([4, 3], seed: 5)
        opt.update(p, gradient: g, lrScale: 1)
        adam.update(q, gradient: g, lrScale: 1)
        #expect(p.value.array == q.value.array)
        #expect(opt.states[Self.name]?.left == nil)
        #expect(opt.stateBytes(for: p) == 2 * p.value.byteCount)
        #expect(Set(opt.exportState(for: p).keys) == ["step", "exp_avg", "exp_avg_sq", MKORHybridSwitch.key])
    }

    @Test func settingsValidateAndDescribeTheFactors() throws {
        func options(_ edit: (inout OptimizerOptions) -> Void) -> OptimizerOptions { var o = OptimizerOptions(); edit(&o); return o }
        for (name, o) in [
            ("mkor", options { $0.factorInterval = 0 }), ("mkor", options { $0.statisticsDecay = 1 }),
            ("mkor", options { $0.mkorInner = "lbfgs" }), ("mkor-h", options { $0.switchWindow = 0 }),
            ("mkor-h", options { $0.switchThreshold = .nan }), ("mkor", options { $0.variant = "neither" }),
        ] {
            #expect(throws: ConfigurationError.self) { try OptimizerRegistry.settings(name, options: o) }
        }
        let opt = try OptimizerRegistry.make("mkor", options: OptimizerOptions())
        let spec = ParameterSpec(name: "model.layers.0.mlp.up_proj.weight", role: .mlp, shape: [24, 16])
        let footprint = try #require(opt.optimizer(for: spec).stateFootprint(for: spec))
        #expect(footprint.bytes == 4 * (24 * 24 + 16 * 16 + 2 * 24 * 16))
        #expect(opt.optimizer(for: ParameterSpec(name: "model.norm.weight", role: .norm, shape: [16])) is AdamW)
        let h = try OptimizerRegistry.resolvedSettings("mkor-h", options: OptimizerOptions())
        #expect(h.groups[0].settings["switchWindow"] == .int(50))
        #expect(h.groups[0].settings["factorInterval"] == .int(10))
        #expect(OptimizerRegistry.ignoredOptions("adamw", options: options { $0.factorInterval = 3 }) == ["--factor-interval"])
    }

    /// Through `TrainingRun`: a run stopped at step 8 and resumed equals the uninterrupted run,
    /// loss for loss and bit for bit, for MKOR and for MKOR-H, whose switch (window 5,
    /// threshold 1: the first rate check, after step 10) comes after the resume.
    @Test(arguments: ["mkor", "mkor-h"])
    func trainingRunResumesBitForBit(method: String) throws {
        let runs = TrainingRunTests()
        let root = runs.tempDir("mkor-\(method)")
        defer { try? FileManager.default.removeItem(at: root) }
        var c = try runs.config(root, steps: 16)
        c.gradAccum = 2
        c.optimizer = method
        c.optimizerOptions.factorInterval = 3
        if method == "mkor-h" { c.optimizerOptions.switchWindow = 5; c.optimizerOptions.switchThreshold = 1 }
        let a = try runs.expectResumeIsExact(c, stopAfter: 8, "mkor-\(method)-resume", in: root)
        let state = try SafeTensorsFile.load(url: a.appendingPathComponent("checkpoint").appendingPathComponent(Checkpoint.optimizerFile))
        let q = "model.layers.0.self_attn.q_proj.weight"
        if method == "mkor-h" {
            #expect(try state.tensor("\(q)/\(MKORHybridSwitch.key)").array.prefix(3) == [1, 10, 16])
            #expect(!state.names.contains("\(q)/left_inverse"))
        } else {
            #expect(try state.tensor("\(q)/left_inverse").shape == [32, 32])
            #expect(try state.tensor("\(q)/right_inverse").shape == [32, 32])
        }
    }
}

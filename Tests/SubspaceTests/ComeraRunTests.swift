import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// CoMERA's objective (`ComeraObjective`) in closed form, and whole runs: resume across the
/// stage switch, the live report and the dense export (the planner: `AdapterRunTests`).
@Suite(.serialized) struct ComeraRunTests {
    let runs = TrainingRunTests()

    static let config = LlamaConfig(dim: 16, layers: 1, heads: 2, ffnDim: 32, vocab: 32, maxSeq: 16)

    /// A TT model with gates in (0.5, 1.5) and, in slot 0, two pruned gates (one negative).
    static func model(_ s: ComeraSettings = ComeraSettings()) throws -> LlamaModel {
        var s = s; s.rank = 3
        let m = try LlamaModel(config: config, seed: 2, operators: AdapterSettings(method: .comera).with(s).operators())
        var r = RandomStream(seed: 5)
        for op in m.tensorTrainOperators { for g in op.gates { r.fillUniform(g.value, 0.5, 1.5) } }
        let g = m.tensorTrainOperators[0].gates[0].value
        g.data[0] = 0.003; g.data[1] = -0.02
        return m
    }

    /// Gradients of ones on every parameter, then `adjust`.
    static func adjusted(_ m: LlamaModel, _ o: ComeraObjective, step: Int, loss: Float) -> [String: [Float]] {
        for p in m.parameters { p.gradient().assign(Tensor(shape: p.shape, repeating: 1)) }
        o.begin(step: step, loss: loss)
        for p in m.parameters { o.adjust(p) }
        return Dictionary(uniqueKeysWithValues: m.parameters.map { ($0.name, $0.grad!.array) })
    }

    /// Early stage: dL = dCE + lambda sign(g) / #active on active gates, nothing on pruned
    /// ones or on any other tensor; `sum` drops the division.
    @Test(arguments: [ComeraSettings.Penalty.mean, .sum])
    func earlyStageAddsTheGatePenalty(penalty: ComeraSettings.Penalty) throws {
        var s = ComeraSettings(); s.penalty = penalty; s.lambda = 0.05
        let m = try Self.model(s)
        let o = try ComeraObjective(model: m, settings: s, steps: 30)
        #expect(o.lateStart == 20)
        let active = m.tensorTrainOperators.reduce(0) { $0 + $1.activeRanks.reduce(0, +) }
        #expect(active == m.tensorTrainOperators.reduce(0) { $0 + $1.shape.internalRanks.reduce(0, +) } - 1)
        let g = Self.adjusted(m, o, step: 0, loss: 4)
        let unit: Float = penalty == .mean ? 0.05 / Float(active) : 0.05
        let gate = m.tensorTrainOperators[0].gates[0]
        #expect(g[gate.name]![0] == 1)  // pruned: the cross-entropy's gradient only
        #expect(g[gate.name]![1] == 1 - unit)  // |-0.02| is active, sign -1
        #expect(g[gate.name]![2] == 1 + unit)
        for p in m.parameters where !p.name.contains("rank_parameters") { #expect(g[p.name]!.allSatisfy { $0 == 1 }, "\(p.name)") }
        #expect(o.lateIndicator == nil)
    }

    /// Late stage: (a + 1 - l) dCE + (b + l) dR with l = 1 when the size is relatively
    /// further from S* than the loss from L*, else 0.
    @Test func lateStageSwitchesBetweenSizeAndLoss() throws {
        var s = ComeraSettings(); s.lateStart = 0; s.targetLoss = 3
        let m = try Self.model(s)
        let o = try ComeraObjective(model: m, settings: s, steps: 10)
        let size = Float(o.size)
        // (4 - 3) / 4 = 0.25 < (S - 0.2 S) / S = 0.8: work on the size, l = 1.
        var g = Self.adjusted(m, o, step: 0, loss: 4)
        #expect(o.targets!.size == 0.2 * size && o.targets!.loss == 3)
        #expect(o.lateIndicator == 1)
        let active = Float(m.tensorTrainOperators.reduce(0) { $0 + $1.activeRanks.reduce(0, +) })
        let gate = m.tensorTrainOperators[0].gates[0].name, core = m.tensorTrainOperators[0].cores[0].name
        #expect(g[core]!.allSatisfy { abs($0 - 0.1) < 1e-6 })
        #expect(abs(g[gate]![2] - (0.1 + 1.01 / active)) < 1e-6)
        // A loss far above its target: (40 - 3) / 40 = 0.925 > 0.8, l = 0; the targets stay.
        g = Self.adjusted(m, o, step: 1, loss: 40)
        #expect(o.lateIndicator == 0 && o.targets!.size == 0.2 * size)
        #expect(g[core]!.allSatisfy { abs($0 - 1.1) < 1e-6 })
        #expect(abs(g[gate]![2] - (1.1 + 0.01 / active)) < 1e-6)
        #expect(abs(g[gate]![0] - 1.1) < 1e-6)
        // --target-compression fixes S* from the dense size instead.
        s.targetCompression = 4
        let o2 = try ComeraObjective(model: m, settings: s, steps: 10)
        _ = Self.adjusted(m, o2, step: 0, loss: 4)
        let dense = m.tensorTrainOperators.reduce(0) { $0 + $1.inFeatures * $1.outFeatures }
        #expect(o2.targets!.size == Float(Double(dense) / 4))
    }

    /// The default target loss is the debiased moving average of the training losses when
    /// the late stage begins; the state round-trips.
    @Test func switchFixesTheTargetsAndTheStateRoundTrips() throws {
        var s = ComeraSettings(); s.lateStart = 3
        let m = try Self.model(s)
        let o = try ComeraObjective(model: m, settings: s, steps: 10)
        for (i, l) in [Float(5), 4, 3].enumerated() { _ = Self.adjusted(m, o, step: i, loss: l) }
        #expect(o.targets == nil)
        _ = Self.adjusted(m, o, step: 3, loss: 2)
        let b = ComeraObjective.lossDecay
        let avg = (((1 - b) * 5 * b + (1 - b) * 4) * b + (1 - b) * 3) * b + (1 - b) * 2
        #expect(abs(o.targets!.loss - avg / (1 - b * b * b * b)) < 1e-5)
        let o2 = try ComeraObjective(model: m, settings: s, steps: 10)
        try o2.importState(o.exportState())
        #expect(o2.targets! == o.targets!)
        #expect(throws: ConfigurationError.self) { try o2.importState([:]) }
    }

    /// The gates step at `gateLearningRateScale` times the rate, in normal and per-layer
    /// mode; everything else at the rate (plain SGD: the step is lr times the gradient).
    @Test(arguments: [false, true])
    func gatesStepAtTheirScaledRate(perLayer: Bool) throws {
        var options = OptimizerOptions(); options.learningRate = 0.1; options.momentum = 0
        var stepOptions = StepOptions(); stepOptions.perLayerUpdate = perLayer
        var moves: [[Float]] = []
        for scale: Float in [1, 10] {
            var s = ComeraSettings(); s.lambda = 0; s.gateLearningRateScale = scale
            let m = try Self.model(s)
            let before = m.parameters.map { $0.value.array }
            let rule = try ComeraStep(inner: BackpropStep(model: m, optimizer: OptimizerRegistry.make("sgd", options: options), options: stepOptions), settings: s, steps: 10)
            _ = try rule.trainStep([randomBatch(vocab: 32, batch: 2, seq: 8, seed: 3)])
            moves.append(zip(m.parameters, before).flatMap { p, b in zip(p.value.array, b).map { $0 - $1 } })
        }
        let m = try Self.model()
        var i = 0
        for p in m.parameters {
            let a = Array(moves[0][i..<(i + p.count)]), b = Array(moves[1][i..<(i + p.count)])
            let want = p.name.contains("rank_parameters") ? a.map { $0 * 10 } : a
            #expect(relativeError(b, want) < 1e-4, "\(p.name)")
            i += p.count
        }
    }

    func runConfig(_ root: URL, steps: Int) throws -> RunConfig {
        var c = try runs.config(root, steps: steps)
        var s = ComeraSettings(); s.rank = 6; s.lateStart = 4; s.lambda = 0.05
        c.adapter = AdapterSettings(method: .comera).with(s)
        c.evalEvery = 0
        c.optimizerOptions.learningRate = 1e-2
        return c
    }

    /// A run across the switch resumes bit for bit (the objective's state is in the
    /// checkpoint), reports its TT size each step, and its checkpoint exports to a dense
    /// Hugging Face model with the same logits.
    @Test func runResumesExactlyReportsAndExportsDense() throws {
        let root = runs.tempDir("comera-run")
        defer { try? FileManager.default.removeItem(at: root) }
        let c = try runConfig(root, steps: 10)
        let a = try runs.expectResumeIsExact(c, stopAfter: 6, "comera", in: root)
        let m = try MetricsLog.read(url: a.appendingPathComponent("metrics.jsonl"))
        #expect(m.allSatisfy { $0.tt_params != nil && $0.tt_compression != nil && $0.tt_ranks != nil })
        #expect(m.prefix(4).allSatisfy { $0.comera_late == nil } && m.suffix(6).allSatisfy { $0.comera_late != nil })
        #expect(m.last!.loss < m.first!.loss)
        let ckpt = a.appendingPathComponent("checkpoint")
        #expect(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent(Checkpoint.stepRuleFile).path))
        let tt = try Checkpoint.loadModel(from: ckpt)
        #expect(tt.tensorTrainSummary!.parameters == m.last!.tt_params)
        let out = root.appendingPathComponent("dense")
        _ = try Checkpoint.merge(from: ckpt, to: out)
        let dense = try Checkpoint.loadModel(from: out)
        #expect(dense.tensorTrainOperators.isEmpty)
        let batch = randomBatch(vocab: 300, batch: 2, seq: 16, seed: 9)
        #expect(relativeError(try dense.logits(batch).array, try tt.logits(batch).array) < 1e-5)
    }

    /// Settings that cannot run are one-line configuration errors.
    @Test func badSettingsAreRefused() throws {
        var s = ComeraSettings()
        let edits: [(inout ComeraSettings) -> Void] = [
            { $0.rank = 0 }, { $0.targetCompression = 1 }, { $0.targetCompression = .infinity },
            { $0.targetCompression = .nan }, { $0.modes = 0 }, { $0.threshold = -1 }, { $0.targetRatio = 0 },
        ]
        for edit in edits {
            var t = s; edit(&t)
            #expect(throws: ConfigurationError.self) { try t.validate() }
        }
        s.modes = 3
        // 16 = 2 * 2 * 4, but 18 -> 2 * 3 * 3 and 17 is prime.
        #expect(throws: ConfigurationError.self) {
            try AdapterSettings(method: .comera).with(s).validate(for: LlamaConfig(dim: 16, layers: 1, heads: 2, ffnDim: 17, vocab: 32, maxSeq: 16))
        }
        var c = RunConfig(model: Self.config, data: "x")
        c.seq = 16; c.batch = 2
        c.adapter = AdapterSettings(method: .comera)
        c.stepRule = .mezo
        do { try c.validate(); Issue.record("comera with mezo validated") } catch let e as ConfigurationError {
            #expect(e.message.contains("--trainer backprop"), "\(e.message)")
        }
    }
}

extension AdapterSettings {
    /// These settings with CoMERA's `s`.
    func with(_ s: ComeraSettings) -> AdapterSettings { var a = self; a.comera = s; return a }
}

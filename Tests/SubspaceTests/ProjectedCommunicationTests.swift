import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceOptim
@testable import SubspaceTraining

/// The projected all-reduce without MPI: a projecting rule driven through its
/// `GradientProjecting` calls (project, step from R; compute, install and take a refresh
/// basis) takes bit for bit the steps of its ordinary update, and the trainer with a
/// one-rank `GradientReducer` in projected mode trains exactly as without it, sending the
/// bytes `CommunicationPlan` plans. `DataParallelTests` proves the two-rank runs.
@Suite struct ProjectedCommunicationTests {
    static func rule(_ kind: String) throws -> GradientProjecting {
        switch kind {
        case "galore": return try GaLore(learningRate: 0.01, rank: 3, updateGap: 3)
        case "galore8bit": return try GaLore(learningRate: 0.01, rank: 3, updateGap: 3, quantization: StateQuantization(blockSize: 16, minimumSize: 1))
        case "galore-gaussian": return try GaLore(learningRate: 0.01, rank: 3, updateGap: 3, projection: .gaussian, seed: 5)
        case "galore-adafactor": return try GaLoreAdafactor(learningRate: 0.01, rank: 3, updateGap: 3)
        case "galore-adafactor-rademacher": return try GaLoreAdafactor(learningRate: 0.01, rank: 3, updateGap: 3, projection: .rademacher, seed: 5)
        default: return try ProjFactor(learningRate: 0.01, rank: 3, updateGap: 3, granularity: 2)
        }
    }

    @Test("the protocol's calls take the ordinary update's steps", arguments: ["galore", "galore8bit", "galore-gaussian", "galore-adafactor", "galore-adafactor-rademacher", "projfactor"])
    func protocolStepsEqualUpdate(_ kind: String) throws {
        let a = try Self.rule(kind), b = try Self.rule(kind)
        for shape in [[12, 8], [8, 12]] {
            let pa = Parameter(name: "w\(shape[0])", role: .mlp, value: randomTensor(shape, seed: 1))
            let pb = Parameter(name: pa.name, role: .mlp, value: pa.value.copy())
            var refreshes: [Bool] = []
            for step in 0..<7 {
                let g = randomTensor(shape, seed: UInt64(100 + step))
                a.update(pa, gradient: g, lrScale: 1)
                switch b.payload(for: pb) {
                case .full: Issue.record("\(kind) sends the whole gradient of a matrix")
                case .projected(let s):
                    let r = b.projectGradient(pb, gradient: g)
                    #expect(r.shape == s)
                    b.update(pb, projectedGradient: r, lrScale: 1)
                    refreshes.append(false)
                case .refresh(let s):
                    let basis = b.refreshBasis(pb, gradient: g)
                    #expect(basis.shape == s)
                    b.installBasis(pb, basis)
                    b.update(pb, gradient: g, lrScale: 1)
                    refreshes.append(true)
                }
            }
            #expect(pa.value.array == pb.value.array, "\(kind) \(shape)")
            // SVD projectors refresh at steps 0, T, 2T; seeded ones never need a broadcast.
            let svd = ["galore", "galore8bit", "galore-adafactor"].contains(kind)
            #expect(refreshes == (0..<7).map { svd && $0 % 3 == 0 }, "\(kind): \(refreshes)")
            #expect(b.projectedShapes(for: pb)?.basis == (svd ? (shape[0] >= shape[1] ? [3, shape[1]] : [shape[0], 3]) : nil))
        }
    }

    /// A basis installed from elsewhere is the one the refresh takes, even when it is not the
    /// SVD of this rank's gradient (what a broadcast from another rank leaves).
    @Test func installedBasisIsTaken() throws {
        let g = try GaLore(learningRate: 0.01, rank: 2, updateGap: 3)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([6, 4], seed: 1))
        let basis = try #require(Projector(shape: [6, 4], rank: 2, gap: 3).matrixShape == [2, 4] ? randomTensor([2, 4], seed: 7) : nil)
        g.installBasis(p, basis)
        g.update(p, gradient: randomTensor([6, 4], seed: 2), lrScale: 1)
        #expect(g.states["w"]?.projector?.matrix?.array == basis.array)
    }

    func train(_ name: String, perLayer: Bool, accum: Int, reducer: GradientReducer?, steps: Int = 5) throws -> (LlamaModel, [Int]) {
        var o = OptimizerOptions(); o.rank = 3; o.updateGap = 2; o.learningRate = 0.01
        let model = try LlamaModel(config: smallConfig(), seed: 9)
        let optimizer = try OptimizerRegistry.make(name, options: o)
        var so = StepOptions(); so.gradAccum = accum; so.perLayerUpdate = perLayer
        let trainer = try Trainer(model: model, optimizer: optimizer, options: so)
        reducer?.projecting = optimizer
        trainer.reducer = reducer
        var bytes: [Int] = []
        for s in 0..<steps {
            let before = reducer?.bytes ?? 0
            _ = try trainer.trainStep((0..<accum).map { randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(10 * s + $0)) })
            bytes.append((reducer?.bytes ?? 0) - before)
        }
        return (model, bytes)
    }

    @Test("one rank in projected mode trains exactly as one process, sending the planned bytes",
          arguments: ["galore", "galore-adafactor", "projfactor"], [(false, 1), (true, 2), (false, 2)])
    func oneRankProjectedEqualsPlain(_ name: String, _ mode: (perLayer: Bool, accum: Int)) throws {
        let (plain, _) = try train(name, perLayer: mode.perLayer, accum: mode.accum, reducer: nil)
        let (projected, bytes) = try train(name, perLayer: mode.perLayer, accum: mode.accum, reducer: GradientReducer(communicator: SingleProcess()))
        for (p, q) in zip(plain.parameters, projected.parameters) { #expect(p.value.array == q.value.array, "\(name) \(mode) \(p.name)") }
        var o = OptimizerOptions(); o.rank = 3; o.updateGap = 2
        let plan = CommunicationPlan(specs: smallConfig().parameterSpecs.filter(\.trainable), bytesPerElement: 4, ranks: 1,
                                     optimizer: try OptimizerRegistry.make(name, options: o))
        // Refresh steps (0, 2, 4 with T = 2) send whole gradients and GaLore's bases.
        let expected = (0..<5).map { $0 % 2 == 0 ? plan.projectedRefreshBytes : plan.projectedBytes }
        #expect(bytes == expected.map { $0 ?? -1 }, "\(name): measured \(bytes), planned \(expected)")
        #expect(plan.projectedBytes! < plan.allreduceBytes)
    }
}

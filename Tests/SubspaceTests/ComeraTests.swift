import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// CoMERA's tensor-train operator (`TensorTrainLinear`): shapes, both contraction orders,
/// gradients, gate pruning and size accounting.
@Suite struct ComeraTests {
    static func slot(out: Int, in inF: Int) -> LinearSlotSpec {
        LinearSlotSpec(name: "up_proj", module: "mlp", layer: 0, inFeatures: inF, outFeatures: out, role: .mlp)
    }

    /// A TT operator with random gates around 1 (some pruned when `prune`), so that every
    /// gate matters in the checks.
    static func op(out: Int = 12, in inF: Int = 8, modes: Int = 2, rank: Int = 3, prune: Bool = false, seed: UInt64 = 1) throws -> TensorTrainLinear {
        var s = ComeraSettings()
        s.rank = rank; s.modes = modes
        let op = try #require(try TensorTrainLinear.Kind(settings: s).make(for: slot(out: out, in: inF), initializer: ParameterInitializer(seed: seed, std: 0.02)) as? TensorTrainLinear)
        var r = RandomStream(seed: seed &+ 9)
        for g in op.gates {
            r.fillUniform(g.value, 0.5, 1.5)
            if prune { g.value.data[0] = 0.004; if g.count > 2 { g.value.data[2] = -0.006 } }
        }
        // Cores of order one, so the finite differences are well above float rounding.
        for c in op.cores { r.fillNormal(c.value, std: 0.7) }
        return op
    }

    @Test func modesAreBalancedAndUnsplittableSidesAreRefused() throws {
        #expect(TensorTrainShape.balancedFactors(256, into: 2) == [16, 16])
        #expect(TensorTrainShape.balancedFactors(768, into: 3) == [8, 8, 12])
        #expect(TensorTrainShape.balancedFactors(688, into: 3) == [4, 4, 43])
        #expect(TensorTrainShape.balancedFactors(12, into: 2) == [3, 4])
        #expect(TensorTrainShape.balancedFactors(7, into: 2) == nil)
        #expect(TensorTrainShape.balancedFactors(12, into: 3) == [2, 2, 3])
        #expect(TensorTrainShape.balancedFactors(8, into: 4) == nil)
        let s = try TensorTrainShape(outFeatures: 256, inFeatures: 256, order: 3, maxRank: 30)
        #expect(s.ranks == [1, 16, 30, 1])  // the first cut holds at most m_1 n_1 = 4 * 4
        #expect(throws: ConfigurationError.self) { try TensorTrainShape(outFeatures: 14, inFeatures: 8, order: 3, maxRank: 4) }
    }

    /// Central differences of a probe of y for the input, every core and every gate, in both
    /// orders and with d = 1, 2, 3 (pruned gates included: their gradient is exactly zero).
    @Test(arguments: [(1, TensorTrainContraction.sequential), (2, .sequential), (2, .dense), (3, .sequential), (3, .dense)])
    func finiteDifferences(modes: Int, order: TensorTrainContraction) throws {
        let op = try Self.op(modes: modes, prune: modes > 1)
        op.contraction = order
        let rows = 3
        let x = randomTensor([rows, 8], seed: 5), w = randomTensor([rows, 12], seed: 6)
        let y = Tensor(zeros: [rows, 12])
        func f() -> Double { op.forward(x.data, y.data, rows: rows, accumulate: false, mode: .training); return probe(y.data, w) }
        let dx = Tensor(zeros: [rows, 8])
        op.backwardInput(w.data, dx.data, rows: rows, accumulate: false)
        op.accumulateGradients(dy: w.data, x: x.data, rows: rows)
        var checks = [finiteDifference(x, analytic: dx, samples: 24, h: 1e-2, f)]
        // y is linear in each entry, so the differences are exact up to rounding; a gate's step
        // stays on its side of the threshold.
        for p in op.parameters { checks.append(finiteDifference(p.value, analytic: p.grad!, samples: 24, h: p.shape.count == 1 ? 1e-3 : 1e-2, f)) }
        for (i, c) in checks.enumerated() {
            #expect(relativeError(c.analytic, c.numeric) < 2e-3, "tensor \(i): \(relativeError(c.analytic, c.numeric))")
        }
        if modes > 1 {
            #expect(op.gates[0].grad!.data[0] == 0)
            let r = op.shape.ranks[1]
            // the pruned rank slice of core 1 (its last axis) gets no gradient
            #expect(stride(from: 0, to: op.cores[0].count, by: r).allSatisfy { op.cores[0].grad!.data[$0] == 0 })
        }
    }

    /// The orders agree on y, dx and every parameter gradient, for one row and for many, and
    /// both are the dense map of `denseWeight()`.
    @Test(arguments: [1, 2, 3])
    func contractionOrdersAgree(modes: Int) throws {
        let a = try Self.op(out: 24, in: 16, modes: modes, rank: 4, prune: true), b = try Self.op(out: 24, in: 16, modes: modes, rank: 4, prune: true)
        a.contraction = .sequential; b.contraction = .dense
        for rows in [1, 7] {
            let x = randomTensor([rows, 16], seed: 2), dy = randomTensor([rows, 24], seed: 3)
            let ya = Tensor(zeros: [rows, 24]), yb = Tensor(zeros: [rows, 24]), dxa = Tensor(zeros: [rows, 16]), dxb = Tensor(zeros: [rows, 16])
            a.forward(x.data, ya.data, rows: rows, accumulate: false, mode: .training)
            b.forward(x.data, yb.data, rows: rows, accumulate: false, mode: .training)
            a.backwardInput(dy.data, dxa.data, rows: rows, accumulate: false)
            b.backwardInput(dy.data, dxb.data, rows: rows, accumulate: false)
            a.accumulateGradients(dy: dy.data, x: x.data, rows: rows)
            b.accumulateGradients(dy: dy.data, x: x.data, rows: rows)
            #expect(relativeError(ya.array, yb.array) < 1e-5)
            #expect(relativeError(dxa.array, dxb.array) < 1e-5)
            for (p, q) in zip(a.parameters, b.parameters) { #expect(relativeError(p.grad!.array, q.grad!.array) < 1e-5, "\(p.name)") }
        }
        for op in [a, b] { expectDenseMap(op, weight: a.denseWeight().array) }
    }

    /// A pruned gate contributes exactly zero: W is bit for bit W with that gate set to 0,
    /// and neither the pruned gate's value (below the threshold) nor its rank slice of the
    /// cores changes the output.
    @Test(arguments: [TensorTrainContraction.sequential, .dense])
    func prunedRanksContributeExactlyZero(order: TensorTrainContraction) throws {
        let op = try Self.op(out: 24, in: 16, modes: 3, rank: 4, prune: true)
        op.contraction = order
        let x = randomTensor([5, 16], seed: 8)
        func y() -> [Float] { let t = Tensor(zeros: [5, 24]); op.forward(x.data, t.data, rows: 5, accumulate: false, mode: .inference); return t.array }
        let before = y(), w = op.denseWeight().array
        op.gates[0].value.data[0] = -0.0099
        let r = op.shape.ranks[1]
        for i in stride(from: 0, to: op.cores[0].count, by: r) { op.cores[0].value.data[i] = 1e3 }  // rank 0's slice of G_1
        for i in 0..<(op.cores[1].count / op.cores[1].shape[0]) { op.cores[1].value.data[i] = -1e3 }  // and of G_2
        #expect(y() == before)
        #expect(op.denseWeight().array == w)
        #expect(op.activeRanks == [r - 2, op.shape.ranks[2] - 2])
        op.gates[0].value.data[0] = 0.01  // at the threshold: active again
        #expect(y() != before)
    }

    /// Sizes count the surviving ranks: sum_k r^_(k-1) m_k n_k r^_k.
    @Test func sizeAndCompressionCountSurvivingRanks() throws {
        let op = try Self.op(out: 24, in: 16, modes: 3, rank: 4, prune: true)
        let s = op.shape
        #expect(s.outModes == [2, 3, 4] && s.inModes == [2, 2, 4] && s.ranks == [1, 4, 4, 1])
        #expect(op.activeRanks == [2, 2])
        #expect(op.activeParameterCount == 1 * 2 * 2 * 2 + 2 * 3 * 2 * 2 + 2 * 4 * 4 * 1)
        #expect(op.compressionRatio == Double(24 * 16) / Double(op.activeParameterCount))
        for v in 0..<4 { op.gates[1].value.data[v] = 0 }
        #expect(op.activeParameterCount == 0 && op.compressionRatio.isInfinite)
        #expect(op.denseWeight().array.allSatisfy { $0 == 0 })
    }

    /// The reference's initialisation: gates one, W's entries of variance 1 / (in + out).
    @Test func initialisationMatchesTheReference() throws {
        var s = ComeraSettings(); s.rank = 16; s.modes = 3
        let op = try #require(try TensorTrainLinear.Kind(settings: s).make(for: Self.slot(out: 256, in: 512), initializer: ParameterInitializer(seed: 3, std: 0.02)) as? TensorTrainLinear)
        #expect(op.gates.allSatisfy { $0.value.array.allSatisfy { $0 == 1 } })
        #expect(op.parameters.map(\.name) == ["factors.0", "factors.1", "factors.2", "rank_parameters.0", "rank_parameters.1"].map { "model.layers.0.mlp.up_proj.tensor." + $0 })
        let w = op.denseWeight().array
        let std = (w.reduce(0) { $0 + Double($1 * $1) } / Double(w.count)).squareRoot()
        #expect(abs(std / (1.0 / 768).squareRoot() - 1) < 0.15, "std \(std)")
    }

    /// The FLOP count picks the sequential order for one row (sampling) and the dense one for
    /// a training batch of `tiny`'s attention slot.
    @Test func contractionChoiceFollowsTheFlopCount() throws {
        let s = try TensorTrainShape(outFeatures: 256, inFeatures: 256, order: 2, maxRank: 30)
        #expect(s.cheaperContraction(rows: 1, training: false) == .sequential)
        #expect(s.cheaperContraction(rows: 2048, training: true) == .dense)
        let gemm: Double = 2 * 2048 * 256 * 256, rebuild: Double = 2 * 16 * 16 * 30 * 16 * 16
        #expect(s.flops(.dense, rows: 2048, training: false) == gemm + rebuild)
        let small = try TensorTrainShape(outFeatures: 256, inFeatures: 256, order: 2, maxRank: 2)
        #expect(small.cheaperContraction(rows: 2048, training: true) == .sequential)
    }

    /// Through the whole model: every core and gate against finite differences of the loss.
    @Test func gradientsThroughTheWholeModel() throws {
        var s = ComeraSettings(); s.rank = 3
        let model = try LlamaModel(config: smallConfig(), seed: 3, operators: .dense.replacing(where: { _ in true }, with: TensorTrainLinear.Kind(settings: s)))
        for (i, slot) in model.slots.enumerated() {
            var r = RandomStream(seed: 40).split("g", index: UInt64(i))
            for g in (slot.op as! TensorTrainLinear).gates { r.fillUniform(g.value, 0.5, 1.5) }
        }
        let r = try expectModelGradients(model, batch: randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(r.checked.contains("model.layers.1.mlp.down_proj.tensor.rank_parameters.0"))
        #expect(r.checked.contains("model.layers.0.self_attn.q_proj.tensor.factors.1"))
    }
}

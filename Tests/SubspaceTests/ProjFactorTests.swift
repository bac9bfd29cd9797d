import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite("ProjFactor") struct ProjFactorTests {
    static func make(
        rank: Int = 3, gap: Int = 4, c: Int = 2, lr: Float = 0.01, scale: Float = 1, wd: Float = 0,
        correction: ProjFactor.Correction = .reference
    ) throws -> ProjFactor {
        try ProjFactor(
            learningRate: lr, weightDecay: wd, rank: rank, updateGap: gap, scale: scale, granularity: c, seed: 7,
            correction: correction)
    }

    /// The view (m·c) x (n/c) or (m/c) x (n·c), and Gs = X Pᵀ or Pᵀ X of the reshaped copy.
    @Test(arguments: [[24, 16], [16, 24]])
    func granularityAndProjection(shape: [Int]) throws {
        let m = shape[0], n = shape[1], c = 4, r = 3
        let pf = try Self.make(rank: r, c: c)
        let geo = pf.geometry(rows: m, cols: n)
        #expect(geo.reshaped == (m >= n ? [m * c, n / c] : [m / c, n * c]))
        #expect(geo.granularity == c && geo.rank == r)
        let p = Parameter(name: "w", role: .mlp, value: Tensor(zeros: shape))
        var s = pf.makeState(for: p)
        #expect(s.momentum.count == max(m, n) * c * r)
        pf.prepare(&s)
        let g = randomTensor(shape, seed: 1)
        let gs = Tensor(zeros: s.projector.projectedShape)
        ProjFactor.projectAdding(g, into: gs, projector: s.projector)
        let x = g.reshaped(geo.reshaped), pm = s.projector.matrix!
        let expected = m >= n ? x.matmul(pm, transposeOther: true) : pm.matmul(x, transposeSelf: true)
        #expect(relativeError(gs.array, expected.array) < 1e-6)
        // A granularity that does not divide the projected side falls back to a divisor.
        #expect(try Self.make(c: 5).geometry(rows: 24, cols: 16).granularity == 4)
        #expect(try Self.make(c: 3).geometry(rows: 16, cols: 24).granularity == 2)
    }

    /// Accumulating micro-batches in projected form equals projecting their sum, and the
    /// pending sum holds max(m, n)·c·r floats instead of the m x n gradient.
    @Test(arguments: [[24, 16], [16, 24]])
    func accumulationEqualsProjectingTheSum(shape: [Int]) throws {
        let m = shape[0], n = shape[1], c = 2, r = 3
        let a = try Self.make(rank: r, gap: 2, c: c), b = try Self.make(rank: r, gap: 2, c: c)
        let pa = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
        let pb = Parameter(name: "w", role: .mlp, value: pa.value.copy())
        for step in 0..<5 {  // steps 0, 2, 4 resample P
            let parts = (0..<3).map { randomTensor(shape, seed: UInt64(10 * step + $0)) }
            a.accumulate(pa, gradient: parts[0])
            a.accumulate(pa, gradient: parts[1])
            #expect(a.pendingBytes(for: pa) == max(m, n) * c * r * 4)
            #expect(a.stateBytes(for: pa) == (2 * max(m, n) * c * r + m + n) * 4)
            // The pending sum is the projection of the sum so far, with this step's P.
            var s = a.states["w"]!
            a.prepare(&s)
            let sum01 = sumOf(Array(parts[0..<2]))
            let direct = Tensor(zeros: s.projector.projectedShape)
            ProjFactor.projectAdding(sum01, into: direct, projector: s.projector)
            #expect(relativeError(s.pending!.array, direct.array) < 1e-5)
            a.update(pa, gradient: parts[2], lrScale: 1)
            #expect(a.pendingBytes(for: pa) == 0)
            b.update(pb, gradient: sumOf(parts), lrScale: 1)
        }
        #expect(relativeError(a.states["w"]!.momentum.array, b.states["w"]!.momentum.array) < 1e-5)
        #expect(relativeError(pa.value.array, pb.value.array) < 1e-6)
        #expect(a.states["w"]!.projector.matrix == nil)
        #expect(a.stateBytes(for: pa) == (max(m, n) * c * r + m + n) * 4)
    }

    /// One step from the definitions (Double arithmetic, the reshape done by copying).
    @Test(arguments: [ProjFactor.Correction.reference, .paper])
    func firstStepMatchesTheDefinition(correction: ProjFactor.Correction) throws {
        let shape = [16, 24], m = 16, n = 24, lr: Float = 0.01, scale: Float = 0.5, wd: Float = 0.1
        let pf = try Self.make(rank: 3, c: 2, lr: lr, scale: scale, wd: wd, correction: correction)
        let w0 = randomTensor(shape, seed: 1), g = randomTensor(shape, seed: 2)
        let p = Parameter(name: "w", role: .mlp, value: w0.copy())
        var s = pf.makeState(for: p)
        pf.prepare(&s)
        let proj = s.projector
        let pm = proj.matrix!
        pf.update(p, gradient: g, lrScale: 1)
        // m < n: X = (m/c) x (n·c), Gs = Pᵀ X, back(Gs) = scale · reshape(P Gs).
        let x = g.reshaped(proj.matrixShape[0] == m / 2 ? [m / 2, n * 2] : [m * 2, n / 2])
        let gs = pm.matmul(x, transposeSelf: true)
        let go = pm.matmul(gs)  // (m/c) x (n·c), same storage as m x n
        let b1 = 0.9, b2 = 0.999, eps = 1e-6
        var row = [Double](repeating: 0, count: m), col = [Double](repeating: 0, count: n)
        for i in 0..<m { for j in 0..<n { let v = Double(scale) * Double(go.data[i * n + j]); row[i] += v * v; col[j] += v * v } }
        row = row.map { (1 - b2) * $0 }; col = col.map { (1 - b2) * $0 }
        let total = row.reduce(0, +)
        let bc = correction == .reference ? (1 - b2).squareRoot() / (1 - b1) : (1 - b2) / (1 - b1)
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                let d = Double(scale) * (1 - b1) * Double(go.data[i * n + j])  // back(Ms), Ms = (1 - b1) Gs
                let v = row[i] * col[j] / total
                let denom = correction == .reference ? v.squareRoot() + eps : (v + eps).squareRoot()
                let w = Double(w0.data[i * n + j]) - Double(lr) * bc * d / denom
                expected[i * n + j] = Float(w * (1 - Double(lr * wd)))
            }
        }
        #expect(relativeError(p.value.array, expected) < 1e-5)
        #expect(relativeError(pf.states["w"]!.row.array, row.map(Float.init)) < 1e-4)
        #expect(relativeError(pf.states["w"]!.col.array, col.map(Float.init)) < 1e-4)
    }

    /// P is a function of (seed, name, step / T): the same in two instances, kept for the
    /// micro-batches of one step, new at multiples of T, never stored between steps.
    @Test func projectionIsRegeneratedNotStored() throws {
        let shape = [24, 16]
        let a = try Self.make(gap: 3), b = try Self.make(gap: 3)
        let p = Parameter(name: "model.layers.0.mlp.up_proj.weight", role: .mlp, value: Tensor(zeros: shape))
        var matrices: [[Float]] = []
        for step in 0..<7 {
            var sa = a.states[p.name] ?? a.makeState(for: p), sb = b.states[p.name] ?? b.makeState(for: p)
            a.prepare(&sa); b.prepare(&sb)
            #expect(sa.projector.matrix!.array == sb.projector.matrix!.array)
            matrices.append(sa.projector.matrix!.array)
            a.update(p, gradient: randomTensor(shape, seed: UInt64(step)), lrScale: 1)
            b.update(p, gradient: randomTensor(shape, seed: UInt64(step)), lrScale: 1)
            #expect(a.states[p.name]!.projector.matrix == nil)
        }
        #expect(matrices[0] == matrices[2] && matrices[0] != matrices[3] && matrices[3] == matrices[5] && matrices[5] != matrices[6])
        #expect(p.value.array.allSatisfy { $0.isFinite })
    }

    @Test(arguments: [[24, 16], [16, 24], [32, 32]])
    func stateBytesFollowTheFormula(shape: [Int]) throws {
        let m = shape[0], n = shape[1]
        for (c, r) in [(1, 4), (2, 3), (4, 1)] {
            let pf = try Self.make(rank: r, c: c)
            let p = Parameter(name: "w", role: .mlp, value: Tensor(zeros: shape))
            pf.update(p, gradient: randomTensor(shape, seed: 1), lrScale: 1)
            #expect(pf.stateBytes(for: p) == (max(m, n) * c * r + m + n) * 4, "c \(c) r \(r)")
        }
    }

    @Test func checkpointRoundTrip() throws {
        try expectStateContinues(
            { try Self.make(rank: 2, gap: 3, c: 2, wd: 0.05) }, shape: [20, 30],
            keys: ["step", "exp_avg", "exp_avg_sq_row", "exp_avg_sq_col"], momentShape: [2, 60], badMomentShape: [60, 2])
    }

    @Test(arguments: [ProjFactor.Correction.reference, .paper])
    func convergesOnLeastSquares(correction: ProjFactor.Correction) throws {
        let pf = try Self.make(rank: 4, gap: 10, c: 2, lr: 0.05, correction: correction)
        let (initial, final) = leastSquaresRun(pf, shape: [24, 16], steps: 400)
        print("ProjFactor (\(correction)) least squares: \(initial) -> \(final)")
        #expect(final < 0.05 * initial)
    }

    /// In per-layer mode the trainer hands every micro-batch's gradient of a projected matrix
    /// to the rule and frees it: between micro-batches only the other parameters hold full
    /// gradients.
    @Test func perLayerAccumulationFreesProjectedGradients() throws {
        let model = try LlamaModel(config: smallConfig(), seed: 3)
        var o = OptimizerOptions(); o.rank = 2; o.granularity = 2
        let opt = try OptimizerRegistry.make("projfactor", options: o)
        _ = try model.forward(randomBatch(vocab: 20, batch: 2, seq: 8, seed: 1), lossScale: 0.5)
        model.backward { p in
            guard let acc = opt.compressedAccumulator(for: p), let g = p.grad else { return }
            acc.accumulate(p, gradient: g)
            p.releaseGradient()
        }
        let projected = model.parameters.filter { opt.compressedAccumulator(for: $0) != nil }
        #expect(projected.count == 14)
        let full = model.parameters.filter { opt.compressedAccumulator(for: $0) == nil }.reduce(0) { $0 + $1.value.byteCount }
        #expect(model.gradientBytes == full)
        let pf = try #require(opt.routes.first?.optimizer as? ProjFactor)
        let pending = projected.reduce(0) { $0 + pf.pendingBytes(for: $1) }
        let expected = projected.reduce(0) { acc, p in
            let g = pf.geometry(rows: p.shape[0], cols: p.shape[1])
            return acc + max(p.shape[0], p.shape[1]) * g.granularity * g.rank * 4
        }
        #expect(pending == expected)
        #expect(pending < projected.reduce(0) { $0 + $1.value.byteCount })
        opt.discardCompressedAccumulation()
        #expect(projected.allSatisfy { pf.pendingBytes(for: $0) == 0 })
    }

    @Test func registry() throws {
        let routed = try OptimizerRegistry.make("projfactor", options: OptimizerOptions())
        let pf = try #require(routed.routes.first?.optimizer as? ProjFactor)
        #expect(routed.fallback is AdamW && (routed.fallback as! AdamW).eps == 1e-6)
        #expect(pf.learningRate == 1e-3 && pf.rank == 32 && pf.updateGap == 100 && pf.granularity == 1)
        #expect(pf.scale == 1 && pf.eps == 1e-6 && pf.correction == .reference && pf.projection == .gaussian)
        var o = OptimizerOptions(); o.granularity = 0
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("projfactor", options: o) }
        o = OptimizerOptions(); o.variant = "x"
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("projfactor", options: o) }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite("Fira") struct FiraTests {
    static func fira(
        residual: Fira.Residual = .reference, scale: Float = ProjectionFixtures.scale, rank: Int = ProjectionFixtures.rank,
        gap: Int = ProjectionFixtures.gap, scaling: Fira.Scaling = .columnwise
    ) throws -> Fira {
        try Fira(
            learningRate: ProjectionFixtures.lr, weightDecay: ProjectionFixtures.weightDecay, rank: rank,
            updateGap: gap, scale: scale, residual: residual, scaling: scaling)
    }

    /// fira 1.0.2's FiraAdamW (the code's residual G − alpha·P Pᵀ G): weights after every step
    /// and the final state, `scaling_grad` included.
    @Test(arguments: ProjectionFixtures.shapes)
    func matchesFiraReference(shape: String) throws {
        let opt = try Self.fira(residual: .reference)
        let p = try ProjectionFixtures.replay(opt, shape: shape, run: "fira", reference: ProjectionFixtures.fira)
        try ProjectionFixtures.checkState(
            opt, p, shape: shape, run: "fira", reference: ProjectionFixtures.fira,
            keys: ["step", "exp_avg", "exp_avg_sq", "ortho_matrix", "scaling_grad"])
    }

    /// The paper's residual (I − P Pᵀ) G differs from the code's only through alpha: with
    /// scale 1 the two agree, with scale 0.25 they do not.
    @Test func paperAndReferenceResidualsAgreeAtScaleOne() throws {
        func run(_ opt: Fira) -> [Float] {
            let p = Parameter(name: "w", role: .mlp, value: randomTensor([24, 16], seed: 1))
            for s in 0..<6 { opt.update(p, gradient: randomTensor([24, 16], seed: UInt64(20 + s)), lrScale: 1) }
            return p.value.array
        }
        let paper1 = run(try Self.fira(residual: .paper, scale: 1, rank: 4)), ref1 = run(try Self.fira(residual: .reference, scale: 1, rank: 4))
        #expect(relativeError(paper1, ref1) < 1e-6)
        let paper = run(try Self.fira(residual: .paper, rank: 4)), ref = run(try Self.fira(residual: .reference, rank: 4))
        #expect(relativeError(paper, ref) > 1e-4)
    }

    /// A gradient that lies inside the subspace has no residual in the paper's form, so Fira
    /// then steps exactly like GaLore.
    @Test func inSubspaceGradientStepsLikeGaLore() throws {
        let m = 20, n = 12, r = 3
        let a = randomTensor([m, r], seed: 1), b = randomTensor([r, n], seed: 2)
        let g = a.matmul(b)  // rank 3
        let pf = Parameter(name: "w", role: .mlp, value: randomTensor([m, n], seed: 3))
        let pg = Parameter(name: "w", role: .mlp, value: pf.value.copy())
        let fira = try Fira(learningRate: 0.01, rank: r, updateGap: 2, residual: .paper)
        let galore = try GaLore(learningRate: 0.01, rank: r, updateGap: 2)
        for s in 0..<4 {
            let gs = g.copy()
            FastMath.scale(gs.data, gs.count, 1 + 0.1 * Float(s))
            fira.update(pf, gradient: gs, lrScale: 1)
            galore.update(pg, gradient: gs, lrScale: 1)
        }
        let w0 = randomTensor([m, n], seed: 3).array
        let df = zip(pf.value.array, w0).map { $0 - $1 }, dg = zip(pg.value.array, w0).map { $0 - $1 }
        #expect(relativeError(df, dg) < 1e-4)
    }

    /// The limiter caps the growth of ||S|| at gamma per step.
    @Test func normGrowthLimiterCapsGrowth() throws {
        let opt = try Fira(learningRate: 0.01, rank: 4, updateGap: 100, residual: .paper)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([24, 16], seed: 1))
        let g = randomTensor([24, 16], seed: 2)
        opt.update(p, gradient: g, lrScale: 1)
        var prev = try #require(opt.states["w"]!.scalingNorm)
        for s in 0..<4 {
            let big = randomTensor([24, 16], seed: UInt64(40 + s), std: 50)
            opt.update(p, gradient: big, lrScale: 1)
            let now = try #require(opt.states["w"]!.scalingNorm)
            #expect(now <= prev * 1.01 * (1 + 1e-5))
            #expect(now >= prev * 1.01 * (1 - 1e-5))  // a spike is cut to exactly gamma
            prev = now
        }
        // Without the limiter the spike goes through.
        let free = try Fira(learningRate: 0.01, rank: 4, updateGap: 100, residual: .paper, gamma: nil)
        let q = Parameter(name: "w", role: .mlp, value: randomTensor([24, 16], seed: 1))
        free.update(q, gradient: g, lrScale: 1)
        let first = free.states["w"]!.scalingNorm!
        free.update(q, gradient: randomTensor([24, 16], seed: 40, std: 50), lrScale: 1)
        #expect(free.states["w"]!.scalingNorm! > 1.5 * first)
        #expect(throws: ConfigurationError.self) { try Fira(gamma: 0.5) }
    }

    @Test(arguments: [[48, 20], [20, 48], [32, 32]])
    func stateIsGaLorePlusOneScalar(shape: [Int]) throws {
        let m = shape[0], n = shape[1], r = 8
        let opt = try Fira(rank: r, updateGap: 3)
        let p = Parameter(name: "w", role: .mlp, value: Tensor(zeros: shape))
        opt.update(p, gradient: randomTensor(shape, seed: 1), lrScale: 1)
        #expect(opt.stateBytes(for: p) == (2 * r * max(m, n) + r * min(m, n) + 1) * 4)
        #expect(Set(opt.exportState(for: p).keys) == ["step", "exp_avg", "exp_avg_sq", "ortho_matrix", "scaling_grad"])
    }

    @Test(arguments: [Fira.Scaling.columnwise, .matrix])
    func checkpointRoundTrip(scaling: Fira.Scaling) throws {
        let shape = [18, 30]
        let a = try Self.fira(residual: .paper, rank: 4, scaling: scaling), b = try Self.fira(residual: .paper, rank: 4, scaling: scaling)
        let pa = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 5))
        for s in 0..<4 { a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) }
        let saved = a.exportState(for: pa)
        let pb = Parameter(name: "w", role: .mlp, value: pa.value.copy())
        try b.importState(saved.mapValues { $0.copy() }, for: pb)
        for s in 4..<8 {
            a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
            b.update(pb, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
        }
        #expect(pa.value.array == pb.value.array)
        var missing = saved
        missing["scaling_grad"] = nil
        #expect(throws: OptimizerStateError.self) { try b.importState(missing, for: pb) }
    }

    @Test func zeroAndNonFiniteGradients() throws {
        let shape = [16, 10]
        let opt = try Fira(learningRate: 0.01, weightDecay: 0.1, rank: 4, updateGap: 2)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
        opt.update(p, gradient: Tensor(zeros: shape), lrScale: 1)
        opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        opt.update(p, gradient: Tensor(zeros: shape), lrScale: 1)
        opt.update(p, gradient: randomTensor(shape, seed: 3), lrScale: 1)
        #expect(isFiniteTensor(p.value))
        let before = p.value.array
        let bad = randomTensor(shape, seed: 4)
        bad.data[3] = .nan
        opt.update(p, gradient: bad, lrScale: 1)
        #expect(p.value.array == before)
        opt.update(p, gradient: randomTensor(shape, seed: 5), lrScale: 1)
        #expect(isFiniteTensor(p.value))
    }

    @Test func registryOptions() throws {
        var o = OptimizerOptions(); o.firaResidual = "reference"; o.rank = 4
        let r = try OptimizerRegistry.make("fira", options: o)
        let model = try LlamaModel(config: smallConfig())
        let fira = try #require(r.optimizer(for: model.parameters.first { $0.role == .mlp }!) as? Fira)
        #expect(fira.residual == .reference && fira.settings.rank == 4 && fira.settings.eps == 1e-6)
        o.firaResidual = "code"
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("fira", options: o) }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite("MoFaSGD") struct MoFaSGDTests {
    static let name = "model.layers.0.mlp.up_proj.weight"

    static func make(
        rank: Int = 3, beta: Float = 0.9, eta2: Float = 0, update: MoFaSGD.Update = .paper, variant: MoFaSGD.Variant = .paper,
        lr: Float = 0.01, maxReciprocal: Float = 1e4
    ) throws -> MoFaSGD {
        try MoFaSGD(learningRate: lr, beta: beta, rank: rank, eta2: eta2, update: update, variant: variant, maxReciprocal: maxReciprocal)
    }

    /// U diag(S) Vᵀ (V is n x r).
    static func product(_ u: Tensor, _ s: Tensor, _ v: Tensor) -> Tensor {
        let us = u.copy()
        let r = s.count
        for i in 0..<u.shape[0] { for j in 0..<r { us.data[i * r + j] *= s.data[j] } }
        return us.matmul(v, transposeOther: true)
    }

    /// The rank-r truncation of `a` by the exact SVD.
    static func truncated(_ a: Tensor, rank r: Int) -> (product: Tensor, s: [Float]) {
        let f = try! Linalg.svd(a)
        let t = LowRankFactors.truncate(u: f.u, s: f.s, vt: f.vt, rank: r)
        return (product(t.u, t.s, t.vt.transposed()), Array(f.s.prefix(r)))
    }

    /// UᵀU = I within `tol`.
    static func expectOrthonormal(_ u: Tensor, tol: Float = 1e-5) {
        let g = u.matmul(u, transposeSelf: true)
        let r = g.shape[0]
        for i in 0..<r { for j in 0..<r { #expect(abs(g.data[i * r + j] - (i == j ? 1 : 0)) < tol) } }
    }

    /// The defining property: after a step the factors are the rank-r truncated SVD of
    /// beta·U S Vᵀ + c·(UUᵀG + GVVᵀ - UUᵀGVVᵀ) (c = 1 - beta in the paper, 1 in the code),
    /// computed here with m x n matrices and LAPACK's SVD.
    @Test(arguments: [[24, 16], [16, 24]], [MoFaSGD.Variant.paper, .reference])
    func factorsAreTheTruncatedSVDOfDecayedMomentumPlusTangentProjection(shape: [Int], variant: MoFaSGD.Variant) throws {
        let r = 3, beta: Float = 0.9
        let opt = try Self.make(rank: r, beta: beta, variant: variant)
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
        opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        let before = opt.states[Self.name]!
        let (u, s, v) = (before.u.copy(), before.s.copy(), before.v.copy())
        let g = randomTensor(shape, seed: 3)
        opt.update(p, gradient: g, lrScale: 1)
        let after = opt.states[Self.name]!

        let c: Float = variant == .paper ? 1 - beta : 1
        let uutg = u.matmul(u.matmul(g, transposeSelf: true))
        let gvvt = g.matmul(v).matmul(v, transposeOther: true)
        let uutgvvt = uutg.matmul(v).matmul(v, transposeOther: true)
        let momentum = Self.product(u, s, v)
        let target = Tensor(shape: shape, values: (0..<g.count).map {
            beta * momentum.data[$0] + c * (uutg.data[$0] + gvvt.data[$0] - uutgvvt.data[$0])
        })
        let (expected, sv) = Self.truncated(target, rank: r)
        let got = Self.product(after.u, after.s, after.v)
        #expect(relativeError(got.array, expected.array) < 1e-4)
        #expect(relativeError(after.s.array, sv) < 1e-5)
        Self.expectOrthonormal(after.u)
        Self.expectOrthonormal(after.v)
    }

    /// The momentum starts as W's truncated SVD: with a zero gradient the first step leaves
    /// beta times W's leading singular values, and the update is -lr U Vᵀ of W's leading
    /// singular vectors.
    @Test func initialisationIsTheWeightsTruncatedSVD() throws {
        let shape = [20, 14], r = 4, beta: Float = 0.9, lr: Float = 0.01
        let w = randomTensor(shape, seed: 7)
        let f = try Linalg.svd(w)
        let opt = try Self.make(rank: r, beta: beta, lr: lr)
        let p = Parameter(name: Self.name, role: .mlp, value: w.copy())
        opt.update(p, gradient: Tensor(zeros: shape), lrScale: 1)
        let s = opt.states[Self.name]!
        #expect(relativeError(s.s.array, f.s.prefix(r).map { beta * $0 }) < 1e-5)
        let ones = Tensor(shape: [r], values: [Float](repeating: 1, count: r))
        let t = LowRankFactors.truncate(u: f.u, s: f.s, vt: f.vt, rank: r)
        let uvt = Self.product(t.u, ones, t.vt.transposed())
        let expected = (0..<w.count).map { w.data[$0] - lr * uvt.data[$0] }
        #expect(relativeError(p.value.array, expected) < 1e-5)
    }

    /// The weight step in closed form from the new factors: the paper's U Vᵀ, the code's
    /// U diag(min(1/S, max)) Vᵀ, and the complement term eta2·(I - UUᵀ)G(I - VVᵀ) with the
    /// previous factors.
    @Test(arguments: [MoFaSGD.Update.paper, .reference], [Float(0), 0.5])
    func updateClosedForm(update: MoFaSGD.Update, eta2: Float) throws {
        let shape = [18, 12], r = 3, lr: Float = 0.02, maxReciprocal: Float = 2
        let opt = try Self.make(rank: r, eta2: eta2, update: update, lr: lr, maxReciprocal: maxReciprocal)
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
        opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        let old = opt.states[Self.name]!
        let (u0, v0) = (old.u.copy(), old.v.copy())
        let w = p.value.copy()
        let g = randomTensor(shape, seed: 3)
        opt.update(p, gradient: g, lrScale: 1)
        let s = opt.states[Self.name]!
        let d = Tensor(shape: [r], values: s.s.array.map { update == .paper ? 1 : min(1 / $0, maxReciprocal) })
        let step = Self.product(s.u, d, s.v)
        // (I - U0U0ᵀ) G (I - V0V0ᵀ)
        let left = Tensor(shape: shape, values: zip(g.array, u0.matmul(u0.matmul(g, transposeSelf: true)).array).map { $0 - $1 })
        let comp = Tensor(shape: shape, values: zip(left.array, left.matmul(v0).matmul(v0, transposeOther: true).array).map { $0 - $1 })
        let expected = (0..<w.count).map { w.data[$0] - lr * (step.data[$0] + eta2 * comp.data[$0]) }
        #expect(relativeError(p.value.array, expected) < 1e-6)
    }

    /// Singular values at or below eps do not move the weights (a zero weight and gradient
    /// give zero momentum, hence no step).
    @Test func zeroMomentumGivesNoStep() throws {
        let opt = try Self.make()
        let p = Parameter(name: Self.name, role: .mlp, value: Tensor(zeros: [10, 8]))
        opt.update(p, gradient: Tensor(zeros: [10, 8]), lrScale: 1)
        #expect(p.value.array.allSatisfy { $0 == 0 })
    }

    /// r(m + n + 1) floats, r capped at min(m, n).
    @Test(arguments: [([24, 16], 4), ([6, 40], 8)])
    func stateBytesEqualTheFormula(shape: [Int], rank: Int) throws {
        let opt = try Self.make(rank: rank)
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
        #expect(opt.stateBytes(for: p) == 0)
        opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        let r = min(rank, shape[0], shape[1])
        #expect(opt.stateBytes(for: p) == 4 * r * (shape[0] + shape[1] + 1))
        #expect(opt.stateFootprint(for: ParameterSpec(p))?.bytes == opt.stateBytes(for: p))
    }

    @Test func checkpointResumeIsBitIdentical() throws {
        let keys: Set<String> = ["step", "momentum_u", "momentum_s", "momentum_v"]
        let saved = try expectResumeIsBitIdentical({ try Self.make(rank: 3, eta2: 0.5) }, shape: [14, 9], keys: keys)
        #expect(saved["momentum_u"]!.shape == [14, 3] && saved["momentum_v"]!.shape == [9, 3])
        var bad = saved
        bad["momentum_v"] = Tensor(zeros: [3, 9])
        let p = Parameter(name: Self.name, role: .mlp, value: Tensor(zeros: [14, 9]))
        #expect(throws: OptimizerStateError.self) { try Self.make().importState(bad, for: p) }
    }

    @Test(arguments: [MoFaSGD.Update.paper, .reference])
    func lowersALeastSquaresLoss(update: MoFaSGD.Update) throws {
        // The reference step U diag(1/S) Vᵀ shrinks as the momentum grows: a larger rate with
        // the reciprocal clamped (its nanoGPT config clamps at 5).
        let opt = update == .paper
            ? try Self.make(rank: 4, beta: 0.9, update: update, lr: 0.05)
            : try Self.make(rank: 4, beta: 0.9, update: update, lr: 5, maxReciprocal: 0.02)
        let (l0, l1) = leastSquaresRun(opt, shape: [24, 16], steps: 200)
        #expect(l1 < 0.3 * l0, "\(update): \(l0) -> \(l1)")
    }

    @Test func registryRoutesAndValidates() throws {
        let routed = try OptimizerRegistry.make("mofasgd", options: OptimizerOptions())
        let hidden = Parameter(name: "model.layers.0.mlp.down_proj.weight", role: .mlp, value: Tensor(zeros: [8, 8]))
        let norm = Parameter(name: "model.norm.weight", role: .norm, value: Tensor(zeros: [8]))
        let m = routed.optimizer(for: hidden) as! MoFaSGD
        #expect(m.rank == 32 && m.beta == 0.95 && m.eta2 == 0 && m.update == .paper && m.variant == .paper)
        #expect(routed.optimizer(for: norm).name == "adamw")
        var o = OptimizerOptions()
        o.mofasgdUpdate = "reference"; o.eta2 = 0.25; o.momentum = 0.8
        let m2 = try OptimizerRegistry.make("mofasgd", options: o).optimizer(for: hidden) as! MoFaSGD
        #expect(m2.update == .reference && m2.eta2 == 0.25 && m2.beta == 0.8)
        for bad: (inout OptimizerOptions) -> Void in [
            { $0.rank = 0 }, { $0.eta2 = -1 }, { $0.mofasgdUpdate = "inverse" }, { $0.momentum = 1 }, { $0.learningRate = 0 },
        ] {
            var o = OptimizerOptions()
            bad(&o)
            #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("mofasgd", options: o) }
        }
    }
}

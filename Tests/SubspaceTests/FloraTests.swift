import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Least squares 0.5/N ||W X - Y||² with Y = W* X: a small problem with coupled coordinates for
/// the convergence smoke tests of the projection methods. Returns (initial loss, final loss).
func leastSquaresRun(_ opt: ParameterOptimizer, shape: [Int], steps: Int, name: String = "model.layers.0.mlp.up_proj.weight") -> (Float, Float) {
    let n = shape[1], samples = 64
    let target = randomTensor(shape, seed: 11)
    let x = randomTensor([n, samples], seed: 12)
    let y = target.matmul(x)
    let p = Parameter(name: name, role: .mlp, value: Tensor(zeros: shape))
    func lossAndGradient() -> (Float, Tensor) {
        let r = p.value.matmul(x)
        for i in 0..<r.count { r.data[i] -= y.data[i] }
        let loss = 0.5 * BLAS.dot(r.count, r.data, r.data) / Float(samples)
        let g = r.matmul(x, transposeOther: true)
        FastMath.scale(g.data, g.count, 1 / Float(samples))
        return (loss, g)
    }
    let initial = lossAndGradient().0
    for _ in 0..<steps {
        let (_, g) = lossAndGradient()
        opt.update(p, gradient: g, lrScale: 1)
    }
    return (initial, lossAndGradient().0)
}

/// The elementwise sum of `ts` (a new tensor). Adding through `.data` pointers inside a function
/// whose parameters keep the tensors alive: a local whose last use is `.data` may be released
/// (and its storage freed) before the BLAS call reads it.
func sumOf(_ ts: [Tensor]) -> Tensor {
    let out = ts[0].copy()
    for t in ts.dropFirst() { BLAS.axpy(out.count, 1, t.data, out.data) }
    return out
}

@Suite("Flora") struct FloraTests {
    static func make(
        rank: Int = 4, kappa: Int = 2, variant: Flora.Variant = .paper, beta1: Float? = 0.9, lr: Float = 0.01,
        scaleParameter: Bool = false, weightDecay: Float = 0
    ) throws -> Flora {
        try Flora(
            learningRate: lr, rule: AdafactorRule(relativeStep: false, scaleParameter: scaleParameter), beta1: beta1,
            rank: rank, kappa: kappa, seed: 3, variant: variant, weightDecay: weightDecay)
    }

    /// At a resampling step the compressed momentum becomes b1·down_new(up_old(C)) +
    /// (1 - b1)·down_new(U), with U Adafactor's normalised update, computed here from the
    /// definitions with full m x n matrices.
    @Test(arguments: [[24, 16], [16, 24]], [Flora.Variant.paper, .reference])
    func momentumTransferOnResampleMatchesTheDefinition(shape: [Int], variant: Flora.Variant) throws {
        let opt = try Self.make(kappa: 2, variant: variant)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
        let g1 = randomTensor(shape, seed: 2), g2 = randomTensor(shape, seed: 3)
        opt.update(p, gradient: g1, lrScale: 1)
        let c1 = opt.states["w"]!.momentum!.copy()
        let proj = opt.states["w"]!.projector!
        #expect(proj.matrix == nil)  // never kept
        opt.update(p, gradient: g2, lrScale: 1)  // t = 2: 2 % kappa == 0, resample
        let c2 = opt.states["w"]!.momentum!

        let old = opt.basis(proj, index: 0, gradient: g1), new = opt.basis(proj, index: 1, gradient: g1)
        #expect(old.matrix!.array != new.matrix!.array)
        var moments = opt.rule.makeMoments(shape: shape)
        opt.rule.advance(g1, moments: &moments)
        opt.rule.advance(g2, moments: &moments)
        let u2 = opt.rule.normalized(g2, moments: moments)
        let up = Tensor(zeros: shape)
        old.addBack(c1, to: up, alpha: 1)  // up_old(C1), m x n
        let transferred = new.project(up)
        let fresh = new.project(u2)
        let expected = (0..<c2.count).map { 0.9 * transferred.data[$0] + 0.1 * fresh.data[$0] }
        #expect(relativeError(c2.array, expected) < 1e-5)
        // The r x r shortcut equals the definition.
        #expect(relativeError(Flora.transfer(c1, from: old, to: new).array, transferred.array) < 1e-5)
        // Without a resample (t = 3) the basis stays: C3 = b1 C2 + (1 - b1) down_1(U3).
        let c2copy = c2.copy()
        let g3 = randomTensor(shape, seed: 4)
        opt.update(p, gradient: g3, lrScale: 1)
        opt.rule.advance(g3, moments: &moments)
        let fresh3 = new.project(opt.rule.normalized(g3, moments: moments))
        let expected3 = (0..<c2.count).map { 0.9 * c2copy.data[$0] + 0.1 * fresh3.data[$0] }
        #expect(relativeError(opt.states["w"]!.momentum!.array, expected3) < 1e-5)
    }

    /// The step direction: the paper decompresses the new momentum, the reference mixes the
    /// fresh U with the decompressed old momentum. Both clip at RMS 1 and scale by lr.
    @Test func stepDirectionOfEachVariant() throws {
        let shape = [24, 16]
        for variant in Flora.Variant.allCases {
            let opt = try Self.make(kappa: 100, variant: variant)
            let p = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
            let g1 = randomTensor(shape, seed: 2), g2 = randomTensor(shape, seed: 3)
            opt.update(p, gradient: g1, lrScale: 1)
            let c1 = opt.states["w"]!.momentum!.copy()
            let w1 = p.value.copy()
            opt.update(p, gradient: g2, lrScale: 1)
            let proj = opt.basis(opt.states["w"]!.projector!, index: 0, gradient: g2)
            var moments = opt.rule.makeMoments(shape: shape)
            opt.rule.advance(g1, moments: &moments); opt.rule.advance(g2, moments: &moments)
            let u = opt.rule.normalized(g2, moments: moments)
            let d = Tensor(zeros: shape)
            if variant == .paper {
                proj.addBack(opt.states["w"]!.momentum!, to: d, alpha: 1)
            } else {
                withExtendedLifetime(u) { BLAS.axpy(d.count, 0.1, u.data, d.data) }
                proj.addBack(c1, to: d, alpha: 0.9)
            }
            let scale = 0.01 / max(1, AdafactorRule.rms(d))
            let expected = (0..<d.count).map { w1.data[$0] - scale * d.data[$0] }
            #expect(relativeError(p.value.array, expected) < 1e-5, "\(variant)")
        }
    }

    @Test func projectionIsRegeneratedFromTheSeed() throws {
        let shape = [24, 16]
        let a = try Self.make(), b = try Self.make()
        let p = Parameter(name: "model.layers.1.self_attn.q_proj.weight", role: .attention, value: Tensor(zeros: shape))
        let pa = try #require(a.makeProjector(for: p)), pb = try #require(b.makeProjector(for: p))
        let g = randomTensor(shape, seed: 1), other = randomTensor(shape, seed: 9)
        // A pure function of (seed, name, index): independent of the gradient and of the instance.
        #expect(a.basis(pa, index: 3, gradient: g).matrix!.array == b.basis(pb, index: 3, gradient: other).matrix!.array)
        #expect(a.basis(pa, index: 3, gradient: g).matrix!.array != a.basis(pa, index: 4, gradient: g).matrix!.array)
        let q = Parameter(name: "model.layers.1.self_attn.k_proj.weight", role: .attention, value: Tensor(zeros: shape))
        #expect(a.basis(a.makeProjector(for: q)!, index: 3, gradient: g).matrix!.array != a.basis(pa, index: 3, gradient: g).matrix!.array)
        // Two runs from the same seed are bit-identical.
        for opt in [a, b] { for s in 0..<5 { opt.update(p, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) } }
        #expect(a.states[p.name]!.momentum!.array == b.states[p.name]!.momentum!.array)
        #expect(a.states[p.name]!.projector!.matrix == nil)
    }

    /// r·max(m, n) + m + n floats for compressed momentum; full momentum for elongated
    /// matrices, vectors and ranks above min(m, n); Adafactor's factors alone without beta1.
    @Test func stateBytes() throws {
        let r = 4
        func bytes(_ opt: Flora, _ shape: [Int]) -> Int {
            let p = Parameter(name: "w\(shape)", role: .mlp, value: Tensor(zeros: shape))
            opt.update(p, gradient: randomTensor(shape, seed: 1), lrScale: 1)
            return opt.stateBytes(for: p)
        }
        let opt = try Self.make(rank: r)
        for shape in [[24, 16], [16, 24], [32, 32]] {
            let m = shape[0], n = shape[1]
            #expect(bytes(opt, shape) == (r * max(m, n) + m + n) * 4, "\(shape)")
        }
        #expect(bytes(opt, [80, 16]) == (80 * 16 + 80 + 16) * 4)  // aspect ratio 5 > 4: full momentum
        #expect(bytes(opt, [3, 16]) == (3 * 16 + 3 + 16) * 4)  // rank 4 > min(m, n)
        #expect(bytes(opt, [10]) == 2 * 10 * 4)  // vector: full second moment and momentum
        #expect(bytes(try Self.make(rank: r, beta1: nil), [24, 16]) == (24 + 16) * 4)
    }

    @Test(arguments: [Flora.Variant.paper, .reference])
    func checkpointRoundTrip(variant: Flora.Variant) throws {
        try expectStateContinues(
            { try Self.make(kappa: 3, variant: variant, scaleParameter: true, weightDecay: 0.05) }, shape: [20, 30],
            keys: ["step", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg"], momentShape: [4, 30], badMomentShape: [20, 30])
    }

    @Test(arguments: [Flora.Variant.paper, .reference])
    func convergesOnLeastSquares(variant: Flora.Variant) throws {
        let opt = try Self.make(rank: 8, kappa: 10, variant: variant, lr: 0.02)
        let (initial, final) = leastSquaresRun(opt, shape: [24, 16], steps: 400)
        print("Flora (\(variant)) least squares: \(initial) -> \(final)")
        #expect(final < 0.05 * initial, "\(variant): \(initial) -> \(final)")
    }

    @Test func registryDefaultsAndErrors() throws {
        let routed = try OptimizerRegistry.make("flora", options: OptimizerOptions())
        let flora = try #require(routed.fallback as? Flora)
        #expect(routed.routes.isEmpty)
        #expect(flora.learningRate == 1e-3 && flora.beta1 == 0.9 && flora.rank == 256 && flora.kappa == 1000)
        #expect(!flora.rule.relativeStep && flora.rule.scaleParameter && flora.variant == .paper)
        var o = OptimizerOptions(); o.variant = "other"
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("flora", options: o) }
        o = OptimizerOptions(); o.projectionType = "std"
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("flora", options: o) }
        o = OptimizerOptions(); o.beta2 = 0.99
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("flora", options: o) }
    }
}

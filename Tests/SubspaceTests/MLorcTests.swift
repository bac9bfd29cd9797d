import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Checkpoint hooks of a single-matrix rule: `steps` updates, export, import into a fresh
/// rule, then `steps` more on both must give bit-identical weights. Returns the exported state.
@discardableResult
func expectResumeIsBitIdentical(
    _ make: () throws -> ParameterOptimizer, shape: [Int], keys: Set<String>, steps: Int = 3, requiredKey: String = "step"
) throws -> [String: Tensor] {
    let a = try make(), b = try make()
    let name = "model.layers.0.mlp.up_proj.weight"
    let pa = Parameter(name: name, role: .mlp, value: randomTensor(shape, seed: 5, std: 0.5))
    for s in 0..<steps { a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) }
    let saved = a.exportState(for: pa)
    #expect(Set(saved.keys) == keys)
    let pb = Parameter(name: name, role: .mlp, value: pa.value.copy())
    try b.importState(saved.mapValues { $0.copy() }, for: pb)
    for s in steps..<(2 * steps) {
        a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
        b.update(pb, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
    }
    #expect(pa.value.array == pb.value.array)
    // A missing tensor and an unknown one are rejected.
    var missing = saved
    missing.removeValue(forKey: requiredKey)
    #expect(throws: OptimizerStateError.self) { try b.importState(missing, for: pb) }
    var extra = saved
    extra["bogus"] = Tensor(zeros: [1])
    #expect(throws: OptimizerStateError.self) { try b.importState(extra, for: pb) }
    return saved
}

/// A rows x columns matrix with singular values 1, decay, decay², ... (random singular vectors).
func decayingSpectrum(_ rows: Int, _ columns: Int, decay: Float, seed: UInt64) -> Tensor {
    let k = min(rows, columns)
    let u = try! Linalg.qr(randomTensor([rows, k], seed: seed)).q
    let v = try! Linalg.qr(randomTensor([columns, k], seed: seed + 1)).q
    for j in 0..<k {
        let s = Foundation.pow(decay, Float(j))
        for i in 0..<rows { u.data[i * k + j] *= s }
    }
    return u.matmul(v, transposeOther: true)
}

/// The Frobenius norm of the singular values of `a` beyond the first `rank`.
func tailNorm(_ a: Tensor, rank: Int) -> Double {
    let s = try! Linalg.svd(a).s
    return s.dropFirst(rank).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
}

func frobeniusDistance(_ a: Tensor, _ b: Tensor) -> Double {
    zip(a.array, b.array).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
}

@Suite("MLorc") struct MLorcTests {
    static let name = "model.layers.0.mlp.up_proj.weight"

    static func adam(rank: Int = 4, oversampling: Int = 0, power: Int = 1, wd: Float = 0, variant: MLorc.Variant = .paper, seed: UInt64 = 0) throws -> MLorc {
        try MLorc(
            learningRate: 0.01, base: .adamW(beta1: 0.9, beta2: 0.999, eps: 1e-8), rank: rank, oversampling: oversampling,
            powerIterations: power, weightDecay: wd, variant: variant, seed: seed)
    }

    static func lion(rank: Int = 4, wd: Float = 0, variant: MLorc.Variant = .paper) throws -> MLorc {
        try MLorc(learningRate: 0.01, base: .lion(LionRule(beta1: 0.95, beta2: 0.98)), rank: rank, weightDecay: wd, variant: variant)
    }

    /// At step 1 the factors are zero, so M = (1 - b1) G and V = (1 - b2) G² exactly, and
    /// the step (which uses the uncompressed moments) is AdamW's / Lion's first step bit for bit.
    @Test(arguments: [[20, 12], [12, 20]])
    func firstStepIsTheBaseRulesFirstStep(shape: [Int]) throws {
        let g = randomTensor(shape, seed: 2)
        let w0 = randomTensor(shape, seed: 1)
        let p = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        let q = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        try Self.adam(wd: 0.1).update(p, gradient: g, lrScale: 1)
        AdamW(learningRate: 0.01, weightDecay: 0.1).update(q, gradient: g, lrScale: 1)
        #expect(p.value.array == q.value.array)

        let p2 = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        let q2 = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        try Self.lion(wd: 0.1).update(p2, gradient: g, lrScale: 1)
        Lion(learningRate: 0.01, beta1: 0.95, beta2: 0.98, weightDecay: 0.1).update(q2, gradient: g, lrScale: 1)
        #expect(p2.value.array == q2.value.array)
    }

    /// The reference variant's first step: transformers' Adam step, then decay of the updated
    /// weights.
    @Test func referenceVariantFirstStepClosedForm() throws {
        let shape = [10, 8], lr: Float = 0.01, wd: Float = 0.1, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
        let g = randomTensor(shape, seed: 3), w0 = randomTensor(shape, seed: 4)
        let p = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        try Self.adam(wd: wd, variant: .reference).update(p, gradient: g, lrScale: 1)
        let stepSize = lr * (1 - b2).squareRoot() / (1 - b1)
        let expected = (0..<g.count).map { i -> Float in
            let gi = g.data[i]
            let m = (1 - b1) * gi, v = (1 - b2) * gi * gi
            return (w0.data[i] - stepSize * m / (v.squareRoot() + eps)) * (1 - lr * wd)
        }
        #expect(relativeError(p.value.array, expected) < 1e-6)
    }

    /// With rank min(m, n) the randomized SVD is exact, so MLorc-AdamW follows AdamW (up to
    /// float rounding of the factorizations) over many steps.
    @Test(arguments: [[16, 10], [10, 16]])
    func fullRankFollowsAdamW(shape: [Int]) throws {
        let mlorc = try Self.adam(rank: min(shape[0], shape[1]), wd: 0.01)
        let adamw = AdamW(learningRate: 0.01, weightDecay: 0.01)
        let w0 = randomTensor(shape, seed: 1)
        let p = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        let q = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        for s in 0..<8 {
            let g = randomTensor(shape, seed: UInt64(10 + s))
            mlorc.update(p, gradient: g, lrScale: 1)
            adamw.update(q, gradient: g, lrScale: 1)
        }
        let err = relativeError(p.value.array, q.value.array)
        #expect(err < 1e-5, "\(err)")
    }

    /// The stored factors approximate the uncompressed moments within the randomized SVD's
    /// bound (Halko, Martinsson & Tropp 2011, Thm 10.5, plus the rank-r truncation of the
    /// projected matrix, which adds at most the optimal tail): averaged over seeds,
    /// ||A - U S Vᵀ||_F <= (sqrt(1 + r/(p - 1)) + 1) · (sum_{j>r} sigma_j²)^(1/2).
    /// Checked for both moments at step 1 and for the first moment at step 2 (reconstruction
    /// of the step-1 factors plus the new gradient).
    @Test func reconstructionErrorIsWithinTheRandomizedSVDBound() throws {
        let shape = [40, 30], r = 3, over = 4
        let b1: Float = 0.9, b2: Float = 0.999
        let bound = (1 + Double(r) / Double(over - 1)).squareRoot() + 1
        let g1 = decayingSpectrum(40, 30, decay: 0.7, seed: 21), g2 = decayingSpectrum(40, 30, decay: 0.7, seed: 23)
        var errM1 = 0.0, errV1 = 0.0, errM2 = 0.0, tailM2 = 0.0
        let seeds = 12
        for seed in 0..<seeds {
            let opt = try Self.adam(rank: r, oversampling: over, power: 0, seed: UInt64(seed))
            let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
            opt.update(p, gradient: g1, lrScale: 1)
            let s1 = opt.states[Self.name]!
            let m1 = Tensor(shape: shape, values: g1.array.map { (1 - b1) * $0 })
            let v1 = Tensor(shape: shape, values: g1.array.map { (1 - b2) * $0 * $0 })
            let recM1 = Tensor(zeros: shape), recV1 = Tensor(zeros: shape)
            s1.momentum.reconstruct(into: recM1); s1.secondMoment!.reconstruct(into: recV1)
            errM1 += frobeniusDistance(recM1, m1); errV1 += frobeniusDistance(recV1, v1)

            opt.update(p, gradient: g2, lrScale: 1)
            let m2 = Tensor(shape: shape, values: (0..<recM1.count).map { b1 * recM1.data[$0] + (1 - b1) * g2.data[$0] })
            let recM2 = Tensor(zeros: shape)
            opt.states[Self.name]!.momentum.reconstruct(into: recM2)
            errM2 += frobeniusDistance(recM2, m2); tailM2 += tailNorm(m2, rank: r)
        }
        let tailM1 = tailNorm(Tensor(shape: shape, values: g1.array.map { (1 - b1) * $0 }), rank: r)
        let tailV1 = tailNorm(Tensor(shape: shape, values: g1.array.map { (1 - b2) * $0 * $0 }), rank: r)
        let n = Double(seeds)
        #expect(errM1 / n <= bound * tailM1, "M1 \(errM1 / n) vs \(bound * tailM1)")
        #expect(errV1 / n <= bound * tailV1, "V1 \(errV1 / n) vs \(bound * tailV1)")
        #expect(errM2 / n <= bound * tailM2 / n, "M2 \(errM2 / n) vs \(bound * tailM2 / n)")
        // And it is a real approximation, not an exact copy (the tail is not negligible).
        #expect(errM1 / n > 0.5 * tailM1)
    }

    @Test func nonNegativityFixReplacesNegativesByTheirMeanMagnitude() {
        let v = Tensor(shape: [5], values: [-1, 2, -3, 0, 0.5])
        #expect(MLorc.rectify(v) == 2)
        #expect(v.array == [2, 2, 2, 0, 0.5])
        let w = Tensor(shape: [2], values: [1, 0])
        #expect(MLorc.rectify(w) == 0)
        #expect(w.array == [1, 0])
    }

    /// Step 2 in closed form from the stored step-1 factors, including the fix: with rank 1
    /// the reconstruction of (1 - b2) G² has negative entries, which the step must replace.
    @Test func secondStepUsesTheRectifiedReconstruction() throws {
        let shape = [12, 9], lr: Float = 0.01, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
        let opt = try Self.adam(rank: 1)
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
        opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        let s1 = opt.states[Self.name]!
        let mt = Tensor(zeros: shape), vt = Tensor(zeros: shape)
        s1.momentum.reconstruct(into: mt); s1.secondMoment!.reconstruct(into: vt)
        let negatives = vt.array.filter { $0 < 0 }
        #expect(!negatives.isEmpty)
        let fill = negatives.reduce(0, { $0 - Double($1) }) / Double(negatives.count)
        let w1 = p.value.copy()
        let g2 = randomTensor(shape, seed: 3)
        opt.update(p, gradient: g2, lrScale: 1)
        #expect(opt.states[Self.name]!.lastNegativeCount == negatives.count)
        let bc1 = 1 - b1 * b1, bc2 = 1 - b2 * b2
        let expected = (0..<g2.count).map { i -> Float in
            let vPrev = vt.data[i] < 0 ? Float(fill) : vt.data[i]
            let m = b1 * mt.data[i] + (1 - b1) * g2.data[i]
            let v = b2 * vPrev + (1 - b2) * g2.data[i] * g2.data[i]
            return w1.data[i] - lr / bc1 * m / (v.squareRoot() / bc2.squareRoot() + eps)
        }
        #expect(relativeError(p.value.array, expected) < 1e-6)
        #expect(p.value.array.allSatisfy { $0.isFinite })
    }

    /// 2r(m + n + 1) floats for MLorc-AdamW, r(m + n + 1) for MLorc-Lion; r capped at min(m, n).
    @Test(arguments: [([24, 16], 4), ([6, 40], 8), ([1, 10], 4)])
    func stateBytesEqualTheFormula(shape: [Int], rank: Int) throws {
        let m = shape.count == 2 ? shape[0] : 1, n = shape.last!
        let r = min(rank, m, n)
        for (opt, factors) in [(try Self.adam(rank: rank), 2), (try Self.lion(rank: rank), 1)] {
            let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
            #expect(opt.stateBytes(for: p) == 0)
            opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
            #expect(opt.stateBytes(for: p) == 4 * factors * r * (m + n + 1))
            #expect(opt.stateFootprint(for: ParameterSpec(p))?.bytes == opt.stateBytes(for: p))
        }
    }

    @Test func checkpointResumeIsBitIdentical() throws {
        let factorKeys = ["_u", "_s", "_vt"]
        let adamKeys = Set(["step"] + factorKeys.map { "exp_avg" + $0 } + factorKeys.map { "exp_avg_sq" + $0 })
        let saved = try expectResumeIsBitIdentical({ try Self.adam(rank: 3) }, shape: [14, 9], keys: adamKeys)
        #expect(saved["exp_avg_u"]!.shape == [14, 3] && saved["exp_avg_vt"]!.shape == [3, 9])
        try expectResumeIsBitIdentical({ try Self.lion(rank: 3) }, shape: [9, 14], keys: Set(["step"] + factorKeys.map { "exp_avg" + $0 }))
        // A factor of the wrong shape is rejected.
        let opt = try Self.adam(rank: 3)
        var bad = saved
        bad["exp_avg_u"] = Tensor(zeros: [14, 4])
        let p = Parameter(name: Self.name, role: .mlp, value: Tensor(zeros: [14, 9]))
        #expect(throws: OptimizerStateError.self) { try opt.importState(bad, for: p) }
    }

    @Test func lowersALeastSquaresLoss() throws {
        let adam = try MLorc(learningRate: 0.05, base: .adamW(beta1: 0.9, beta2: 0.999, eps: 1e-8), rank: 4)
        let (a0, a1) = leastSquaresRun(adam, shape: [24, 16], steps: 150)
        #expect(a1 < 0.2 * a0, "mlorc-adamw \(a0) -> \(a1)")
        let lion = try MLorc(learningRate: 0.01, base: .lion(LionRule(beta1: 0.95, beta2: 0.98)), rank: 4)
        let (l0, l1) = leastSquaresRun(lion, shape: [24, 16], steps: 150)
        #expect(l1 < 0.3 * l0, "mlorc-lion \(l0) -> \(l1)")
    }

    @Test func nonFiniteGradientIsSkipped() throws {
        let opt = try Self.adam()
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor([8, 6], seed: 1))
        let before = p.value.array
        let g = randomTensor([8, 6], seed: 2)
        g.data[3] = .nan
        opt.update(p, gradient: g, lrScale: 1)
        #expect(p.value.array == before)
        #expect(opt.states[Self.name]!.step == 0 && opt.states[Self.name]!.skipped == 1)
    }

    @Test func registryRoutesAndValidates() throws {
        for name in ["mlorc-adamw", "mlorc-lion"] {
            let routed = try OptimizerRegistry.make(name, options: OptimizerOptions())
            let hidden = Parameter(name: "model.layers.0.self_attn.q_proj.weight", role: .attention, value: Tensor(zeros: [8, 8]))
            let embed = Parameter(name: "model.embed_tokens.weight", role: .embedding, value: Tensor(zeros: [8, 8]))
            #expect(routed.optimizer(for: hidden).name == name)
            #expect(routed.optimizer(for: embed).name == "adamw")
            let mlorc = routed.optimizer(for: hidden) as! MLorc
            #expect(mlorc.rank == 4 && mlorc.oversampling == 0 && mlorc.powerIterations == 1 && mlorc.variant == .paper)
        }
        for bad: (inout OptimizerOptions) -> Void in [
            { $0.rank = 0 }, { $0.oversampling = -1 }, { $0.powerIterations = -2 }, { $0.variant = "fancy" }, { $0.beta1 = 1 },
        ] {
            var o = OptimizerOptions()
            bad(&o)
            #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("mlorc-adamw", options: o) }
        }
    }
}

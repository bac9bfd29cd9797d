import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// 4 steps of a single-matrix rule, export, import into a fresh one (copies), 6 more steps
/// on both: identical weights and state bytes.
func expectContinuesAfterImport(_ make: () throws -> ParameterOptimizer, shape: [Int]) throws {
    let a = try make(), b = try make()
    let pa = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 5))
    for s in 0..<4 { a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) }
    let pb = Parameter(name: "w", role: .mlp, value: pa.value.copy())
    try b.importState(a.exportState(for: pa).mapValues { $0.copy() }, for: pb)
    #expect(b.stateBytes(for: pb) == a.stateBytes(for: pa))
    for s in 4..<10 {
        let g = randomTensor(shape, seed: UInt64(s))
        a.update(pa, gradient: g, lrScale: 1); b.update(pb, gradient: g, lrScale: 1)
    }
    #expect(pa.value.array.map(\.bitPattern) == pb.value.array.map(\.bitPattern))
}

@Suite struct AdamW8bitTests {
    /// The fixture's optimizer: lr 0.01, weight decay 0.1, `min_8bit_size` 256.
    static func fixtureOptimizer() throws -> AdamW8bit {
        try AdamW8bit(learningRate: 0.01, weightDecay: 0.1, quantization: try StateQuantization(blockSize: 256, minimumSize: 256))
    }

    /// Four steps of bitsandbytes' `AdamW8bit` CPU update (with its reference quantizer) on a
    /// [24, 40] matrix (8-bit states: three blocks of 256 and one of 192) and a [6, 10] one
    /// (float32 states): the weights after steps 1, 2 and 4 and the final codes.
    @Test func matchesBitsandbytes() throws {
        let fx = BnbFixtures.adam
        let opt = try Self.fixtureOptimizer()
        let params = try ["big", "small"].map { Parameter(name: $0, role: .mlp, value: try fx.tensor("\($0).w0").copy()) }
        for t in 0..<4 {
            for p in params { opt.update(p, gradient: try fx.tensor("\(p.name).grad.\(t)"), lrScale: 1) }
            guard t != 2 else { continue }
            for p in params {
                let ref = try fx.tensor("exact.\(p.name).w.\(t)"), w0 = try fx.tensor("\(p.name).w0")
                let err = relativeError(p.value.array, ref.array)
                let delta = relativeError(zip(p.value.array, w0.array).map { $0 - $1 }, zip(ref.array, w0.array).map { $0 - $1 })
                #expect(err < 1e-6, "\(p.name) step \(t): weights off by \(err)")
                #expect(delta < 1e-5, "\(p.name) step \(t): update off by \(delta)")
            }
        }
        let big = params[0], state = opt.exportState(for: big)
        #expect(Set(state.keys) == ["step", "state1", "absmax1", "state2", "absmax2"])
        #expect(state["step"]![0] == 4)
        for key in ["state1", "state2"] {
            let ours = BnbFixtures.codes(state[key]!), ref = BnbFixtures.codes(try fx.tensor("exact.big.\(key)"))
            let same = zip(ours, ref).filter { $0 == $1 }.count
            #expect(same >= ref.count - 2, "\(key): \(ref.count - same) codes differ")
        }
        // v differs by ~1e-5 relative: 1 - beta2 from float32 0.999 is not Python's
        // float32(1 - 0.999) (the same holds against torch.optim.AdamW).
        for key in ["absmax1", "absmax2"] {
            #expect(relativeError(state[key]!.array, try fx.tensor("exact.big.\(key)").array) < 1e-4)
        }
        let small = opt.exportState(for: params[1])
        #expect(Set(small.keys) == ["step", "exp_avg", "exp_avg_sq"])
        #expect(relativeError(small["exp_avg"]!.array, try fx.tensor("exact.small.state1").array) < 1e-6)
        #expect(relativeError(small["exp_avg_sq"]!.array, try fx.tensor("exact.small.state2").array) < 1e-4)
        // bitsandbytes' stock CPU run (lookup-table quantizer) lands close to the exact one.
        let stock = try fx.tensor("stock.big.w.3"), w0 = try fx.tensor("big.w0")
        let gap = relativeError(zip(big.value.array, w0.array).map { $0 - $1 }, zip(stock.array, w0.array).map { $0 - $1 })
        #expect(gap < 0.05, "stock bitsandbytes update differs by \(gap)")
    }

    /// The 8-bit update tracks float32 Adam with the same step (eps inside the bias
    /// correction) over many steps.
    @Test func tracksFloat32Adam() throws {
        let q8 = try AdamW8bit(learningRate: 1e-2, weightDecay: 0.01, quantization: try StateQuantization(minimumSize: 0))
        let q32 = try AdamW8bit(learningRate: 1e-2, weightDecay: 0.01, quantization: try StateQuantization(minimumSize: .max))
        let w0 = randomTensor([64, 80], seed: 1)
        let a = Parameter(name: "w", role: .mlp, value: w0.copy()), b = Parameter(name: "w", role: .mlp, value: w0.copy())
        for s in 0..<30 {
            let g = randomTensor([64, 80], seed: 100 + UInt64(s), std: 0.5)
            for i in 0..<g.count { g.data[i] += 0.3 * Float((i % 7) - 3) }  // a persistent signal
            q8.update(a, gradient: g, lrScale: 1)
            q32.update(b, gradient: g, lrScale: 1)
        }
        let d8 = zip(a.value.array, w0.array).map { $0 - $1 }, d32 = zip(b.value.array, w0.array).map { $0 - $1 }
        let err = relativeError(d8, d32)
        #expect(err < 0.05, "8-bit and float32 updates differ by \(err)")
        #expect(q8.stateBytes(for: a) == 2 * (5120 + 4 * 20))
        #expect(q32.stateBytes(for: b) == 2 * 4 * 5120)
    }

    /// `min_8bit_size`: 4095 elements keep float32 states, 4096 go to 8 bits; the footprint
    /// agrees with the real state.
    @Test func minimumSizeAndBytes() throws {
        let opt = try AdamW8bit()
        for (shape, bytes, keys) in [
            ([4095], 8 * 4095, Set(["step", "exp_avg", "exp_avg_sq"])),
            ([64, 64], 2 * (4096 + 4 * 16), Set(["step", "state1", "absmax1", "state2", "absmax2"])),
        ] {
            let p = Parameter(name: "p\(shape)", role: .mlp, value: randomTensor(shape, seed: 2))
            opt.update(p, gradient: randomTensor(shape, seed: 3), lrScale: 1)
            #expect(opt.stateBytes(for: p) == bytes)
            #expect(Set(opt.exportState(for: p).keys) == keys)
            #expect(opt.stateFootprint(for: ParameterSpec(p))?.bytes == bytes)
        }
    }

    /// A NaN or infinite gradient element zeroes its moments and leaves its weight; the other
    /// elements of its block step normally and nothing turns non-finite.
    @Test func nonFiniteGradientElements() throws {
        let opt = try AdamW8bit(learningRate: 0.1, quantization: try StateQuantization(blockSize: 64, minimumSize: 0))
        let w0 = randomTensor([8, 32], seed: 5)
        let p = Parameter(name: "w", role: .mlp, value: w0.copy())
        let g = randomTensor([8, 32], seed: 6)
        g.data[3] = .nan; g.data[70] = .infinity
        opt.update(p, gradient: g, lrScale: 1)
        #expect(p.value[3] == w0[3] && p.value[70] == w0[70])
        #expect(p.value[4] != w0[4])
        #expect(isFiniteTensor(p.value))
        let (m, v) = (opt.states["w"]!.moments.dequantized)
        #expect(m[3] == 0 && v[3] == 0 && m[70] == 0)
        #expect(isFiniteTensor(m) && isFiniteTensor(v))
    }

    /// Checkpoints: 3 steps, export, import into a fresh optimizer, 4 more steps on both give
    /// identical weights; bad codes are rejected.
    @Test func checkpointRoundTrip() throws {
        let make = { try AdamW8bit(learningRate: 1e-2, quantization: try StateQuantization(blockSize: 64, minimumSize: 100)) }
        let a = try make(), b = try make()
        let shapes = [[12, 20], [9]]
        let pa = shapes.map { Parameter(name: "w\($0)", role: .mlp, value: randomTensor($0, seed: 7)) }
        for s in 0..<3 { for p in pa { a.update(p, gradient: randomTensor(p.shape, seed: UInt64(s)), lrScale: 1) } }
        let pb = pa.map { Parameter(name: $0.name, role: .mlp, value: $0.value.copy()) }
        for (p, q) in zip(pa, pb) {
            try b.importState(a.exportState(for: p).mapValues { $0.copy() }, for: q)
            #expect(b.stateBytes(for: q) == a.stateBytes(for: p))
        }
        for s in 3..<7 {
            for (p, q) in zip(pa, pb) {
                let g = randomTensor(p.shape, seed: UInt64(s))
                a.update(p, gradient: g, lrScale: 1); b.update(q, gradient: g, lrScale: 1)
            }
        }
        for (p, q) in zip(pa, pb) { #expect(p.value.array.map(\.bitPattern) == q.value.array.map(\.bitPattern)) }
        var bad = a.exportState(for: pa[0])
        bad["state1"] = bad["state1"]!.copy(); bad["state1"]!.data[0] = 300
        #expect(throws: OptimizerStateError.self) { try b.importState(bad, for: pb[0]) }
        var wrong = a.exportState(for: pa[0])
        wrong["exp_avg"] = Tensor(zeros: [12, 20])
        #expect(throws: OptimizerStateError.self) { try b.importState(wrong, for: pb[0]) }
    }

    // MARK: Registry, model-level checks

    static func options(_ f: (inout OptimizerOptions) -> Void = { _ in }) -> OptimizerOptions {
        var o = OptimizerOptions()
        o.learningRate = 1e-2; o.min8bitSize = 64; o.blockSize = 64; o.rank = 4; o.updateGap = 3
        f(&o)
        return o
    }

    @Test func registryDefaultsAndErrors() throws {
        let r = try OptimizerRegistry.make("adamw8bit", options: OptimizerOptions())
        let opt = try #require(r.fallback as? AdamW8bit)
        #expect(opt.learningRate == 1e-3 && opt.weightDecay == 1e-2 && opt.eps == 1e-8)
        #expect(opt.quantization == (try StateQuantization(blockSize: 256, minimumSize: 4096)))
        #expect(r.routes.isEmpty)
        for bad in [
            { (o: inout OptimizerOptions) in o.blockSize = 1 },
            { (o: inout OptimizerOptions) in o.min8bitSize = -5 },
            { (o: inout OptimizerOptions) in o.learningRate = -1 },
            { (o: inout OptimizerOptions) in o.beta2 = 1 },
        ] as [(inout OptimizerOptions) -> Void] {
            var o = OptimizerOptions(); bad(&o)
            for name in ["adamw8bit", "galore8bit", "qgalore"] {
                #expect(throws: ConfigurationError.self, "\(name) \(o)") { try OptimizerRegistry.make(name, options: o) }
            }
        }
    }

    @Test(arguments: ["adamw8bit", "galore8bit", "qgalore"])
    func trainsSmallModel(name: String) throws {
        let (before, after) = try BaseRuleChecks.convergence(try OptimizerRegistry.make(name, options: Self.options()))
        #expect(after < before * 0.7, "\(name): loss \(before) -> \(after)")
    }

    @Test(arguments: ["adamw8bit", "galore8bit", "qgalore"])
    func perLayerModeMatches(name: String) throws {
        try BaseRuleChecks.perLayerMatchesOrdinary { try OptimizerRegistry.make(name, options: Self.options()) }
    }

    @Test(arguments: ["adamw8bit", "galore8bit", "qgalore"])
    func modelStateRoundTrip(name: String) throws {
        try BaseRuleChecks.stateRoundTrip(
            try OptimizerRegistry.make(name, options: Self.options()), try OptimizerRegistry.make(name, options: Self.options()))
    }
}

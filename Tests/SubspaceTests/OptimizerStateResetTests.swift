import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceOptim

/// `OptimizerStateReset` over real rules: ReLoRA's pruning and Glentis et al.'s rebuild.
@Suite struct OptimizerStateResetTests {
    /// A parameter stepped `steps` times by `optimizer` with random gradients.
    static func stepped(_ optimizer: RoutedOptimizer, shape: [Int] = [16, 12], steps: Int = 3) -> Parameter {
        let p = Parameter(name: "model.layers.0.self_attn.q_proj.lora_A.weight", role: .attention, value: Tensor(zeros: shape))
        var r = RandomStream(seed: 5)
        for _ in 0..<steps {
            r.fillNormal(p.gradient(), std: 1)
            optimizer.update(p, lrScale: 1)
        }
        return p
    }

    @Test func zeroKeepsTheStepCounterAndRebuildDropsIt() throws {
        let opt = RoutedOptimizer(fallback: AdamW(learningRate: 1e-2))
        let p = Self.stepped(opt)
        try opt.reset([p], .zero, seed: 1)
        let s = opt.fallback.exportState(for: p)
        #expect(s["step"]!.array == [3])
        #expect(s["exp_avg"]!.array.allSatisfy { $0 == 0 } && s["exp_avg_sq"]!.array.allSatisfy { $0 == 0 })
        try opt.reset([p], .rebuild, seed: 1)
        #expect(opt.fallback.exportState(for: p).isEmpty)
        #expect(opt.stateBytes([p]) == 0)
    }

    /// Random pruning zeroes about the asked fraction, independently per tensor, reproducibly;
    /// the survivors keep their values.
    @Test func randomPruningFractionAndReproducibility() throws {
        func pruned(seed: UInt64) throws -> (before: [String: [Float]], after: [String: [Float]]) {
            let opt = RoutedOptimizer(fallback: AdamW(learningRate: 1e-2))
            let p = Self.stepped(opt, shape: [64, 64])
            let before = opt.fallback.exportState(for: p).mapValues { $0.array }
            try opt.reset([p], .randomPrune(fraction: 0.9), seed: seed)
            return (before, opt.fallback.exportState(for: p).mapValues { $0.array })
        }
        let a = try pruned(seed: 7), b = try pruned(seed: 7), c = try pruned(seed: 8)
        #expect(a.after == b.after)
        #expect(a.after["exp_avg"]! != c.after["exp_avg"]!)
        for key in ["exp_avg", "exp_avg_sq"] {
            let before = a.before[key]!, after = a.after[key]!
            let zeros = after.filter { $0 == 0 }.count
            let fraction = Double(zeros) / Double(after.count)
            #expect(abs(fraction - 0.9) < 0.03, "\(key): \(fraction)")
            for (x, y) in zip(before, after) where y != 0 { #expect(x == y) }
        }
        // exp_avg and exp_avg_sq get independent masks.
        let m1 = a.after["exp_avg"]!.map { $0 == 0 }, m2 = a.after["exp_avg_sq"]!.map { $0 == 0 }
        #expect(m1 != m2)
        #expect(a.after["step"] == a.before["step"])
    }

    /// Magnitude pruning keeps exactly the entries at or above the per-tensor quantile
    /// (torch.quantile's linear interpolation).
    @Test func magnitudePruningThreshold() throws {
        let t = Tensor(shape: [5], values: [-4, 1, 3, -2, 0.5])
        // |t| sorted: 0.5 1 2 3 4; the 0.5-quantile is 2, the 0.3-quantile sits at position 1.2: 1 + 0.2 * (2 - 1) = 1.2 (linear).
        #expect(OptimizerStateReset.quantile(of: t, 0.5) == 2)
        #expect(abs(OptimizerStateReset.quantile(of: t, 0.3) - 1.2) < 1e-6)
        var r = RandomStream(seed: 0)
        OptimizerStateReset.magnitudePrune(fraction: 0.5).apply(to: t, rng: &r)
        #expect(t.array == [-4, 0, 3, -2, 0])
        let opt = RoutedOptimizer(fallback: AdamW(learningRate: 1e-2))
        let p = Self.stepped(opt)
        try opt.reset([p], .magnitudePrune(fraction: 0.7), seed: 0)
        let m = opt.fallback.exportState(for: p)["exp_avg"]!.array
        let kept = Double(m.filter { $0 != 0 }.count) / Double(m.count)
        #expect(abs(kept - 0.3) < 0.02, "\(kept)")
    }

    /// Works through a rule whose moments are stored in 8 bits, and refuses bad fractions.
    @Test func eightBitStateAndBadFractions() throws {
        let opt = RoutedOptimizer(fallback: try AdamW8bit(learningRate: 1e-2))
        let p = Self.stepped(opt, shape: [64, 64])
        #expect(opt.fallback.exportState(for: p)["state1"] != nil, "the moments are 8-bit")
        try opt.reset([p], .randomPrune(fraction: 0.5), seed: 0)
        let zero1 = Float(DynamicQuantizationMap.signed.zeroCode)
        let half = opt.fallback.exportState(for: p)["state1"]!.array.filter { $0 == zero1 }.count
        #expect(abs(Double(half) / 4096 - 0.5) < 0.05)
        #expect(throws: ConfigurationError.self) { try opt.reset([p], .magnitudePrune(fraction: 0.5), seed: 0) }
        try opt.reset([p], .zero, seed: 0)
        let s = opt.fallback.exportState(for: p)
        #expect(s["state1"]!.array.allSatisfy { $0 == zero1 })
        #expect(s["state2"]!.array.allSatisfy { $0 == Float(DynamicQuantizationMap.unsigned.zeroCode) })
        // The next step behaves as after a zero state with the step counter kept: finite, moving.
        p.gradient().data.update(repeating: 0.5, count: p.count)
        let w = p.value.array
        opt.update(p, lrScale: 1)
        #expect(p.value.array != w && p.value.array.allSatisfy(\.isFinite))
        for bad in [OptimizerStateReset.randomPrune(fraction: 1.5), .magnitudePrune(fraction: -0.1), .randomPrune(fraction: .nan)] {
            #expect(throws: ConfigurationError.self) { try opt.reset([p], bad, seed: 0) }
        }
    }
}

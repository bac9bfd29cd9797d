import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// The reference's SO step written naively with dictionaries (its overlap / moment-only /
/// new-entry cases and top-k of |m|, ties to the lower index), for comparison.
struct NaiveSparseAdam {
    var m: [Int: Float] = [:], v: [Int: Float] = [:]
    var step = 0
    let lr: Float, b1: Float, b2: Float, eps: Float, wd: Float, k: Int

    mutating func update(_ w: Tensor, _ g: Tensor, support: [Int]) {
        step += 1
        var nm: [Int: Float] = [:], nv: [Int: Float] = [:]
        for (i, mi) in m where !support.contains(i) { nm[i] = b1 * mi; nv[i] = b2 * v[i]! }
        for i in support {
            let gi = g.data[i] + wd * w.data[i]
            if let mi = m[i] {
                nm[i] = b1 * mi + (1 - b1) * gi; nv[i] = b2 * v[i]! + (1 - b2) * gi * gi
            } else {
                nm[i] = (1 - b1) * gi; nv[i] = (1 - b2) * gi * gi
            }
        }
        let bc1 = 1 - Float(Foundation.pow(Double(b1), Double(step))), bc2 = 1 - Float(Foundation.pow(Double(b2), Double(step)))
        for (i, mi) in nm { w.data[i] -= lr / bc1 * mi / ((nv[i]! / bc2).squareRoot() + eps) }
        let kept = nm.keys.sorted { (abs(nm[$0]!), -$0) > (abs(nm[$1]!), -$1) }.prefix(k)
        m = [:]; v = [:]
        for i in kept { m[i] = nm[i]; v[i] = nv[i] }
    }
}

@Suite("SparseOptimization") struct SparseOptimizationTests {
    static let name = "model.layers.0.mlp.up_proj.weight"

    static func make(density: Float = 0.2, gap: Int = 3, lr: Float = 0.01, wd: Float = 0, seed: UInt64 = 0) throws -> SparseOptimization {
        try SparseOptimization(learningRate: lr, weightDecay: wd, density: density, updateGap: gap, seed: seed)
    }

    @Test func supportIsKDistinctEntriesRedrawnEveryTSteps() throws {
        let shape = [10, 12], gap = 3
        let opt = try Self.make(density: 0.2, gap: gap)
        let k = opt.supportSize(120)
        #expect(k == 24)
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
        var supports: [[UInt32]] = []
        for s in 0..<7 {
            opt.update(p, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
            let support = opt.states[Self.name]!.support
            #expect(support.count == k)
            #expect(Set(support).count == k && support == support.sorted() && support.allSatisfy { $0 < 120 })
            supports.append(support)
        }
        // Steps 1-3 share a draw, 4-6 the next, 7 a third.
        #expect(supports[0] == supports[1] && supports[1] == supports[2])
        #expect(supports[3] == supports[4] && supports[4] == supports[5])
        #expect(supports[2] != supports[3] && supports[5] != supports[6])
        // A pure function of (seed, name, draw index).
        #expect(opt.drawSupport(for: p, index: 1) == supports[3])
        #expect(try Self.make(seed: 1).drawSupport(for: p, index: 1) != supports[3])
        // Full density takes every entry.
        #expect(try Self.make(density: 1).drawSupport(for: p, index: 0) == (0..<120).map { UInt32($0) })
    }

    /// Draws are uniform: over many draws every entry is chosen about k/N of the time.
    @Test func supportDrawIsUniform() throws {
        let opt = try Self.make(density: 0.25)
        let p = Parameter(name: Self.name, role: .mlp, value: Tensor(zeros: [4, 10]))
        var counts = [Int](repeating: 0, count: 40)
        let draws = 4000
        for j in 0..<draws { for i in opt.drawSupport(for: p, index: j) { counts[Int(i)] += 1 } }
        let expected = Double(draws) * 0.25
        for c in counts { #expect(abs(Double(c) - expected) < 5 * (expected * 0.75).squareRoot(), "\(c) vs \(expected)") }
    }

    /// Bit-identical to the naive transcription of the reference over several redraws, with
    /// coupled weight decay.
    @Test(arguments: [[12, 10], [7, 16]])
    func matchesTheReferenceAlgorithm(shape: [Int]) throws {
        let opt = try Self.make(density: 0.3, gap: 2, wd: 0.1)
        let count = shape[0] * shape[1]
        var naive = NaiveSparseAdam(lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1, k: opt.supportSize(count))
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
        let w = p.value.copy()
        for s in 0..<9 {
            let g = randomTensor(shape, seed: UInt64(40 + s))
            opt.update(p, gradient: g, lrScale: 1)
            naive.update(w, g, support: opt.states[Self.name]!.support.map { Int($0) })
            #expect(p.value.array == w.array, "step \(s + 1)")
            let st = opt.states[Self.name]!
            #expect(st.indices.map { Int($0) } == naive.m.keys.sorted())
            #expect(st.m == naive.m.keys.sorted().map { naive.m[$0]! })
        }
    }

    /// Never more than 2k entries in play, k kept, and the step touches only the kept entries
    /// of the previous step and the current support.
    @Test func holdsAtMost2kAndTouchesOnlyTheSupport() throws {
        let shape = [16, 12]
        let opt = try Self.make(density: 0.25, gap: 2)
        let k = opt.supportSize(16 * 12)
        let p = Parameter(name: Self.name, role: .mlp, value: randomTensor(shape, seed: 1))
        var kept: Set<UInt32> = []
        var sawMoreThanK = false
        for s in 0..<10 {
            let before = p.value.array
            opt.update(p, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
            let st = opt.states[Self.name]!
            let allowed = kept.union(st.support)
            #expect(st.lastMergedCount <= 2 * k && st.lastMergedCount == allowed.count)
            sawMoreThanK = sawMoreThanK || st.lastMergedCount > k
            #expect(st.indices.count == k && st.m.count == k && st.v.count == k)
            for (i, (a, b)) in zip(before, p.value.array).enumerated() where a != b {
                #expect(allowed.contains(UInt32(i)), "entry \(i) changed outside the support at step \(s + 1)")
            }
            for (i, (a, b)) in zip(before, p.value.array).enumerated() where allowed.contains(UInt32(i)) {
                #expect(a != b, "entry \(i) in the merged set did not move")
            }
            // The kept entries are the k largest |m| of the merged set: any dropped merged
            // entry's |m| is at most the smallest kept one (checked through the naive test too).
            kept = Set(st.indices)
            #expect(kept.isSubset(of: allowed))
        }
        #expect(sawMoreThanK)
        #expect(opt.stateBytes(for: p) == 16 * k)
        #expect(opt.stateFootprint(for: ParameterSpec(p))?.bytes == 16 * k)
    }

    /// Step 1 in closed form: m = (1 - b1) g, v = (1 - b2) g², so each support entry moves by
    /// lr·g/(|g| + eps) (a sign step of size lr), and nothing else moves.
    @Test func firstStepClosedForm() throws {
        let shape = [9, 11], lr: Float = 0.01
        let opt = try Self.make(density: 0.3, lr: lr)
        let w0 = randomTensor(shape, seed: 1), g = randomTensor(shape, seed: 2)
        let p = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        opt.update(p, gradient: g, lrScale: 1)
        let support = Set(opt.states[Self.name]!.support.map { Int($0) })
        for i in 0..<w0.count {
            let expected = support.contains(i) ? w0.data[i] - lr * g.data[i] / (abs(g.data[i]) + 1e-8) : w0.data[i]
            #expect(abs(p.value.data[i] - expected) <= 1e-6 * max(1, abs(expected)))
        }
    }

    /// Density 1 with a redraw every step is Adam on every entry (the moments are never
    /// pruned): it follows AdamW up to the order of float operations.
    @Test func fullDensityIsAdam() throws {
        let shape = [8, 6]
        let opt = try Self.make(density: 1, gap: 1)
        let adam = AdamW(learningRate: 0.01, weightDecay: 0)
        let w0 = randomTensor(shape, seed: 1)
        let p = Parameter(name: Self.name, role: .mlp, value: w0.copy()), q = Parameter(name: Self.name, role: .mlp, value: w0.copy())
        for s in 0..<6 {
            let g = randomTensor(shape, seed: UInt64(s))
            opt.update(p, gradient: g, lrScale: 1); adam.update(q, gradient: g, lrScale: 1)
        }
        #expect(relativeError(p.value.array, q.value.array) < 1e-6)
    }

    @Test func selectionFindsTheKthLargest() {
        var rng = RandomStream(seed: 3)
        for trial in 0..<40 {
            let n = 1 + rng.int(300)
            // Many ties in half the trials.
            var a = (0..<n).map { _ in trial % 2 == 0 ? rng.uniform() : Float(rng.int(5)) }
            let sorted = a.sorted(by: >)
            let k = 1 + rng.int(n)
            #expect(SparseOptimization.kthLargest(&a, k) == sorted[k - 1])
        }
        var constant = [Float](repeating: 2, count: 50)
        #expect(SparseOptimization.kthLargest(&constant, 17) == 2)
    }

    @Test func checkpointResumeIsBitIdentical() throws {
        let keys: Set<String> = ["step", "support_rows", "support_cols", "exp_avg", "exp_avg_sq", "exp_avg_rows", "exp_avg_cols"]
        let shape = [12, 10]
        let k = try Self.make().supportSize(120)
        try expectStateContinues({ try Self.make() }, shape: shape, keys: keys, momentShape: [k], badMomentShape: [k + 1])
        let saved = try expectResumeIsBitIdentical({ try Self.make(gap: 2) }, shape: shape, keys: keys, steps: 3)
        let p = Parameter(name: "w", role: .mlp, value: Tensor(zeros: shape))
        // Unsorted or out-of-range indices are rejected.
        var swapped = saved
        let rows = saved["exp_avg_rows"]!.array, cols = saved["exp_avg_cols"]!.array
        swapped["exp_avg_rows"] = Tensor(shape: [rows.count], values: rows.reversed())
        swapped["exp_avg_cols"] = Tensor(shape: [cols.count], values: cols.reversed())
        #expect(throws: OptimizerStateError.self) { try Self.make().importState(swapped, for: p) }
        var outside = saved
        outside["support_cols"] = Tensor(shape: [k], values: [Float](repeating: 10, count: k))
        #expect(throws: OptimizerStateError.self) { try Self.make().importState(outside, for: p) }
    }

    @Test func lowersALeastSquaresLoss() throws {
        let (l0, l1) = leastSquaresRun(try Self.make(density: 0.5, gap: 2, lr: 0.02), shape: [24, 16], steps: 200)
        #expect(l1 < 0.3 * l0, "\(l0) -> \(l1)")
    }

    @Test func registryRoutesAndValidates() throws {
        let routed = try OptimizerRegistry.make("so", options: OptimizerOptions())
        let hidden = Parameter(name: "model.layers.0.self_attn.o_proj.weight", role: .attention, value: Tensor(zeros: [8, 8]))
        let head = Parameter(name: "lm_head.weight", role: .head, value: Tensor(zeros: [8, 8]))
        let so = routed.optimizer(for: hidden) as! SparseOptimization
        #expect(so.density == 0.1 && so.updateGap == 5 && so.beta1 == 0.9 && so.beta2 == 0.999)
        #expect(routed.optimizer(for: head).name == "adamw")
        for bad: (inout OptimizerOptions) -> Void in [
            { $0.density = 0 }, { $0.density = 1.5 }, { $0.updateGap = 0 }, { $0.eps = 0 }, { $0.weightDecay = -1 },
        ] {
            var o = OptimizerOptions()
            bad(&o)
            #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("so", options: o) }
        }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct LionTests {
    /// Two steps in closed form (lion-pytorch: decay first, sign of the interpolation,
    /// then the momentum update), including a coordinate where the interpolation is 0.
    @Test func closedFormTwoSteps() {
        let lr: Float = 0.1, b1: Float = 0.9, b2: Float = 0.99, wd: Float = 0.5
        let p0: [Float] = [1, -2, 0.5, 3], g1: [Float] = [0.3, -0.1, 2, 0], g2: [Float] = [-0.2, 0.4, -5, 1]
        let p = param(p0)
        let opt = Lion(learningRate: lr, beta1: b1, beta2: b2, weightDecay: wd)
        opt.update(p, gradient: Tensor(shape: [4], values: g1), lrScale: 1)
        opt.update(p, gradient: Tensor(shape: [4], values: g2), lrScale: 1)
        func sign(_ x: Double) -> Double { x > 0 ? 1 : (x < 0 ? -1 : 0) }
        for i in 0..<4 {
            var x = Double(p0[i]), m = 0.0
            for g in [Double(g1[i]), Double(g2[i])] {
                x *= 1 - Double(lr * wd)
                x -= Double(lr) * sign(Double(b1) * m + (1 - Double(b1)) * g)
                m = Double(b2) * m + (1 - Double(b2)) * g
            }
            #expect(abs(Double(p.value[i]) - x) < 1e-6, "\(i)")
            #expect(abs(Double(opt.states["w"]!.m[i]) - m) < 1e-7)
        }
        // Coordinate 3: step 1 has g = 0 and m = 0, so sign(0) = 0 and only decay applies.
        // Step 2: c = 0.9 * 0 + 0.1 * 1 > 0.
        #expect(abs(p.value[3] - ((3 * 0.95) * 0.95 - 0.1)) < 1e-6)
        // Exact values: step 1 moves coordinate 0 to 1 * 0.95 - 0.1 = 0.85;
        // step 2: c = 0.9 * 0.003 + 0.1 * (-0.2) = -0.0173 < 0, so 0.85 * 0.95 + 0.1.
        #expect(abs(p.value[0] - (0.85 * 0.95 + 0.1)) < 1e-6)
        #expect(opt.stateBytes(for: p) == 4 * 4)
    }

    /// The reusable rule (`direction`, for projected use) agrees with the fused step.
    @Test func ruleDirectionMatchesStep() {
        let rule = LionRule(beta1: 0.8, beta2: 0.95)
        let p = randomTensor([6, 5], seed: 1), q = p.copy()
        let m1 = Tensor(zeros: [6, 5]), m2 = Tensor(zeros: [6, 5])
        for t in 0..<3 {
            let g = randomTensor([6, 5], seed: UInt64(t + 5))
            rule.step(parameter: p, gradient: g, momentum: m1, lr: 0.01, weightDecay: 0.1)
            let u = Tensor(zeros: [6, 5])
            rule.direction(gradient: g, momentum: m2, into: u)
            #expect(u.array.allSatisfy { abs($0) == 1 })
            for i in 0..<q.count { q[i] = q[i] * (1 - 0.01 * 0.1) - 0.01 * u[i] }
        }
        #expect(maxAbsDiff(p.array, q.array) < 1e-6 && m1.array == m2.array)
    }

    @Test func stateBytesAndCheckpoint() throws {
        let p = Parameter(name: "w", role: .attention, value: randomTensor([7, 3], seed: 1))
        let opt = Lion()
        #expect(opt.stateBytes(for: p) == 0)
        opt.update(p, gradient: randomTensor([7, 3], seed: 2), lrScale: 1)
        #expect(opt.stateBytes(for: p) == 7 * 3 * 4)
        let s = opt.exportState(for: p)
        #expect(Set(s.keys) == ["exp_avg"])
        #expect(throws: OptimizerStateError.self) { try Lion().importState(["exp_avg": Tensor(zeros: [3, 7])], for: p) }
        #expect(throws: OptimizerStateError.self) { try Lion().importState(["momentum_buffer": s["exp_avg"]!], for: p) }
        var o = OptimizerOptions(); o.learningRate = 1e-3; o.weightDecay = 0.1
        try BaseRuleChecks.stateRoundTrip(try OptimizerRegistry.make("lion", options: o), try OptimizerRegistry.make("lion", options: o))
    }

    @Test(arguments: [1, 2])
    func perLayerUpdateMatchesOrdinaryMode(accum: Int) throws {
        try BaseRuleChecks.perLayerMatchesOrdinary({
            var o = OptimizerOptions(); o.learningRate = 1e-3; o.weightDecay = 0.1
            return try OptimizerRegistry.make("lion", options: o)
        }, accum: accum)
    }

    @Test func lossDecreases() throws {
        var o = OptimizerOptions(); o.learningRate = 3e-3
        let (before, after) = try BaseRuleChecks.convergence(try OptimizerRegistry.make("lion", options: o))
        print("lion smoke: loss \(before) -> \(after)")
        #expect(after < 0.7 * before)
    }

    @Test func registry() throws {
        let d = try #require(try OptimizerRegistry.make("lion", options: OptimizerOptions()).fallback as? Lion)
        #expect(d.learningRate == 1e-4 && d.rule == LionRule(beta1: 0.9, beta2: 0.99) && d.weightDecay == 0)
        for bad in [
            { (o: inout OptimizerOptions) in o.learningRate = 0 },
            { o in o.beta1 = -0.1 },
            { o in o.beta2 = 1 },
            { o in o.weightDecay = -1 },
        ] as [(inout OptimizerOptions) -> Void] {
            var o = OptimizerOptions(); bad(&o)
            #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("lion", options: o) }
        }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// A tensor of N(0, std^2) values from a fixed stream.
func randomTensor(_ shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
    let t = Tensor(zeros: shape)
    var r = RandomStream(seed: seed)
    r.fillNormal(t, std: std)
    return t
}

/// ||a - b|| / max(||b||, tiny): the relative error used by every comparison here.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// Central finite differences of a scalar function of `x`, at up to `samples` coordinates
/// (all if fewer). `f` is evaluated in float32 but accumulated in Double by the caller.
/// Returns (numeric, analytic) pairs for the sampled coordinates.
func finiteDifference(
    _ x: Tensor, analytic: Tensor, samples: Int = 24, h: Float = 1e-2, seed: UInt64 = 7, _ f: () -> Double
) -> (numeric: [Float], analytic: [Float]) {
    var rng = RandomStream(seed: seed)
    let idx = x.count <= samples ? Array(0..<x.count) : (0..<samples).map { _ in rng.int(x.count) }
    var num: [Float] = [], ana: [Float] = []
    for i in idx {
        let orig = x.data[i]
        x.data[i] = orig + h
        let fp = f()
        x.data[i] = orig - h
        let fm = f()
        x.data[i] = orig
        num.append(Float((fp - fm) / Double(2 * h)))
        ana.append(analytic.data[i])
    }
    return (num, ana)
}

/// sum(out * weights) in Double: a scalar probe whose gradient with respect to `out` is
/// `weights`, used to check a layer's backward pass.
func probe(_ out: UnsafePointer<Float>, _ weights: Tensor) -> Double {
    var s = 0.0
    for i in 0..<weights.count { s += Double(out[i]) * Double(weights.data[i]) }
    return s
}

/// Checkpoint hooks of a single-matrix optimizer: 4 steps, export, import into a fresh
/// optimizer, 6 more steps on both must give identical weights; the exported keys and the
/// first moment's shape are as expected, and a wrongly shaped `exp_avg` is rejected.
func expectStateContinues(
    _ make: () throws -> ParameterOptimizer, shape: [Int], keys: Set<String>, momentShape: [Int], badMomentShape: [Int]
) throws {
    let a = try make(), b = try make()
    let pa = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 5))
    for s in 0..<4 { a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) }
    let saved = a.exportState(for: pa)
    #expect(Set(saved.keys) == keys)
    #expect(saved["exp_avg"]!.shape == momentShape)
    let pb = Parameter(name: "w", role: .mlp, value: pa.value.copy())
    try b.importState(saved.mapValues { $0.copy() }, for: pb)
    for s in 4..<10 {
        a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
        b.update(pb, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
    }
    #expect(pa.value.array == pb.value.array)
    var bad = saved
    bad["exp_avg"] = Tensor(zeros: badMomentShape)
    #expect(throws: OptimizerStateError.self) { try b.importState(bad, for: pb) }
}


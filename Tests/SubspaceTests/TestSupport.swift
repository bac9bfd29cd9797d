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


/// One forward and backward pass of `model` on `batch`, then every trainable parameter's
/// gradient against central finite differences of `loss` (the forward-only loss of the
/// whole model unless given) at `samples` coordinates; frozen parameters must have no
/// gradient. The analytic gradients are copied first, so `loss` may run training forwards.
/// Returns the names checked and the frozen names.
@discardableResult
func expectModelGradients(
    _ model: LlamaModel, batch: TokenBatch, samples: Int = 12, h: Float = 5e-3, tolerance: Double = 3e-2,
    before: () -> Void = {}, loss: (() -> Double)? = nil
) throws -> (checked: [String], frozen: [String]) {
    before()
    try model.forward(batch)
    model.backward()
    let analytic = model.parameters.map { $0.grad?.copy() }
    let f = loss ?? { (try? model.loss(batch).loss) ?? .nan }
    var checked: [String] = [], frozen: [String] = []
    for (p, g) in zip(model.parameters, analytic) {
        guard p.requiresGrad else {
            #expect(g == nil, "\(p.name) is frozen but has a gradient")
            frozen.append(p.name)
            continue
        }
        let grad = try #require(g, "\(p.name)")
        let c = finiteDifference(p.value, analytic: grad, samples: samples, h: h) { before(); return f() }
        let err = relativeError(c.analytic, c.numeric)
        #expect(err < tolerance, "\(p.name): relative error \(err)")
        checked.append(p.name)
    }
    return (checked, frozen)
}

/// `op` against the dense map of `weight` (`[out, in]`, row-major): forward with and without
/// `accumulate`, in both modes, over several rows and over one (the decoding step's
/// matrix-vector path), and the input gradient dx = dy W.
func expectDenseMap(_ op: any LinearOperator, weight: [Float], tolerance: Double = 1e-5) {
    let (o, i) = (op.outFeatures, op.inFeatures)
    precondition(weight.count == o * i)
    for rows in [5, 1] {
        let x = randomTensor([rows, i], seed: 3)
        let y0 = randomTensor([rows, o], seed: 4)
        var want = [Float](repeating: 0, count: rows * o)
        for n in 0..<rows { for a in 0..<o { var s: Float = 0; for c in 0..<i { s += x.data[n * i + c] * weight[a * i + c] }; want[n * o + a] = s } }
        let y = Tensor(zeros: [rows, o])
        op.forward(x.data, y.data, rows: rows, accumulate: false, mode: .inference)
        #expect(relativeError(y.array, want) < tolerance)
        let yAcc = y0.copy()
        op.forward(x.data, yAcc.data, rows: rows, accumulate: true, mode: .training)
        #expect(relativeError(yAcc.array, zip(y0.array, want).map { $0 + $1 }) < tolerance)
        let dy = randomTensor([rows, o], seed: 5)
        let dx = Tensor(zeros: [rows, i])
        op.backwardInput(dy.data, dx.data, rows: rows, accumulate: false)
        var wantDx = [Float](repeating: 0, count: rows * i)
        for n in 0..<rows { for c in 0..<i { var s: Float = 0; for a in 0..<o { s += dy.data[n * o + a] * weight[a * i + c] }; wantDx[n * i + c] = s } }
        #expect(relativeError(dx.array, wantDx) < tolerance)
        let dxAcc = Tensor(shape: [rows, i], repeating: 1)
        op.backwardInput(dy.data, dxAcc.data, rows: rows, accumulate: true)
        #expect(relativeError(dxAcc.array, wantDx.map { $0 + 1 }) < tolerance)
        op.releaseActivations()
    }
}

/// The row-major product `[m, k] x [k, n]` by loops (a reference for BLAS results).
func matmul(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n { var s: Float = 0; for l in 0..<k { s += a[i * k + l] * b[l * n + j] }; c[i * n + j] = s } }
    return c
}

/// A few AdamW steps (through routing) on one batch: the loss must fall by `margin`, and
/// every frozen tensor must stay bit-identical with no gradient and no optimizer state.
/// Returns the optimizer.
@discardableResult
func expectAdamWTrains(_ model: LlamaModel, steps: Int = 8, lr: Float = 2e-2, margin: Double = 0.05) throws -> RoutedOptimizer {
    let frozen = model.parameters.filter { !$0.requiresGrad }.map { ($0, $0.value.array) }
    let optimizer = RoutedOptimizer(fallback: AdamW(learningRate: lr, weightDecay: 0))
    let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
    let first = try model.loss(batch).loss
    for _ in 0..<steps {
        model.zeroGradients()
        try model.forward(batch)
        model.backward()
        optimizer.step(model.parameters, lrScale: 1)
    }
    let last = try model.loss(batch).loss
    #expect(last < first - margin, "loss \(first) -> \(last)")
    for (p, v) in frozen {
        #expect(p.value.array == v, "\(p.name) moved")
        #expect(p.grad == nil, "\(p.name) has a gradient")
        #expect(optimizer.stateBytes([p]) == 0, "\(p.name) has optimizer state")
    }
    return optimizer
}

/// The r x r identity, row-major.
func identity(_ r: Int) -> [Float] {
    (0..<(r * r)).map { $0 / r == $0 % r ? 1 : 0 }
}

/// `alpha * op(A) op(B) + beta * C` (row-major, row strides `lda`, `ldb`; C is m x n) in
/// double, with the scale of its rounding error, sum |alpha a b| + |beta c|, per entry.
func gemmReference(
    _ ta: Bool, _ tb: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int, b: [Float], ldb: Int,
    beta: Float, c: [Float]
) -> (value: [Double], scale: [Double]) {
    var out = [Double](repeating: 0, count: m * n), scale = out
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0, t = 0.0
            for p in 0..<k {
                let x = Double(ta ? a[p * lda + i] : a[i * lda + p])
                let y = Double(tb ? b[j * ldb + p] : b[p * ldb + j])
                s += x * y; t += abs(x * y)
            }
            out[i * n + j] = Double(alpha) * s + Double(beta) * Double(c[i * n + j])
            scale[i * n + j] = abs(Double(alpha)) * t + abs(Double(beta) * Double(c[i * n + j])) + 1e-30
        }
    }
    return (out, scale)
}

import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels

/// Perfusion's gated rank-one edit (`RankOneEditLinear`): finite-difference gradients, the
/// key mapped to the gated target, unrelated inputs left as W maps them.
@Suite("RankOneEdit") struct RankOneEditTests {
    static let (o, i) = (5, 7)

    /// An edit of a random W with a random key, C = M Mᵀ / i + I (positive definite), o*.
    static func edit(beta: Float = 0.75, tau: Float = 0.1) throws -> (RankOneEditLinear, Tensor) {
        let m = randomTensor([i, i], seed: 1)
        let c = m.matmul(m, transposeOther: true)
        for k in 0..<c.count { c.data[k] /= Float(i) }
        for k in 0..<i { c.data[k * i + k] += 1 }
        let cInverse = try MKORTests.lapackInverse(c)
        let key = randomTensor([i], seed: 2)
        let metricKey = cInverse.matmul(key.reshaped([i, 1])).reshaped([i])
        let op = try RankOneEditLinear(
            weight: Parameter(name: "w.weight", role: .attention, value: randomTensor([o, i], seed: 3)),
            key: Parameter(name: "w.edit.key", role: .attention, value: key),
            metricKey: Parameter(name: "w.edit.metric_key", role: .attention, value: metricKey),
            output: Parameter(name: "w.edit.output", role: .attention, value: randomTensor([o], seed: 4)), beta: beta, tau: tau)
        return (op, metricKey)
    }

    /// Rows spread across the gate's transition: t · i* + noise, t from 0.4 to 1.1.
    static func inputs(_ op: RankOneEditLinear, rows: Int = 6) -> Tensor {
        let x = randomTensor([rows, i], seed: 9, std: 0.05)
        for r in 0..<rows { for k in 0..<i { x.data[r * i + k] += (0.4 + 0.14 * Float(r)) * op.key.value.data[k] } }
        return x
    }

    @Test func gradientsMatchFiniteDifferences() throws {
        let (op, _) = try Self.edit()
        let x = Self.inputs(op), rows = x.shape[0]
        let w = randomTensor([rows, Self.o], seed: 11)
        func loss() -> Double {
            let y = Tensor(zeros: [rows, Self.o])
            op.forward(x.data, y.data, rows: rows, accumulate: false, mode: .inference)
            return probe(y.data, w)
        }
        let y = Tensor(zeros: [rows, Self.o])
        op.forward(x.data, y.data, rows: rows, accumulate: false, mode: .training)
        let dx = Tensor(zeros: x.shape)
        op.backwardInput(w.data, dx.data, rows: rows, accumulate: false)
        op.accumulateGradients(dy: w.data, x: x.data, rows: rows)
        #expect(op.weight.grad == nil && op.key.grad == nil && op.metricKey.grad == nil)
        let cx = finiteDifference(x, analytic: dx, samples: 42, h: 1e-3, loss)
        #expect(relativeError(cx.numeric, cx.analytic) < 2e-2)
        let co = finiteDifference(op.output.value, analytic: try #require(op.output.grad), h: 1e-2, loss)
        #expect(relativeError(co.numeric, co.analytic) < 1e-3)
    }

    /// The key itself (s = 1) is mapped to sigmoid((1 - beta)/tau) o*.
    @Test func theKeyMapsToTheGatedTarget() throws {
        let (op, _) = try Self.edit()
        let y = Tensor(zeros: [1, Self.o])
        op.forward(op.key.value.data, y.data, rows: 1, accumulate: false, mode: .inference)
        let gate = RankOneEditLinear.sigmoid(2.5)
        for j in 0..<Self.o { #expect(abs(y.data[j] - gate * op.output.value.data[j]) < 1e-5) }
    }

    /// Inputs with eᵀ C⁻¹ i* = 0 come out as W e, within sigmoid(-beta/tau) max|o*| (5.5e-4
    /// max|o*| at beta 0.75, tau 0.1) plus float rounding.
    @Test func unrelatedInputsAreUnchanged() throws {
        let (op, k) = try Self.edit()
        let rows = 16
        let x = randomTensor([rows, Self.i], seed: 21)
        let kk = BLAS.dot(Self.i, k.data, k.data)
        for r in 0..<rows {
            let c = BLAS.dot(Self.i, x.data + r * Self.i, k.data) / kk
            BLAS.axpy(Self.i, -c, k.data, x.data + r * Self.i)
        }
        let y = Tensor(zeros: [rows, Self.o]), plain = Tensor(zeros: [rows, Self.o])
        op.forward(x.data, y.data, rows: rows, accumulate: false, mode: .inference)
        Linear.forward(x: x.data, weight: op.weight.value.data, y: plain.data, rows: rows, inFeatures: Self.i, outFeatures: Self.o)
        let bound = RankOneEditLinear.sigmoid(-7.5) * op.output.value.array.map(abs).max()! + 1e-5
        #expect(maxAbsDiff(y.array, plain.array) < bound)
        #expect(maxAbsDiff(y.array, plain.array) > 0, "the gate is never exactly zero")
    }

    @Test func badShapesAndMetricsAreRefused() throws {
        let w = Parameter(name: "w.weight", role: .mlp, value: randomTensor([3, 4], seed: 1))
        let v4 = Parameter(name: "k", role: .mlp, value: randomTensor([4], seed: 2))
        let neg = Parameter(name: "m", role: .mlp, value: Tensor(zeros: [4]))
        for i in 0..<4 { neg.value.data[i] = -v4.value.data[i] }
        let out3 = Parameter(name: "o", role: .mlp, value: Tensor(zeros: [3]))
        #expect(throws: ConfigurationError.self) { try RankOneEditLinear(weight: w, key: v4, metricKey: v4, output: v4) }
        #expect(throws: ConfigurationError.self) { try RankOneEditLinear(weight: w, key: v4, metricKey: neg, output: out3) }
        #expect(throws: ConfigurationError.self) { try RankOneEditLinear(weight: w, key: v4, metricKey: v4, output: out3, tau: 0) }
    }
}

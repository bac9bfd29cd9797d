import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct LoRASBTests {
    static let batches = [randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4), randomBatch(vocab: 20, batch: 2, seq: 6, seed: 5)]

    static func ops(_ model: LlamaModel) -> [LoRASBLinear] { model.slots.compactMap { $0.op as? LoRASBLinear } }

    /// The dense model (seed 3) with `weights` in the named slots: the full fine-tuning model.
    static func denseModel(weights: [String: Tensor] = [:]) throws -> LlamaModel {
        let m = try LlamaModel(config: smallConfig(), seed: 3)
        for (path, w) in weights { m.parameter(named: path + ".weight")!.value.assign(w) }
        return m
    }

    /// dL/dW of each slot of `model` (dense), summed over `batches`.
    static func denseGradients(_ model: LlamaModel, paths: [String], batches: [TokenBatch]) throws -> [Tensor] {
        model.zeroGradients()
        for b in batches { try model.forward(b); model.backward() }
        return paths.map { model.parameter(named: $0 + ".weight")!.grad!.copy() }
    }

    /// trunc_r(w) by a full SVD of w.
    static func truncated(_ w: Tensor, rank r: Int) throws -> [Float] {
        let (u, s, vt) = try Linalg.svd(w)
        let (m, n, k) = (w.shape[0], w.shape[1], s.count)
        var out = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for c in 0..<n { var t: Float = 0; for j in 0..<r { t += u.data[i * k + j] * s[j] * vt.data[j * n + c] }; out[i * n + c] = t } }
        return out
    }

    /// The initialization makes s B R A the best rank-r approximation of the estimated first
    /// step, -eta sign(G) (the reference) or -eta G, with G the full fine-tuning gradient of
    /// the dense model summed over the batches; B and A are orthonormal, W0 is untouched, and
    /// no gradient, flag change or activation is left behind.
    @Test(arguments: [LoRASBInitialization.FirstStep.sign, .gradient])
    func initializationIsTheTruncatedFirstStep(step: LoRASBInitialization.FirstStep) throws {
        let model = try LatentLoRATests.model(LoRASBLinear.Kind(rank: 3, alpha: 6))
        let batch = Self.batches[0]
        #expect(try model.logits(batch).array == Self.denseModel().logits(batch).array, "before initialization the adapter is zero")
        let ops = Self.ops(model)
        let paths = model.slots.filter { $0.op is LoRASBLinear }.map(\.spec.path)
        let bases = ops.map { $0.base.value.array }
        let flags = model.parameters.map(\.requiresGrad)
        let g = try Self.denseGradients(Self.denseModel(), paths: paths, batches: Self.batches)
        let eta: Float = 0.01
        let updates = try LoRASBInitialization.initialize(model: model, batches: Self.batches, stepSize: eta, firstStep: step)
        #expect(model.parameters.allSatisfy { $0.grad == nil })
        #expect(model.parameters.map(\.requiresGrad) == flags)
        #expect(model.activationBytes == 0)
        for (k, op) in ops.enumerated() {
            let dW = Tensor(shape: g[k].shape, values: g[k].array.map { -eta * (step == .sign ? ($0 > 0 ? 1 : ($0 < 0 ? -1 : 0)) : $0) })
            #expect(relativeError(updates[k].array, dW.array) < 1e-5)
            #expect(relativeError(op.adapterWeight().array, try Self.truncated(dW, rank: 3)) < 1e-4, "\(op.base.name)")
            #expect(op.base.value.array == bases[k])
            #expect(maxAbsDiff(matmul(op.b.value.transposed().array, op.b.value.array, m: 3, k: op.outFeatures, n: 3), identity(3)) < 1e-5)
            #expect(maxAbsDiff(matmul(op.a.value.array, op.a.value.transposed().array, m: 3, k: op.inFeatures, n: 3), identity(3)) < 1e-5)
        }
        #expect(try relativeError(model.logits(batch).array, Self.denseModel().logits(batch).array) > 1e-4, "the initialization moves the model")
    }

    /// The paper's claim for the first update: with B and A orthonormal, one SGD step of lr on
    /// R moves the effective weight by -lr s^2 B B^T G A^T A, G the full fine-tuning gradient
    /// at the same point, i.e. (s = 1) by the projection of full fine-tuning's step -lr G onto
    /// {B X A}, its best approximation there: the residual is orthogonal to the subspace.
    @Test(arguments: [Float(3), 6])
    func firstUpdateIsTheProjectedFullFineTuningStep(alpha: Float) throws {
        let model = try LatentLoRATests.model(LoRASBLinear.Kind(rank: 3, alpha: alpha))
        try LoRASBInitialization.initialize(model: model, batches: Self.batches, stepSize: 0.05)
        let ops = Self.ops(model)
        let paths = model.slots.filter { $0.op is LoRASBLinear }.map(\.spec.path)
        let dense = try Self.denseModel(weights: Dictionary(uniqueKeysWithValues: zip(paths, ops.map { $0.denseWeight() })))
        let batch = Self.batches[1]
        #expect(try relativeError(dense.logits(batch).array, model.logits(batch).array) < 1e-5)
        let g = try Self.denseGradients(dense, paths: paths, batches: [batch])
        let before = ops.map { $0.denseWeight() }
        let lr: Float = 0.1
        try model.forward(batch)
        model.backward()
        RoutedOptimizer(fallback: SGD(learningRate: lr, momentum: 0)).step(model.parameters, lrScale: 1)
        for (k, op) in ops.enumerated() {
            let (m, n, s) = (op.outFeatures, op.inFeatures, op.scaling)
            let moved = zip(op.denseWeight().array, before[k].array).map { $0 - $1 }
            let b = op.b.value.array, bt = op.b.value.transposed().array, a = op.a.value.array, at = op.a.value.transposed().array
            let core = matmul(matmul(bt, g[k].array, m: 3, k: m, n: n), at, m: 3, k: n, n: 3)  // B^T G A^T
            let projected = matmul(matmul(b, core, m: m, k: 3, n: 3), a, m: m, k: 3, n: n)  // B B^T G A^T A
            #expect(relativeError(moved, projected.map { -lr * s * s * $0 }) < 1e-4, "\(op.base.name)")
            if s == 1 {
                let residual = zip(g[k].array, projected).map { -lr * ($0 - $1) }
                let inSubspace = matmul(matmul(bt, residual, m: 3, k: m, n: n), at, m: 3, k: n, n: 3)
                #expect(inSubspace.allSatisfy { abs($0) < 1e-5 * (residual.map { abs($0) }.max() ?? 1) + 1e-9 })
            }
        }
    }

    /// Bad input: no LoRA-SB adapter, no batch, a step size that is not finite and positive.
    @Test func badInputIsRefused() throws {
        let plain = try Self.denseModel()
        #expect(throws: ConfigurationError.self) { try LoRASBInitialization.initialize(model: plain, batches: Self.batches, stepSize: 0.1) }
        let model = try LatentLoRATests.model(LoRASBLinear.Kind(rank: 3))
        #expect(throws: ConfigurationError.self) { try LoRASBInitialization.initialize(model: model, batches: [], stepSize: 0.1) }
        for eta: Float in [0, -1, .nan, .infinity] {
            #expect(throws: ConfigurationError.self) { try LoRASBInitialization.initialize(model: model, batches: Self.batches, stepSize: eta) }
        }
        #expect(abs(LoRASBInitialization.referenceStepSize(learningRate: 2e-3, warmupSteps: 20) - 1e-4) < 1e-9)
        #expect(LoRASBInitialization.referenceStepSize(learningRate: 2e-3, warmupSteps: 0) == 2e-3)
        #expect(throws: ConfigurationError.self) { try Self.ops(model)[0].initialize(fromUpdate: Tensor(zeros: [3, 3])) }
    }
}

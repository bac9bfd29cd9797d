import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct LowRankTests {
    static let slot = LinearSlotSpec(name: "up_proj", module: "mlp", layer: 0, inFeatures: 10, outFeatures: 7, role: .mlp)

    /// Low-Rank (W = s B A) in every slot of the small model.
    static func model(rank: Int = 3, alpha: Float = 6, tied: Bool = false) throws -> LlamaModel {
        try LlamaModel(config: smallConfig(tied: tied), seed: 3, operators: .dense.replacing(where: { _ in true }, with: LowRankLinear.Kind(rank: rank, alpha: alpha)))
    }

    static func op(rank: Int = 4, alpha: Float = 3) throws -> LowRankLinear {
        try #require(try LowRankLinear.Kind(rank: rank, alpha: alpha).make(for: slot, initializer: ParameterInitializer(seed: 1, std: 0.2)) as? LowRankLinear)
    }

    /// s B A by loops.
    static func product(_ op: LowRankLinear) -> [Float] {
        matmul(op.b.value.array, op.a.value.array, m: op.outFeatures, k: op.rank, n: op.inFeatures).map { $0 * op.scaling }
    }

    /// Every slot's two factors against central finite differences of the whole model's
    /// loss, with the embedding, norms and head; nothing is frozen.
    @Test(arguments: [false, true])
    func gradientsThroughTheWholeModel(tied: Bool) throws {
        let model = try Self.model(tied: tied)
        let r = try expectModelGradients(model, batch: randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(r.frozen.isEmpty)
        #expect(r.checked.count == model.parameters.count)
        #expect(r.checked.contains("model.layers.1.mlp.down_proj.lora_B.weight"))
    }

    /// The operator is the dense map of s B A (`denseWeight()`), over several rows and one;
    /// both factors are Kaiming-uniform within their fan-in bounds, from their own streams.
    @Test func isTheDenseMapOfItsProduct() throws {
        let op = try Self.op()
        #expect(op.scaling == 0.75 && op.a.shape == [4, 10] && op.b.shape == [7, 4])
        #expect(op.parameters.map(\.name) == ["model.layers.0.mlp.up_proj.lora_A.weight", "model.layers.0.mlp.up_proj.lora_B.weight"])
        #expect(op.a.value.array.allSatisfy { abs($0) <= 1 / Float(10).squareRoot() })
        #expect(op.b.value.array.allSatisfy { abs($0) <= 1 / Float(4).squareRoot() })
        #expect(op.b.value.array.contains { abs($0) > 1 / Float(10).squareRoot() }, "B's bound is 1/sqrt(r), not 1/sqrt(in)")
        let w = Self.product(op)
        #expect(relativeError(op.denseWeight().array, w) < 1e-6)
        expectDenseMap(op, weight: w)
    }

    /// Specs, names and activation bytes follow the operators; the planner's activation
    /// figure is the model's allocation.
    @Test func descriptionAndActivationBytes() throws {
        let model = try Self.model()
        #expect(model.architecture.parameterSpecs == model.parameters.map { ParameterSpec($0) })
        #expect(model.parameter(named: "model.layers.0.self_attn.q_proj.weight") == nil)
        #expect(model.slots.allSatisfy { $0.op is LowRankLinear })
        try model.forward(randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(model.activationBytes == ActivationMemory.bytes(architecture: model.architecture, batch: 2, seq: 6))
        #expect(model.activationBytes == LlamaActivations.bytes(config: smallConfig(), batch: 2, seq: 6) + 7 * 2 * 4 * 12 * 3)
        model.releaseActivations()
        #expect(model.slots.allSatisfy { $0.op.activationBytes == 0 })
    }

    /// Refactorization after a few AdamW steps (which unbalance the factors): the model's
    /// logits are unchanged to 1e-5, the factors changed, and they are balanced,
    /// B^T B = A A^T = diag(S), with S descending.
    @Test func refactorizationKeepsTheFunctionAndBalancesTheFactors() throws {
        let model = try Self.model()
        try expectAdamWTrains(model, steps: 4, margin: 0)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 9)
        let before = try model.logits(batch).array
        let factors = model.slots.map { ($0.op as! LowRankLinear).a.value.array }
        #expect(try model.refactorizeOperators() == 14)
        #expect(try relativeError(model.logits(batch).array, before) < 1e-5)
        for (s, a0) in zip(model.slots, factors) {
            let op = s.op as! LowRankLinear
            #expect(op.a.value.array != a0)
            expectBalanced(a: op.a.value, b: op.b.value)
        }
    }

    /// Refuses a rank above min(in, out) or below 1 and a non-positive alpha when the model
    /// is built.
    @Test func badSettingsAreRefused() throws {
        for kind in [LowRankLinear.Kind(rank: 17, alpha: 1), LowRankLinear.Kind(rank: 0, alpha: 1), LowRankLinear.Kind(rank: 2, alpha: 0), LowRankLinear.Kind(rank: 2, alpha: .nan)] {
            #expect(throws: ConfigurationError.self) { try LlamaModel(config: smallConfig(), operators: .dense.replacing(where: { _ in true }, with: kind)) }
        }
        // The largest rank every slot takes: min(out, in) of k_proj and v_proj [8, 16].
        _ = try Self.model(rank: 8)
    }

    /// AdamW trains both factors: the loss falls.
    @Test func adamWTrains() throws {
        let model = try Self.model()
        let bs = model.slots.map { ($0.op as! LowRankLinear).b.value.array }
        let optimizer = try expectAdamWTrains(model)
        for (s, b0) in zip(model.slots, bs) {
            let op = s.op as! LowRankLinear
            #expect(op.b.value.array != b0)
            #expect(optimizer.stateBytes([op.a, op.b]) >= 2 * (op.a.value.byteCount + op.b.value.byteCount))
        }
    }
}

/// B^T B = A A^T, both diagonal with non-increasing entries (refactorized factors).
func expectBalanced(a: Tensor, b: Tensor, tolerance: Double = 1e-4) {
    let r = a.shape[0], n = a.shape[1], m = b.shape[0]
    let btb = matmul(b.transposed().array, b.array, m: r, k: m, n: r)
    let aat = matmul(a.array, a.transposed().array, m: r, k: n, n: r)
    #expect(relativeError(btb, aat) < tolerance)
    var offDiagonal: [Float] = [], diagonal: [Float] = []
    for i in 0..<r { for j in 0..<r { if i == j { diagonal.append(aat[i * r + j]) } else { offDiagonal.append(aat[i * r + j]) } } }
    let scale = diagonal.map { abs($0) }.max() ?? 1
    #expect(offDiagonal.allSatisfy { abs($0) < 1e-4 * scale }, "A A^T is not diagonal")
    #expect(zip(diagonal, diagonal.dropFirst()).allSatisfy { $0 >= $1 * (1 - 1e-4) }, "singular values out of order")
}

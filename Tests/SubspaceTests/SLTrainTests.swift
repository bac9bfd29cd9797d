import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct SLTrainTests {
    static let slot = LinearSlotSpec(name: "gate_proj", module: "mlp", layer: 1, inFeatures: 10, outFeatures: 7, role: .mlp)

    /// SLTrain in every slot of the small model; B drawn at random (it starts at zero, which
    /// would leave A without a gradient).
    static func model(rank: Int = 3, density: Float = 0.2, tied: Bool = false, seed: UInt64 = 3, randomB: Bool = true) throws -> LlamaModel {
        let m = try LlamaModel(config: smallConfig(tied: tied), seed: seed, operators: .dense.replacing(where: { _ in true }, with: SLTrainLinear.Kind(rank: rank, alpha: 6, density: density)))
        if randomB {
            for (i, s) in m.slots.enumerated() {
                var r = RandomStream(seed: 11).split("b", index: UInt64(i))
                r.fillNormal((s.op as! SLTrainLinear).b.value, std: 0.3)
            }
        }
        return m
    }

    static func op(density: Float = 0.3) throws -> SLTrainLinear {
        let op = try #require(try SLTrainLinear.Kind(rank: 3, alpha: 2, density: density).make(for: slot, initializer: ParameterInitializer(seed: 1, std: 0.2)) as? SLTrainLinear)
        var r = RandomStream(seed: 2)
        r.fillNormal(op.b.value, std: 0.5)
        return op
    }

    /// B, A and the sparse values against central finite differences of the whole model's
    /// loss; the support is frozen and gets no gradient.
    @Test(arguments: [false, true])
    func gradientsThroughTheWholeModel(tied: Bool) throws {
        let model = try Self.model(tied: tied)
        let r = try expectModelGradients(model, batch: randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(r.frozen.count == 14 && r.frozen.allSatisfy { $0.hasSuffix(".sparse_index") })
        #expect(r.checked.count == model.parameters.count - 14)
        #expect(r.checked.contains("model.layers.0.self_attn.o_proj.sparse_value"))
    }

    /// The operator is the dense map of s B A + S, with S scattered by loops from the support;
    /// the initialisation is the reference's (A Kaiming, B zero, values within 1/sqrt(in)).
    @Test func isTheDenseMapOfItsEffectiveWeight() throws {
        let fresh = try #require(try SLTrainLinear.Kind(rank: 3, alpha: 2, density: 0.3).make(for: Self.slot, initializer: ParameterInitializer(seed: 1, std: 0.2)) as? SLTrainLinear)
        #expect(fresh.b.value.array.allSatisfy { $0 == 0 })
        #expect(fresh.a.value.array.allSatisfy { abs($0) <= 1 / Float(10).squareRoot() })
        #expect(fresh.values.value.array.allSatisfy { abs($0) <= 1 / Float(10).squareRoot() })
        #expect(fresh.parameters.map(\.name) == ["lora_A", "lora_B", "sparse_value", "sparse_index"].map { "model.layers.1.mlp.gate_proj." + $0 })
        #expect(fresh.parameters.map(\.requiresGrad) == [true, true, true, false])
        let op = try Self.op()
        #expect(op.nonZeros == 21)  // floor(0.3 * 70)
        var w = matmul(op.b.value.array, op.a.value.array, m: 7, k: 3, n: 10).map { $0 * op.scaling }
        let idx = op.support.value.array
        for k in 0..<21 { w[Int(idx[k]) * 10 + Int(idx[21 + k])] += op.values.value.data[k] }
        #expect(relativeError(op.denseWeight().array, w) < 1e-6)
        expectDenseMap(op, weight: w)
    }

    /// At a size where the sparse loops split across workers (nnz 1,966, 128 rows): forward
    /// and input gradient equal the dense map of s B A + S, and the value gradient equals the
    /// dense weight gradient dy^T x read on the support.
    @Test func largeSlotMatchesTheDenseWeight() throws {
        let slot = LinearSlotSpec(name: "o_proj", module: "self_attn", layer: 0, inFeatures: 256, outFeatures: 256, role: .attention)
        let op = try #require(try SLTrainLinear.Kind(rank: 8).make(for: slot, initializer: ParameterInitializer(seed: 4, std: 0.02)) as? SLTrainLinear)
        var r = RandomStream(seed: 6)
        r.fillNormal(op.b.value, std: 0.1)
        #expect(op.nonZeros == 1966)
        let rows = 128
        let w = op.denseWeight()
        let x = randomTensor([rows, 256], seed: 7), dy = randomTensor([rows, 256], seed: 8)
        let y = Tensor(zeros: [rows, 256]), want = Tensor(zeros: [rows, 256])
        op.forward(x.data, y.data, rows: rows, accumulate: false, mode: .training)
        Linear.forward(x: x.data, weight: w.data, y: want.data, rows: rows, inFeatures: 256, outFeatures: 256)
        #expect(relativeError(y.array, want.array) < 1e-5)
        let dx = Tensor(zeros: [rows, 256]), wantDx = Tensor(zeros: [rows, 256])
        op.backwardInput(dy.data, dx.data, rows: rows, accumulate: false)
        Linear.backwardInput(dy: dy.data, weight: w.data, dx: wantDx.data, rows: rows, inFeatures: 256, outFeatures: 256)
        #expect(relativeError(dx.array, wantDx.array) < 1e-5)
        op.accumulateGradients(dy: dy.data, x: x.data, rows: rows)
        let dW = Tensor(zeros: [256, 256])
        Linear.backwardWeight(dy: dy.data, x: x.data, dWeight: dW.data, rows: rows, inFeatures: 256, outFeatures: 256)
        let idx = op.support.value.array
        let gathered = (0..<1966).map { dW.data[Int(idx[$0]) * 256 + Int(idx[1966 + $0])] }
        #expect(relativeError(try #require(op.values.grad).array, gathered) < 1e-5)
    }

    /// The support: floor(delta m n) distinct positions in row-major order, drawn from the
    /// slot's own stream (the same seed draws the same support; another slot or seed draws
    /// another), and close to uniform over many draws.
    @Test func supportIsReproducibleAndUniform() throws {
        let op = try Self.op()
        try op.validateSupport()
        let again = try Self.op()
        #expect(again.support.value.array == op.support.value.array)
        let other = try #require(try SLTrainLinear.Kind(rank: 3, density: 0.3).make(for: Self.slot, initializer: ParameterInitializer(seed: 2, std: 0.2)) as? SLTrainLinear)
        #expect(other.support.value.array != op.support.value.array)
        let m1 = try Self.model(), m2 = try Self.model()
        for (a, b) in zip(m1.slots, m2.slots) {
            #expect((a.op as! SLTrainLinear).support.value.array == (b.op as! SLTrainLinear).support.value.array)
        }
        #expect((m1.slots[0].op as! SLTrainLinear).support.value.array != (m1.slots[2].op as! SLTrainLinear).support.value.array)
        // Selection sampling is uniform: every position is chosen with probability count/total.
        var hits = [Int](repeating: 0, count: 50)
        var rng = RandomStream(seed: 5)
        let draws = 4000
        for _ in 0..<draws {
            let s = SLTrainLinear.Kind.sampleSupport(count: 10, of: 50, using: &rng)
            #expect(s.count == 10 && s == s.sorted() && Set(s).count == 10)
            for p in s { hits[p] += 1 }
        }
        let expected = Double(draws) * 10 / 50
        #expect(hits.allSatisfy { abs(Double($0) - expected) < 5 * expected.squareRoot() }, "\(hits)")
        // A corrupted support is refused.
        op.support.value.data[1] = op.support.value.data[0]
        op.support.value.data[21 + 1] = op.support.value.data[21]
        #expect(throws: ConfigurationError.self) { try op.validateSupport() }
    }

    /// The support travels with the weights: it is a (frozen) parameter, so copying every
    /// tensor by name into a model built with another seed (which drew another support)
    /// restores the same function.
    @Test func supportTravelsWithTheWeights() throws {
        let model = try Self.model()
        let restored = try Self.model(seed: 99, randomB: false)
        let names = model.parameters.map(\.name)
        #expect(names.filter { $0.hasSuffix(".sparse_index") }.count == 14)
        #expect(restored.parameters.map(\.name) == names)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        #expect(try restored.logits(batch).array != model.logits(batch).array)
        for p in restored.parameters { p.value.assign(model.parameter(named: p.name)!.value) }
        #expect(try restored.logits(batch).array == model.logits(batch).array)
    }

    /// Specs and activation bytes follow the operators (the sparse part keeps nothing).
    @Test func descriptionAndActivationBytes() throws {
        let model = try Self.model()
        #expect(model.architecture.parameterSpecs == model.parameters.map { ParameterSpec($0) })
        try model.forward(randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
        #expect(model.activationBytes == ActivationMemory.bytes(architecture: model.architecture, batch: 2, seq: 6))
        #expect(model.activationBytes == LlamaActivations.bytes(config: smallConfig(), batch: 2, seq: 6) + 7 * 2 * 4 * 12 * 3)
    }

    /// Refactorization keeps the logits to 1e-5, balances B and A, and leaves the sparse
    /// values and support bit for bit.
    @Test func refactorizationKeepsTheFunctionAndTheSparsePart() throws {
        let model = try Self.model()
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 9)
        let before = try model.logits(batch).array
        let sparse = model.slots.map { s -> [Float] in let op = s.op as! SLTrainLinear; return op.values.value.array + op.support.value.array }
        #expect(try model.refactorizeOperators() == 14)
        #expect(try relativeError(model.logits(batch).array, before) < 1e-5)
        for (s, v) in zip(model.slots, sparse) {
            let op = s.op as! SLTrainLinear
            #expect(op.values.value.array + op.support.value.array == v)
            expectBalanced(a: op.a.value, b: op.b.value)
        }
    }

    /// AdamW trains factors and values from the reference initialisation (B zero); the
    /// support stays bit-identical, with no gradient and no state.
    @Test func adamWTrains() throws {
        try expectAdamWTrains(try Self.model(randomB: false))
    }

    /// Refuses a rank above min(in, out), a density outside (0, 1) or one giving no entry.
    @Test func badSettingsAreRefused() throws {
        for kind in [SLTrainLinear.Kind(rank: 17), SLTrainLinear.Kind(rank: 2, density: 0), SLTrainLinear.Kind(rank: 2, density: 1), SLTrainLinear.Kind(rank: 2, density: 1e-4), SLTrainLinear.Kind(rank: 2, alpha: -1)] {
            #expect(throws: ConfigurationError.self) { try LlamaModel(config: smallConfig(), operators: .dense.replacing(where: { _ in true }, with: kind)) }
        }
        #expect(SLTrainLinear.Kind(rank: 4).density == 0.03 && SLTrainLinear.Kind(rank: 4).alpha == 32)
    }
}

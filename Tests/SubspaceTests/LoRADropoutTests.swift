import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// PEFT's `lora_dropout` in `LoRALinear`.
@Suite struct LoRADropoutTests {
    static func model(dropout: Float) throws -> LlamaModel {
        let kind = LoRALinear.Kind(rank: 3, scaling: 2, dropout: dropout)
        let m = try LlamaModel(config: smallConfig(), seed: 3, operators: .dense.replacing(where: { LoRATests.targets.contains($0.name) }, with: kind))
        LoRATests.randomizeB(m)
        return m
    }

    static func rewind(_ model: LlamaModel) { for op in model.loraOperators { op.dropoutDraws = 0 } }

    /// With the mask held fixed (every pass rewinds the mask streams, so each draws its first
    /// mask again), every trainable gradient matches central finite differences of the
    /// training forward's loss; the bases get none.
    @Test func gradientsWithAFixedMask() throws {
        let model = try Self.model(dropout: 0.4)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        let r = try expectModelGradients(model, batch: batch, before: { Self.rewind(model) }, loss: { Double((try? model.forward(batch)) ?? .nan) })
        #expect(r.frozen.count == 2 * LoRATests.targets.count)
        #expect(r.checked.count == model.parameters.count - 2 * LoRATests.targets.count)
    }

    /// Masks: a fraction near p of zeros and 1/(1-p) elsewhere, a new one per training
    /// forward, the same one again from the same draw index (what a resume restores), none
    /// on inference forwards (which equal the model without dropout); the mask is kept for
    /// backward and priced exactly.
    @Test func masksPerTrainingForward() throws {
        let model = try Self.model(dropout: 0.5)
        let plain = try Self.model(dropout: 0)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        #expect(try model.logits(batch).array == plain.logits(batch).array)
        #expect(model.loraOperators.allSatisfy { $0.dropoutDraws == 0 })
        let fresh = try Self.model(dropout: 0.5)
        let first = try fresh.trainingLogits(batch).array
        #expect(first != (try plain.trainingLogits(batch).array))
        #expect(fresh.loraOperators.allSatisfy { $0.dropoutDraws == 1 })
        let second = try fresh.trainingLogits(batch).array
        #expect(second != first)
        Self.rewind(fresh)
        #expect(try fresh.trainingLogits(batch).array == first)

        let probe = try Self.model(dropout: 0.5)
        try probe.forward(batch)
        let bytes = probe.slots.reduce(0) { $0 + (($1.op is LoRALinear) ? 4 * 12 * (3 + $1.spec.inFeatures) : 0) }
        #expect(probe.activationBytes == ActivationMemory.bytes(architecture: probe.architecture, batch: 2, seq: 6))
        #expect(probe.activationBytes == LlamaActivations.bytes(config: smallConfig(), batch: 2, seq: 6) + bytes)
        // The kept fraction over many draws.
        let op = probe.loraOperators[0]
        var kept = 0, total = 0
        let x = Tensor(shape: [64, 16], repeating: 1), y = Tensor(zeros: [64, 16])
        for _ in 0..<20 {
            op.forward(x.data, y.data, rows: 64, accumulate: false, mode: .training)
            let dx = Tensor(zeros: [64, 16]), dy = Tensor(zeros: [64, 16])
            op.backwardInput(dy.data, dx.data, rows: 64, accumulate: false)
            let mask = op.activationBytes  // the mask is resident until released
            #expect(mask == 4 * 64 * (3 + 16))
            let g = Tensor(zeros: [64, 16])
            dy.data[0] = 1
            op.backwardInput(dy.data, g.data, rows: 64, accumulate: false)
            // Row 0 of dx holds W0's row plus the masked adapter row: zero where masked.
            let adapterRow = (0..<16).map { g.data[$0] - op.base.value.data[$0] }
            kept += adapterRow.filter { abs($0) > 1e-7 }.count
            total += 16
        }
        #expect(abs(Double(kept) / Double(total) - 0.5) < 0.1, "kept \(kept) of \(total)")
    }

    /// p = 0 (the default) draws nothing and keeps no mask: training and inference logits are
    /// identical bit for bit, as before dropout existed.
    @Test func noDropoutByDefault() throws {
        #expect(LoRALinear.Kind(rank: 2, scaling: 1).dropout == 0)
        let model = try Self.model(dropout: 0)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        #expect(try model.trainingLogits(batch).array == model.logits(batch).array)
        #expect(model.loraOperators.allSatisfy { $0.dropoutDraws == 0 })
        try model.forward(batch)
        #expect(model.activationBytes == LlamaActivations.bytes(config: smallConfig(), batch: 2, seq: 6) + 2 * LoRATests.targets.count * 4 * 12 * 3)
    }
}

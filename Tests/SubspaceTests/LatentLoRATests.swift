import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// LoRA-XS and LoRA-SB: a frozen base and frozen factors with a trainable r x r R.
@Suite struct LatentLoRATests {
    static let targets: Set<String> = ["q_proj", "v_proj", "o_proj", "down_proj"]

    static func model(_ kind: any LinearOperatorKind, tied: Bool = false) throws -> LlamaModel {
        try LlamaModel(config: smallConfig(tied: tied), seed: 3, operators: .dense.replacing(where: { targets.contains($0.name) }, with: kind))
    }

    static func latentOps(_ model: LlamaModel) -> [LatentLoRALinear] { model.slots.compactMap { $0.op as? LatentLoRALinear } }

    /// R drawn at random, so that the adapter changes the output.
    static func randomizeR(_ model: LlamaModel) {
        for (i, op) in latentOps(model).enumerated() {
            var r = RandomStream(seed: 8).split("R", index: UInt64(i))
            r.fillNormal(op.latent.value, std: 0.5)
        }
    }

    /// R (and everything upstream) against central finite differences of the whole model's
    /// loss; W0, A and B are frozen and get no gradient.
    @Test(arguments: [false, true])
    func gradientsThroughTheWholeModel(tied: Bool) throws {
        for kind: any LinearOperatorKind in [LoRAXSLinear.Kind(rank: 3, alpha: 6), LoRASBLinear.Kind(rank: 3)] {
            let model = try Self.model(kind, tied: tied)
            Self.randomizeR(model)
            let r = try expectModelGradients(model, batch: randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4))
            #expect(r.frozen.count == 3 * 2 * Self.targets.count, "\(kind.name)")
            #expect(r.checked.filter { $0.hasSuffix(".default_lora_latent_mapping.weight") }.count == 2 * Self.targets.count)
        }
    }

    /// LoRA-XS's initialisation: W0 is the dense weight bit for bit, B = U_r (orthonormal
    /// columns), A = S_r V_r^T (B A = the best rank-r approximation of W0), R small; the
    /// operator is the dense map of W0 + s B R A; names, specs and activation bytes.
    @Test func loraXSStartsFromTheSVDOfTheBase() throws {
        let model = try Self.model(LoRAXSLinear.Kind(rank: 3, alpha: 6))
        let dense = try LlamaModel(config: smallConfig(), seed: 3)
        #expect(model.architecture.parameterSpecs == model.parameters.map { ParameterSpec($0) })
        let q = try #require(model.slot("model.layers.0.self_attn.q_proj")?.op as? LoRAXSLinear)
        #expect(q.parameters.map(\.name) == ["base_layer.weight", "lora_A.weight", "lora_B.weight", "default_lora_latent_mapping.weight"].map { "model.layers.0.self_attn.q_proj." + $0 })
        #expect(q.scaling == 2 && LoRAXSLinear.Kind(rank: 5).scaling == 1)
        for op in Self.latentOps(model) {
            let w0 = try #require(dense.parameter(named: op.base.name.replacingOccurrences(of: ".base_layer", with: "")))
            #expect(op.base.value.array == w0.value.array)
            let (m, n, r) = (op.outFeatures, op.inFeatures, op.rank)
            let btb = matmul(op.b.value.transposed().array, op.b.value.array, m: r, k: m, n: r)
            #expect(maxAbsDiff(btb, identity(r)) < 1e-5)
            let (u, s, vt) = try Linalg.svd(w0.value)
            var best = [Float](repeating: 0, count: m * n)
            for i in 0..<m { for c in 0..<n { for j in 0..<r { best[i * n + c] += u.data[i * s.count + j] * s[j] * vt.data[j * n + c] } } }
            #expect(relativeError(matmul(op.b.value.array, op.a.value.array, m: m, k: r, n: n), best) < 1e-5)
            #expect(op.latent.value.array.allSatisfy { abs($0) < 1e-4 } && op.latent.value.array.contains { $0 != 0 })
        }
        Self.randomizeR(model)
        let w = q.denseWeight().array
        var want = q.base.value.array
        let bra = matmul(matmul(q.b.value.array, q.latent.value.array, m: 16, k: 3, n: 3), q.a.value.array, m: 16, k: 3, n: 16)
        for i in 0..<want.count { want[i] += q.scaling * bra[i] }
        #expect(relativeError(w, want) < 1e-5)
        expectDenseMap(q, weight: want)
        let batch = randomBatch(vocab: 20, batch: 2, seq: 6, seed: 4)
        try model.forward(batch)
        #expect(model.activationBytes == ActivationMemory.bytes(architecture: model.architecture, batch: 2, seq: 6))
        #expect(model.activationBytes == LlamaActivations.bytes(config: smallConfig(), batch: 2, seq: 6) + 2 * Self.targets.count * 4 * 12 * 3)
    }

    /// `initializeAdaptersFromBase()` recomputes A and B from a base loaded after the model
    /// was built (`loadDense(from:)`, as `--init-from` does), leaving R alone; a fresh model built around that
    /// base agrees.
    @Test func loraXSReinitializesFromALoadedBase() throws {
        let model = try Self.model(LoRAXSLinear.Kind(rank: 3))
        let other = try LlamaModel(config: smallConfig(), seed: 42)
        let rs = Self.latentOps(model).map { $0.latent.value.array }
        try model.loadDense(from: other)
        for op in Self.latentOps(model) {
            #expect(op.base.value.array == other.parameter(named: op.base.name.replacingOccurrences(of: ".base_layer", with: ""))!.value.array)
        }
        #expect(try model.initializeAdaptersFromBase() == 2 * Self.targets.count)
        let fresh = try LlamaModel(config: smallConfig(), seed: 42, operators: .dense.replacing(where: { Self.targets.contains($0.name) }, with: LoRAXSLinear.Kind(rank: 3)))
        for (op, (f, r)) in zip(Self.latentOps(model), zip(Self.latentOps(fresh), rs)) {
            #expect(op.latent.value.array == r)
            #expect(relativeError(matmul(op.b.value.array, op.a.value.array, m: op.outFeatures, k: 3, n: op.inFeatures), matmul(f.b.value.array, f.a.value.array, m: f.outFeatures, k: 3, n: f.inFeatures)) < 1e-5)
        }
    }

    /// AdamW trains R only: the loss falls, W0, A and B stay bit-identical with no gradient
    /// and no state.
    @Test func adamWTrainsTheLatentMatrixOnly() throws {
        for kind: any LinearOperatorKind in [LoRAXSLinear.Kind(rank: 3), LoRASBLinear.Kind(rank: 3)] {
            let model = try LlamaModel(config: smallConfig(), seed: 3, operators: LinearOperators.dense.replacing(where: { Self.targets.contains($0.name) }, with: kind).freezingOthers())
            try expectAdamWTrains(model, steps: 10, lr: 5e-2, margin: 0.02)
            #expect(model.parameters.filter(\.requiresGrad).allSatisfy { $0.name.hasSuffix(".default_lora_latent_mapping.weight") })
        }
    }

    /// A rank above min(in, out) (or below 1) and a bad alpha are refused.
    @Test func badSettingsAreRefused() throws {
        for kind: any LinearOperatorKind in [LoRAXSLinear.Kind(rank: 17), LoRAXSLinear.Kind(rank: 0), LoRASBLinear.Kind(rank: 17), LoRASBLinear.Kind(rank: 2, alpha: 0), LoRAXSLinear.Kind(rank: 2, alpha: .infinity)] {
            #expect(throws: ConfigurationError.self) { try LlamaModel(config: smallConfig(), operators: .dense.replacing(where: { _ in true }, with: kind)) }
        }
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct GaLore8bitTests {
    /// galore-torch 1.0's `GaLoreAdamW8bit` on bitsandbytes' CPU update (rank 8, gap 2, scale
    /// 0.25, lr 0.01, weight decay 0.1, eps 1e-8, `min_8bit_size` 256: the [8, 40] projected
    /// moments are 8-bit) on a [32, 40] matrix for 4 steps.
    @Test func matchesGaloreTorch8bit() throws {
        let fx = BnbFixtures.galore
        let opt = try GaLore(
            learningRate: 0.01, eps: 1e-8, weightDecay: 0.1, rank: 8, updateGap: 2, scale: 0.25,
            quantization: try StateQuantization(blockSize: 256, minimumSize: 256))
        #expect(opt.name == "galore8bit")
        let w0 = try fx.tensor("w0")
        let p = Parameter(name: "model.layers.0.mlp.up_proj.weight", role: .mlp, value: w0.copy())
        for t in 0..<4 {
            opt.update(p, gradient: try fx.tensor("grad.\(t)"), lrScale: 1)
            guard t == 1 || t == 3 else { continue }
            let ref = try fx.tensor("w.\(t)")
            let err = relativeError(p.value.array, ref.array)
            let delta = relativeError(zip(p.value.array, w0.array).map { $0 - $1 }, zip(ref.array, w0.array).map { $0 - $1 })
            #expect(err < 1e-5, "step \(t): weights off by \(err)")
            #expect(delta < 1e-3, "step \(t): update off by \(delta)")
        }
        let state = opt.exportState(for: p)
        #expect(Set(state.keys) == ["step", "state1", "absmax1", "state2", "absmax2", "ortho_matrix"])
        #expect(relativeError(state["ortho_matrix"]!.array, try fx.tensor("ortho_matrix").array) < 1e-4)
        for key in ["state1", "state2"] {
            let ours = BnbFixtures.codes(state[key]!), ref = BnbFixtures.codes(try fx.tensor(key))
            #expect(zip(ours, ref).filter { $0 != $1 }.count <= 3, "\(key) codes differ")
        }
        for key in ["absmax1", "absmax2"] {
            #expect(relativeError(state[key]!.array, try fx.tensor(key).array) < 1e-4)
        }
    }

    /// GaLore-8bit stores 2 bytes per projected moment element plus the block scales, and
    /// float32 P; with the minimum size above the moment's size it is float32 like GaLore.
    @Test func stateBytes() throws {
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([64, 128], seed: 1))
        let g = randomTensor([64, 128], seed: 2)
        let eight = try GaLore(rank: 32, quantization: try StateQuantization())
        eight.update(p, gradient: g, lrScale: 1)
        // m < n: the left side, P is 64 x 32 and R = Pᵀ G is 32 x 128 (4096 elements, 8-bit).
        #expect(eight.stateBytes(for: p) == 2 * (4096 + 4 * 16) + 4 * 64 * 32)
        #expect(eight.stateFootprint(for: ParameterSpec(p))?.bytes == eight.stateBytes(for: p))
        let small = try GaLore(rank: 8, quantization: try StateQuantization())
        small.update(p, gradient: g, lrScale: 1)
        #expect(small.stateBytes(for: p) == 2 * 4 * 8 * 128 + 4 * 64 * 8)
        #expect(small.exportState(for: p)["exp_avg"] != nil)
    }

    /// The 8-bit moments compose with the other `ProjectedAdam` rules: Fira with quantized
    /// moments keeps 8-bit states, continues exactly from a checkpoint and, on gradients with
    /// a persistent signal, stays close to float32 Fira.
    @Test func firaComposes() throws {
        func make(_ q: StateQuantization?) throws -> Fira {
            let f = try Fira(learningRate: 1e-2, eps: 1e-8, rank: 8, updateGap: 4)
            f.settings.quantization = q
            return f
        }
        let q = try StateQuantization(blockSize: 64, minimumSize: 0)
        try expectContinuesAfterImport({ try make(q) }, shape: [40, 24])
        let a = try make(q), b = try make(nil)
        let w0 = randomTensor([40, 24], seed: 9)
        let pa = Parameter(name: "w", role: .mlp, value: w0.copy()), pb = Parameter(name: "w", role: .mlp, value: w0.copy())
        let signal = randomTensor([40, 24], seed: 99)
        for s in 0..<12 {
            let g = randomTensor([40, 24], seed: 50 + UInt64(s), std: 0.3)
            for i in 0..<g.count { g.data[i] += signal.data[i] }
            a.update(pa, gradient: g, lrScale: 1); b.update(pb, gradient: g, lrScale: 1)
        }
        #expect(Set(a.exportState(for: pa).keys) == ["step", "state1", "absmax1", "state2", "absmax2", "ortho_matrix", "scaling_grad"])
        #expect(a.stateBytes(for: pa) == 2 * (40 * 8 + 4 * 5) + 4 * 8 * 24 + 4)
        let d = relativeError(zip(pa.value.array, w0.array).map { $0 - $1 }, zip(pb.value.array, w0.array).map { $0 - $1 })
        #expect(d < 0.05, "8-bit Fira drifted \(d) from float32 Fira")
    }
}

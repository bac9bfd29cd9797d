import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceTraining

/// `subspace tt-bench`: CoMERA's two contraction orders (`TensorTrainContraction`) timed
/// against the dense GEMM of the same shape, for the distinct slot shapes of a preset and a
/// few row counts (tokens per call: 1 is a sampled token, batch x seq a training step).
///
/// Each case times one training pass of a `TensorTrainLinear` forced to each order (forward,
/// input gradient, parameter gradients: what a step runs per slot) and of a dense slot (the
/// three GEMMs x W^T, dy W, dy^T x), the best of `repeats` after one untimed pass, and
/// reports the order the FLOP rule picks (`TensorTrainShape.cheaperContraction`) and whether
/// it was the faster of the two. The TT operator is built as `--parametrization comera`
/// builds it (`ComeraSettings`: rank, modes), so the shapes are a run's.
public enum ContractionBench {
    /// One (shape, rows) case.
    public struct Row: Codable, Equatable, Sendable {
        public var preset: String
        /// The slot names sharing the shape (`q_proj,k_proj,...`).
        public var slots: String
        public var out: Int
        public var `in`: Int
        public var outModes: [Int]
        public var inModes: [Int]
        public var ranks: [Int]
        public var rows: Int
        /// Milliseconds of a training pass: sequential order, dense (rebuild) order, dense GEMMs.
        public var sequentialMs: Double
        public var rebuildMs: Double
        public var gemmMs: Double
        /// The FLOP counts of the same passes (`TensorTrainShape.flops`; 6 rows x out x in for the GEMMs).
        public var sequentialFlops: Double
        public var rebuildFlops: Double
        public var gemmFlops: Double
        /// The order the FLOP rule picks, and the faster of the two measured.
        public var picked: TensorTrainContraction
        public var fastest: TensorTrainContraction

        /// The picked order's time over the dense GEMMs' (below 1: the TT slot is faster).
        public var pickedOverGemm: Double { (picked == .sequential ? sequentialMs : rebuildMs) / gemmMs }
    }

    /// The distinct (out, in) shapes of a block's slots, with their names, in slot order.
    public static func shapes(_ config: LlamaConfig) -> [(names: [String], slot: LinearSlotSpec)] {
        var out: [(names: [String], slot: LinearSlotSpec)] = []
        for s in LlamaArchitecture(config: config).slots(layer: 0) {
            if let i = out.firstIndex(where: { $0.slot.inFeatures == s.inFeatures && $0.slot.outFeatures == s.outFeatures }) {
                out[i].names.append(s.name)
            } else {
                out.append(([s.name], s))
            }
        }
        return out
    }

    /// Best-of-`repeats` seconds of `body` after one untimed call.
    static func best(_ repeats: Int, _ body: () -> Void) -> Double {
        body()
        var t = Double.infinity
        for _ in 0..<max(repeats, 1) { let t0 = Clock.now(); body(); t = min(t, Clock.since(t0)) }
        return t
    }

    /// Measures every shape of `config` at every row count.
    /// - Throws: `ConfigurationError` for settings the slots cannot take, or a row count below 1.
    public static func measure(preset: String, config: LlamaConfig, settings: ComeraSettings, rows: [Int], repeats: Int, seed: UInt64 = 0,
                               progress: (Row) -> Void = { _ in }) throws -> [Row] {
        try settings.validate()
        guard !rows.isEmpty, rows.allSatisfy({ $0 >= 1 }) else { throw ConfigurationError("--rows needs row counts of at least 1 (got \(rows))") }
        guard repeats >= 1 else { throw ConfigurationError("--repeats must be at least 1 (got \(repeats))") }
        var result: [Row] = []
        let initializer = ParameterInitializer(seed: seed, std: config.initStd)
        for (names, slot) in shapes(config) {
            guard let op = try TensorTrainLinear.Kind(settings: settings).make(for: slot, initializer: initializer) as? TensorTrainLinear else {
                throw ConfigurationError("the comera kind built no tensor-train operator for \(slot.path)")
            }
            let w = Tensor(uninitialized: [slot.outFeatures, slot.inFeatures]), dw = Tensor(zeros: w.shape)
            var rng = RandomStream(seed: seed).split("bench")
            rng.fillNormal(w, std: config.initStd)
            for n in rows {
                let x = Tensor(uninitialized: [n, slot.inFeatures]), dy = Tensor(uninitialized: [n, slot.outFeatures])
                rng.fillNormal(x); rng.fillNormal(dy, std: 1e-3)
                let y = Tensor(uninitialized: dy.shape), dx = Tensor(uninitialized: x.shape)
                func ttPass(_ order: TensorTrainContraction) -> Double {
                    op.contraction = order
                    return best(repeats) {
                        op.forward(x.data, y.data, rows: n, accumulate: false, mode: .training)
                        op.backwardInput(dy.data, dx.data, rows: n, accumulate: false)
                        op.accumulateGradients(dy: dy.data, x: x.data, rows: n)
                    }
                }
                let (o, i) = (slot.outFeatures, slot.inFeatures)
                let seq = ttPass(.sequential), rebuild = ttPass(.dense)
                let gemm = best(repeats) {
                    BLAS.gemm(transB: true, m: n, n: o, k: i, a: x.data, lda: i, b: w.data, ldb: i, c: y.data, ldc: o)
                    BLAS.gemm(m: n, n: i, k: o, a: dy.data, lda: o, b: w.data, ldb: i, c: dx.data, ldc: i)
                    BLAS.gemm(transA: true, m: o, n: i, k: n, a: dy.data, lda: o, b: x.data, ldb: i, beta: 1, c: dw.data, ldc: i)
                }
                for p in op.parameters { p.zeroGradient() }
                let s = op.shape
                let row = Row(
                    preset: preset, slots: names.joined(separator: ","), out: o, in: i, outModes: s.outModes, inModes: s.inModes, ranks: s.ranks, rows: n,
                    sequentialMs: seq * 1e3, rebuildMs: rebuild * 1e3, gemmMs: gemm * 1e3,
                    sequentialFlops: s.flops(.sequential, rows: n, training: true), rebuildFlops: s.flops(.dense, rows: n, training: true),
                    gemmFlops: 6 * Double(n) * Double(o) * Double(i),
                    picked: s.cheaperContraction(rows: n, training: true), fastest: seq <= rebuild ? .sequential : .dense)
                progress(row)
                result.append(row)
            }
        }
        return result
    }

    /// The header of `tsv(_:)`.
    public static let tsvHeader = "preset\tslots\tout\tin\tout_modes\tin_modes\tranks\trows\tsequential_ms\trebuild_ms\tgemm_ms\tsequential_gflop\trebuild_gflop\tgemm_gflop\tpicked\tfastest\tpicked_is_fastest\tpicked_over_gemm"

    /// One tab-separated line per row (no header).
    public static func tsvLine(_ r: Row) -> String {
        func modes(_ m: [Int]) -> String { m.map(String.init).joined(separator: "x") }
        return [r.preset, r.slots, "\(r.out)", "\(r.in)", modes(r.outModes), modes(r.inModes), modes(r.ranks), "\(r.rows)",
                String(format: "%.3f", r.sequentialMs), String(format: "%.3f", r.rebuildMs), String(format: "%.3f", r.gemmMs),
                String(format: "%.4f", r.sequentialFlops / 1e9), String(format: "%.4f", r.rebuildFlops / 1e9), String(format: "%.4f", r.gemmFlops / 1e9),
                r.picked.rawValue, r.fastest.rawValue, r.picked == r.fastest ? "yes" : "no", String(format: "%.2f", r.pickedOverGemm)].joined(separator: "\t")
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceTraining
@testable import SubspaceBench

/// `subspace tt-bench` (`ContractionBench`): one row per distinct slot shape and row count,
/// the FLOP rule's pick and the measured winner reported as they are.
@Suite struct ContractionBenchTests {
    @Test func rowsCoverEachShapeAndReportThePick() throws {
        let config = LlamaConfig(dim: 32, layers: 1, heads: 4, ffnDim: 48, vocab: 40, maxSeq: 16)
        var s = ComeraSettings(); s.rank = 4
        let rows = try ContractionBench.measure(preset: "small", config: config, settings: s, rows: [1, 64], repeats: 1)
        // q, k, v, o share 32 x 32; gate and up 48 x 32; down 32 x 48.
        #expect(rows.map(\.slots) == ["q_proj,k_proj,v_proj,o_proj", "q_proj,k_proj,v_proj,o_proj", "gate_proj,up_proj", "gate_proj,up_proj", "down_proj", "down_proj"])
        for r in rows {
            let shape = TensorTrainShape(outModes: r.outModes, inModes: r.inModes, internalRanks: Array(r.ranks.dropFirst().dropLast()))
            #expect(r.picked == shape.cheaperContraction(rows: r.rows, training: true))
            #expect(r.fastest == (r.sequentialMs <= r.rebuildMs ? .sequential : .dense))
            #expect(r.sequentialMs > 0 && r.rebuildMs > 0 && r.gemmMs > 0)
            #expect(r.gemmFlops == 6 * Double(r.rows * r.out * r.in))
            #expect(ContractionBench.tsvLine(r).split(separator: "\t").count == ContractionBench.tsvHeader.split(separator: "\t").count)
        }
        #expect(throws: ConfigurationError.self) { try ContractionBench.measure(preset: "small", config: config, settings: s, rows: [0], repeats: 1) }
    }
}

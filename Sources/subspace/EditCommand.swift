import ArgumentParser
import Foundation
import Subspace

/// `subspace edit`: teach a checkpoint a new word with a Perfusion key-locked rank-one edit
/// (`PerfusionEdit`, defaults in `PerfusionSettings`).
struct EditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit",
        abstract: "Teach a model a new word from a few example sentences with a Perfusion key-locked rank-one edit.",
        discussion: """
            Estimates the input covariance C of one linear slot on --corpus, locks the key i* (the slot's \
            input at the word's last token in the examples), replaces the slot by W e - s(e) W i* + \
            sigmoid((s(e) - beta) / tau) o* with s(e) = eᵀ C⁻¹ i* / i*ᵀ C⁻¹ i*, and fits o* alone with AdamW \
            on the examples' tokens after the word. Prints the examples' loss, a held-out file's loss and \
            the validation perplexity of --corpus before and after; writes edit.safetensors and edit.json.
            """)
    @Option(help: "Checkpoint directory (a run directory or its checkpoint/) with a tokenizer.json.") var checkpoint: String
    @Option(help: "The new word.") var word: String
    @Option(help: "Example sentences, one per line; lines without the word are skipped.") var examples: String
    @Option(name: .customLong("held-out"), help: "More sentences with the word, not fitted on, for the before/after figures.") var heldOut: String?
    @Option(help: "Text for the covariance C (training split) and the perplexity figures (validation split) (default: the Shakespeare corpus).")
    var corpus: String?
    @Option(help: "The slot to edit (default: the middle layer's down projection, model.layers.<layers/2>.mlp.down_proj).") var slot: String?
    @Option(help: "AdamW steps on o*.") var steps: Int = PerfusionSettings().steps
    @Option(help: "AdamW learning rate for o*.") var lr: Float = PerfusionSettings().learningRate
    @Option(help: "Gate threshold beta (paper's training value).") var beta: Float = PerfusionSettings().beta
    @Option(help: "Gate temperature tau (paper's training value).") var tau: Float = PerfusionSettings().tau
    @Option(help: "Corpus batches of 8 x 256 tokens (or the model's context) for C.") var covarianceBatches: Int = PerfusionSettings().covarianceBatches
    @Option(help: "Validation batches for the perplexity figures.") var evalBatches: Int = 16
    @Option(help: "Output folder for edit.safetensors and edit.json.") var out: String
    @Flag(help: "Replace --out if it holds an edit.") var overwrite = false

    func run() throws {
        let outURL = URL(fileURLWithPath: out)
        let record: PerfusionEditFiles.Record = guarded {
            var settings = PerfusionSettings()
            settings.slot = slot; settings.steps = steps; settings.learningRate = lr; settings.beta = beta; settings.tau = tau
            settings.covarianceBatches = covarianceBatches
            try settings.validate()
            guard evalBatches > 0 else { throw ConfigurationError("--eval-batches must be at least 1, got \(evalBatches)") }
            try PerfusionEditFiles.checkDestination(outURL, overwrite: overwrite)
            let dir = Checkpoint.resolve(checkpointDirectory(checkpoint))
            let source = try Checkpoint.loadModel(from: dir)
            if let bad = source.nonFiniteParameter { throw ConfigurationError("'\(checkpoint)': weight '\(bad)' holds NaN or infinite values") }
            let path = settings.slotPath(for: source.config)
            try PerfusionEdit.checkSlot(path, in: source)
            settings.slot = path
            let tokPath = dir.appendingPathComponent("tokenizer.json").path
            guard FileManager.default.fileExists(atPath: tokPath) else { throw ConfigurationError("'\(checkpoint)' has no tokenizer.json") }
            let tok = try TokenizerJSON.load(path: tokPath)
            let maxTokens = source.config.maxSeq
            let fitted = try PerfusionExamples(word: word, lines: try lines(examples, "--examples"), tokenizer: tok, maxTokens: maxTokens)
            let held = try heldOut.map { try PerfusionExamples(word: word, lines: try lines($0, "--held-out"), tokenizer: tok, maxTokens: maxTokens) }
            let parts = try TextCorpus.load(path: corpus ?? defaultData()).split()
            let seq = min(256, source.config.maxSeq)
            func batches(_ text: String, _ limit: Int) throws -> [TokenBatch] {
                let b = try SequenceBatches(tokens: tok.encode(text), batch: 8, seq: seq, shuffle: false, seed: 0).evaluationBatches(limit: limit)
                guard !b.isEmpty else { throw DataError("the corpus is too short for one batch of 8 x \(seq + 1) tokens") }
                return b
            }
            let train = try batches(parts.train, settings.covarianceBatches), validation = try batches(parts.validation, evalBatches)
            let edit = try PerfusionEdit.fit(source: source, examples: fitted, corpus: train, settings: settings)
            let figures = try edit.figures(source: source, examples: fitted, heldOut: held, validation: validation)
            let record = PerfusionEditFiles.Record(
                word: word, slot: path, checkpoint: checkpoint, settings: settings, energy: edit.op.energy, figures: figures, fitLosses: edit.losses)
            try PerfusionEditFiles.write(edit, record: record, to: outURL)
            return record
        }
        print(Self.summary(record, out: out))
    }

    /// The lines of a UTF-8 text file, at least one non-empty.
    func lines(_ path: String, _ flag: String) throws -> [String] {
        guard let d = FileManager.default.contents(atPath: path) else { throw DataError("\(flag): cannot read '\(path)'") }
        guard let text = String(data: d, encoding: .utf8) else { throw DataError("\(flag): '\(path)' is not valid UTF-8 text") }
        let lines = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        guard !lines.isEmpty else { throw DataError("\(flag): '\(path)' has no sentences") }
        return lines
    }

    static func summary(_ r: PerfusionEditFiles.Record, out: String) -> String {
        let f = r.figures
        func row(_ name: String, _ p: BeforeAfter) -> String {
            String(format: "  %@ loss %.4f -> %.4f (perplexity %.2f -> %.2f)", name, p.before, p.after, exp(p.before), exp(p.after))
        }
        func mean(_ s: [Float]) -> Float { s.isEmpty ? 0 : s.reduce(0, +) / Float(s.count) }
        var lines = ["edited \(r.slot) for '\(r.word)' (i*ᵀ C⁻¹ i* = \(String(format: "%.1f", r.energy)), \(r.settings.steps) AdamW steps)"]
        lines.append(row("examples (tokens after the word)", f.examplesLoss))
        if let h = f.heldOutLoss { lines.append(row("held-out (tokens after the word)", h)) }
        lines.append(row("validation (\(f.validationTokens) tokens)", f.validationLoss))
        lines.append(String(format: "  gate: s at the word %.3f (examples), %@; on validation max s %.3f, %d of %d rows at s >= beta",
            mean(f.keyScores), f.heldOutKeyScores.map { String(format: "%.3f (held-out)", mean($0)) } ?? "no held-out",
            f.validationMaxScore, f.validationRowsAtBeta, f.validationRows))
        lines.append("wrote \(out)/\(PerfusionEditFiles.tensorsFile) and \(PerfusionEditFiles.recordFile)")
        return lines.joined(separator: "\n")
    }
}

import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mean loss and perplexity of a checkpoint on some data.")
    @Option(help: "Checkpoint directory (a run directory, its checkpoint/, or a Hugging Face LLaMA directory).") var checkpoint: String
    @Option(help: "Text file, directory of .txt works, .bin/.u32 token file, or .jsonl prompt-completion file (loss on completions; accuracy too when the completions are a few labels).") var data: String
    @Option(help: "Which part of text data: all, train or validation (the corpus split).") var split: String = "all"
    @Option(help: "A tokenizer.json to encode text with (default: the checkpoint's own).") var tokenizer: String?
    @Option(help: "A PEFT adapter folder to put on the --checkpoint model (default: the adapter the checkpoint holds, if any).") var adapter: String?
    @Option(help: "A Perfusion edit folder (edit.json, edit.safetensors from `subspace edit`) to apply to the --checkpoint model.") var edit: String?
    @Option(help: "Sequences per batch.") var batch: Int = 8
    @Option(help: "Sequence length (default: min(256, the model's maximum)).") var seq: Int?
    @Option(help: "Matrix products of the linear layers: fp32 or bf16 (needs AVX512-BF16 or AMX).") var precision: String = "fp32"
    @Flag(help: "Print {\"loss\", \"ppl\", \"tokens\"} (and \"accuracy\" on a classification file) as JSON.") var json = false

    func run() throws {
        let r: (Double, Int, Double?) = guarded {
            guard ["all", "train", "validation"].contains(split) else { throw ConfigurationError("--split must be all, train or validation") }
            let precision = try MatmulPrecision(parsing: self.precision)
            try precision.checkSupported()
            // The published checkpoint, or its `.old` twin when a save was cut between renames.
            let dir = Checkpoint.resolve(checkpointDirectory(checkpoint))
            var model = try Checkpoint.loadModel(from: dir, adapter: adapter.map { URL(fileURLWithPath: $0) })
            if let edit { model = try PerfusionEditFiles.load(from: URL(fileURLWithPath: edit), onto: model) }
            let t = seq ?? min(256, model.config.maxSeq)
            try model.config.validate(batch: batch, seq: t)
            try ResourceCheck.inference(model.config, batch: batch, seq: t)
            if let bad = model.nonFiniteParameter {
                throw ConfigurationError("'\(checkpoint)': weight '\(bad)' holds NaN or infinite values; the model cannot be evaluated")
            }
            let batches: [TokenBatch]
            var choices: (examples: [PromptCompletionExample], labels: [[Int32]])? = nil
            if PromptCompletionFile.isExampleFile(data) {
                let tok = try loadTokenizer(dir, vocab: model.config.vocab)
                let records = try PromptCompletionFile.read(path: data)
                let all = records.map { PromptCompletionExample($0, tokenizer: tok) }
                let parts = PromptCompletionFile.split(all)
                let examples = split == "train" ? parts.train : split == "validation" ? parts.validation : all
                if let bad = examples.lazy.flatMap({ $0.prompt + $0.completion }).first(where: { Int($0) >= model.config.vocab }) {
                    throw ConfigurationError("token id \(bad) is outside the model's vocabulary (\(model.config.vocab))")
                }
                batches = try ExampleBatches(examples: examples, batch: batch, seq: t, shuffle: false, seed: 0).evaluationBatches()
                if let labels = PromptCompletionFile.labels(records) { choices = (examples, labels.map { tok.encode($0) }) }
            } else {
                let ids: [Int32]
                if TokenFile.isTokenFile(data) {
                    ids = try TokenFile.read(path: data)
                } else {
                    let tok = try loadTokenizer(dir, vocab: model.config.vocab)
                    let corpus = try TextCorpus.load(path: data)
                    let parts = corpus.split()
                    let text = split == "train" ? parts.train : split == "validation" ? parts.validation : corpus.works.map(\.text).joined()
                    ids = tok.encode(text)
                }
                if let bad = ids.first(where: { Int($0) >= model.config.vocab }) {
                    throw ConfigurationError("token id \(bad) is outside the model's vocabulary (\(model.config.vocab))")
                }
                batches = try SequenceBatches(tokens: ids, batch: batch, seq: t, shuffle: false, seed: 0).evaluationBatches()
                guard !batches.isEmpty else {
                    throw DataError("the data has \(ids.count) tokens, fewer than one batch of \(batch) x \(t + 1)")
                }
            }
            try model.usePrecision(precision)
            let e = try TrainingRun.evaluate(model: model, batches: batches)
            guard e.loss.isFinite else { throw ConfigurationError("the loss is not finite (\(e.loss)): the checkpoint or the data produce NaN or infinite logits") }
            let accuracy = try choices.map {
                try ChoiceAccuracy.accuracy(model: model, examples: $0.examples, labels: $0.labels, seq: t, batch: batch)
            }
            return (e.loss, e.tokens, accuracy)
        }
        if json {
            print("{\"loss\": \(r.0), \"ppl\": \(exp(r.0)), \"tokens\": \(r.1)" + (r.2.map { ", \"accuracy\": \($0)" } ?? "") + "}")
        } else {
            print(String(format: "loss %.4f, perplexity %.2f over %d tokens", r.0, exp(r.0), r.1) + (r.2.map { String(format: ", accuracy %.4f", $0) } ?? ""))
        }
    }

    /// The --tokenizer, or the checkpoint's own tokenizer.json.
    func loadTokenizer(_ dir: URL, vocab: Int) throws -> BPETokenizer {
        let tokPath = tokenizer ?? dir.appendingPathComponent("tokenizer.json").path
        guard FileManager.default.fileExists(atPath: tokPath) else {
            throw ConfigurationError(tokenizer != nil ? "--tokenizer '\(tokPath)' does not exist"
                : "'\(checkpoint)' has no tokenizer.json to encode text with; pass --tokenizer or a .bin token file")
        }
        let tok = try TokenizerJSON.load(path: tokPath)
        if tok.vocabSize > vocab {
            throw ConfigurationError("the tokenizer has \(tok.vocabSize) tokens but the model's vocabulary is \(vocab)")
        }
        return tok
    }
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a checkpoint, printing tokens as they come.",
        discussion: """
            The prompt is prefilled once into a key/value cache, then each token is one position. \
            A last line on stderr gives tokens/s (prefill and decode). Draws apply temperature, then \
            top-k, then top-p, as transformers' generate does.
            """)
    @Option(help: "Checkpoint directory with a tokenizer.json (or the run directory holding it).") var checkpoint: String
    @Option(help: "A PEFT adapter folder to put on the --checkpoint model (default: the adapter the checkpoint holds, if any).") var adapter: String?
    @Option(help: "A Perfusion edit folder (edit.json, edit.safetensors from `subspace edit`) to apply to the --checkpoint model.") var edit: String?
    @Option(help: "Text to continue.") var prompt: String = "\n"
    @Option(help: "Tokens to generate per sample (prompt plus tokens at most the model's context, unless --sliding-window).") var tokens: Int = 200
    @Option(help: "Softmax temperature (0 = greedy).") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0 = all).") var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Nucleus sampling: the fewest most likely tokens whose probability sums to at least p (1 = off).")
    var topP: Float = 1
    @Option(name: .customLong("stop"), help: "Stop a sample when its text contains this string (printed; repeatable).")
    var stops: [String] = []
    @Option(name: .customLong("num-samples"), help: "Samples of the prompt, printed one after another; sample i uses seed + i.")
    var numSamples: Int = 1
    @Option(help: "Random seed (of the first sample).") var seed: UInt64 = 0
    @Flag(name: .customLong("sliding-window"), help: "Allow more tokens than the model's context: each new token sees the last context-length tokens.")
    var slidingWindow = false
    @Flag(name: .customLong("no-cache"), help: "Recompute the whole context for every token (the reference path, for comparison).")
    var noCache = false

    func run() throws {
        let stats = guarded {
            try sampleText(
                checkpoint: checkpointDirectory(checkpoint), prompt: prompt, tokens: tokens, temperature: temperature,
                topK: topK, topP: topP, seed: seed, slidingWindow: slidingWindow, stops: stops, numSamples: numSamples,
                useCache: !noCache, adapter: adapter.map { URL(fileURLWithPath: $0) }, edit: edit.map { URL(fileURLWithPath: $0) })
        }
        writeStderr(samplingRateLine(stats, samples: numSamples, cached: !noCache) + "\n")
    }
}

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Draw one or more runs in one SVG: loss against steps and tokens (raw, smoothed, validation), learning rate, tokens/s and RSS.")
    @Argument(help: "Run directories (each with metrics.jsonl), or their checkpoint/ folders.") var runs: [String]
    @Option(help: "Output SVG path.") var out: String = "loss.svg"

    func run() throws {
        guarded {
            guard !runs.isEmpty else { throw ConfigurationError("name at least one run directory") }
            let series = try runs.map { r -> (String, [StepMetrics]) in
                // A run directory, or its checkpoint/ (the metrics are beside it).
                var url = URL(fileURLWithPath: r)
                if !FileManager.default.fileExists(atPath: url.appendingPathComponent("metrics.jsonl").path),
                   FileManager.default.fileExists(atPath: url.deletingLastPathComponent().appendingPathComponent("metrics.jsonl").path) {
                    url = url.deletingLastPathComponent()
                }
                return (url.lastPathComponent, try MetricsLog.read(url: url.appendingPathComponent("metrics.jsonl")))
            }
            try AtomicFile.write(MetricsLog.lossPlot(runs: series), to: URL(fileURLWithPath: out))
        }
        print("wrote \(out)")
    }
}

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Train a byte-level BPE tokenizer or encode text with one.",
        subcommands: [TrainTokenizer.self, EncodeText.self])

    struct TrainTokenizer: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "train", abstract: "Train on the training split of some text.")
        @Option(help: "Text file or directory of .txt works.") var data: String
        @Option(help: "Vocabulary size.") var vocab: Int = 4096
        @Option(help: "Output tokenizer.json.") var out: String

        func run() throws {
            let n: Int = guarded {
                guard vocab >= 257 else { throw ConfigurationError("--vocab must be at least 257 (256 bytes plus a special token)") }
                let train = try TextCorpus.load(path: data).split().train
                let tok = try BPETrainer(vocabSize: vocab).train(text: train)
                try TokenizerJSON.save(tok, to: out)
                return tok.vocabSize
            }
            print("wrote \(out) (\(n) tokens)")
        }
    }

    struct EncodeText: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "encode", abstract: "Write token ids (.bin uint16, .u32 uint32).")
        @Option(help: "tokenizer.json") var tokenizer: String
        @Option(help: "UTF-8 text file.") var input: String
        @Option(help: "Output ids file (.bin or .u32).") var out: String

        func run() throws {
            let n: Int = guarded {
                let tok = try TokenizerJSON.load(path: tokenizer)
                guard let d = FileManager.default.contents(atPath: input) else { throw DataError("cannot read '\(input)'") }
                guard let text = String(data: d, encoding: .utf8) else { throw DataError("'\(input)' is not valid UTF-8 text") }
                let ids = tok.encode(text)
                try TokenFile.write(ids, path: out.hasSuffix(".bin") || out.hasSuffix(".u32") ? out : out + (tok.vocabSize > 65535 ? ".u32" : ".bin"))
                return ids.count
            }
            print("wrote \(n) ids to \(out)")
        }
    }
}

/// The checkpoint a user means by `path`: a run directory stands for its `checkpoint/`.
func checkpointDirectory(_ path: String) -> URL {
    let url = URL(fileURLWithPath: path)
    let fm = FileManager.default
    let inner = url.appendingPathComponent("checkpoint")
    if !fm.fileExists(atPath: url.appendingPathComponent(Checkpoint.configFile).path),
       fm.fileExists(atPath: inner.path) || fm.fileExists(atPath: url.appendingPathComponent("run_config.json").path) {
        return inner
    }
    return url
}

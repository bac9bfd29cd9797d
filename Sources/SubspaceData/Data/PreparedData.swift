import Foundation
import SubspaceCore
import SubspaceModels

/// Token streams ready for training: the training and validation splits, and the tokenizer
/// that made them (nil for pre-tokenized input).
///
/// Text input is split by `TextCorpus.split()`. A pre-tokenized `.bin`/`.u32` file is split
/// by position: its last 10% of tokens is validation.
///
/// Caching: training a tokenizer on 5 MB and encoding it takes seconds, so the trained
/// tokenizer and both token streams are cached under a key made from the FNV-1a hashes of the
/// text and of the tokenizer file's content, and the vocabulary size, in `cacheDirectory`.
public struct PreparedData {
    public let train: [Int32]
    public let validation: [Int32]
    public let tokenizer: BPETokenizer?
    /// Where the tokenizer came from or was cached (nil for token files).
    public let tokenizerPath: String?
    /// For a prompt-completion file: its tokenized examples (then `train` and `validation`
    /// are their tokens laid end to end, for counts only).
    public var examples: (train: [PromptCompletionExample], validation: [PromptCompletionExample])? = nil
    /// For a classification file: the label completions, in first-seen order (see
    /// `PromptCompletionFile.labels`).
    public var labels: [String]? = nil

    init(train: [Int32], validation: [Int32], tokenizer: BPETokenizer?, tokenizerPath: String?) {
        self.train = train; self.validation = validation; self.tokenizer = tokenizer; self.tokenizerPath = tokenizerPath
    }

    public static func prepare(
        data: String, tokenizer tokenizerPath: String?, vocab: Int, status: (String) -> Void = { _ in },
        tokenizerProgress: (Int, Int) -> Void = { _, _ in }
    ) throws -> PreparedData {
        if TokenFile.isTokenFile(data) {
            let ids = try TokenFile.read(path: data)
            if let bad = ids.first(where: { Int($0) >= vocab }) {
                throw DataError("token id \(bad) in '\(data)' is outside the model's vocabulary (\(vocab))")
            }
            let cut = ids.count * 9 / 10
            return PreparedData(train: Array(ids[..<cut]), validation: Array(ids[cut...]), tokenizer: nil, tokenizerPath: nil)
        }
        if PromptCompletionFile.isExampleFile(data) {
            return try prepareExamples(data: data, tokenizer: tokenizerPath, vocab: vocab)
        }
        let corpus = try TextCorpus.load(path: data)
        let (trainText, valText) = corpus.split()
        // The cache key names the text and the tokenizer by content: an edited tokenizer file
        // at the same path never reuses ids encoded with its old version.
        var tokenizerKey = "trained"
        if let tokenizerPath {
            guard let bytes = FileManager.default.contents(atPath: tokenizerPath) else {
                throw DataError("cannot read the tokenizer '\(tokenizerPath)'")
            }
            tokenizerKey = String(RandomStream.fnv1a(String(decoding: bytes, as: UTF8.self)), radix: 16)
        }
        let key = String(RandomStream.fnv1a(trainText + "\u{0}" + valText), radix: 16) + "-\(tokenizerKey)-v\(vocab)"
        let cache = cacheDirectory(for: data)
        let tok: BPETokenizer
        let tokPath: String
        if let tokenizerPath {
            tok = try TokenizerJSON.load(path: tokenizerPath)
            tokPath = tokenizerPath
        } else {
            let cached = cache.appendingPathComponent("tokenizer-\(key).json").path
            if let t = try? TokenizerJSON.load(path: cached) {
                tok = t
            } else {
                status("training a \(vocab)-token BPE tokenizer on \(trainText.utf8.count / 1024) KiB")
                tok = try BPETrainer(vocabSize: vocab).train(texts: [trainText], progress: tokenizerProgress)
                try? TokenizerJSON.save(tok, to: cached)
            }
            tokPath = cached
        }
        if tok.vocabSize > vocab {
            throw DataError("the tokenizer has \(tok.vocabSize) tokens but the model's vocabulary is \(vocab)")
        }
        let ext = vocab > 65535 ? "u32" : "bin"
        func tokens(_ name: String, _ text: String) throws -> [Int32] {
            let path = cache.appendingPathComponent("\(name)-\(key).\(ext)").path
            if let ids = try? TokenFile.read(path: path) { return ids }
            status("tokenizing the \(name) split (\(text.utf8.count / 1024) KiB)")
            let ids = tok.encode(text)
            try? TokenFile.write(ids, path: path)
            return ids
        }
        let train = try tokens("train", trainText)
        let val = valText.isEmpty ? [] : try tokens("validation", valText)
        return PreparedData(train: train, validation: val, tokenizer: tok, tokenizerPath: tokPath)
    }

    /// A prompt-completion file, tokenized with the given tokenizer (a fine-tuning file needs
    /// the model's own: `--init-from` supplies it). Small enough not to need the cache.
    static func prepareExamples(data: String, tokenizer tokenizerPath: String?, vocab: Int) throws -> PreparedData {
        guard let tokenizerPath else {
            throw DataError("a prompt-completion file needs the model's tokenizer: give --init-from a model with a tokenizer.json, or --tokenizer")
        }
        let tok = try TokenizerJSON.load(path: tokenizerPath)
        if tok.vocabSize > vocab {
            throw DataError("the tokenizer has \(tok.vocabSize) tokens but the model's vocabulary is \(vocab)")
        }
        let records = try PromptCompletionFile.read(path: data)
        let examples = records.map { PromptCompletionExample($0, tokenizer: tok) }
        if let i = examples.firstIndex(where: { $0.completion.isEmpty }) {
            throw DataError("example \(i + 1) of '\(data)' has a completion that encodes to no token")
        }
        let (train, validation) = PromptCompletionFile.split(examples)
        var out = PreparedData(
            train: train.flatMap { $0.prompt + $0.completion }, validation: validation.flatMap { $0.prompt + $0.completion },
            tokenizer: tok, tokenizerPath: tokenizerPath)
        out.examples = (train, validation)
        out.labels = PromptCompletionFile.labels(records)
        return out
    }

    /// Where tokenizers and token streams are cached: `$SUBSPACE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/subspace`, else `~/.cache/subspace` (the XDG convention that
    /// Hugging Face's and pip's caches follow). Never beside the data, which may be read-only
    /// or shared. Entries are keyed by content, so one cache serves every corpus and copy.
    public static var cacheDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["SUBSPACE_CACHE_DIR"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".cache")
        return base.appendingPathComponent("subspace")
    }

    static func cacheDirectory(for data: String) -> URL {
        let dir = cacheDirectory
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Perplexity of `validation` under the add-one-smoothed unigram distribution of `train`:
    /// the baseline a language model must beat.
    public static func unigramPerplexity(train: [Int32], validation: [Int32], vocab: Int) -> Double {
        var counts = [Double](repeating: 1, count: vocab)
        for t in train where Int(t) < vocab { counts[Int(t)] += 1 }
        let total = counts.reduce(0, +)
        var nll = 0.0
        for t in validation where Int(t) < vocab { nll -= log(counts[Int(t)] / total) }
        return exp(nll / Double(max(validation.count, 1)))
    }
}

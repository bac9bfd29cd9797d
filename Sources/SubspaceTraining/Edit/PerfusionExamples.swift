import SubspaceCore
import SubspaceData
import SubspaceModels

/// Example sentences of a new word, tokenized, with the positions of the word's last token:
/// where Perfusion's key i* is read, and after which the fitted loss counts.
///
/// An occurrence is found by characters, then mapped to tokens by encoding the sentence up to
/// the word's end: its last token is the position `encode(prefix).count - 1`, provided that
/// prefix encodes to the start of the sentence's tokens (true when the word ends where the
/// tokenizer's pre-tokenizer cuts, as before a space or punctuation). An occurrence glued to
/// other letters or digits, "zorblats", is not the word and is skipped.
public struct PerfusionExamples: Sendable {
    /// Token ids per sentence.
    public let sentences: [[Int32]]
    /// Per sentence, the positions of the word's last token (ascending, non-empty).
    public let keyPositions: [[Int]]

    /// - Throws: `ConfigurationError` when the word tokenizes to nothing, no line contains it,
    ///   or a sentence is longer than `maxTokens`.
    public init(word: String, lines: [String], tokenizer: BPETokenizer, maxTokens: Int) throws {
        guard !word.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, !tokenizer.encode(word).isEmpty else {
            throw ConfigurationError("the word '\(word)' tokenizes to nothing")
        }
        var sentences: [[Int32]] = [], positions: [[Int]] = []
        for line in lines {
            let ids = tokenizer.encode(line)
            var found: [Int] = []
            var search = line.startIndex
            while let r = line.range(of: word, range: search..<line.endIndex) {
                let prefix = tokenizer.encode(String(line[..<r.upperBound]))
                let glued = { (c: Character?) in c.map { $0.isLetter || $0.isNumber } ?? false }
                let before = r.lowerBound > line.startIndex ? line[line.index(before: r.lowerBound)] : nil
                if !glued(before), !glued(r.upperBound < line.endIndex ? line[r.upperBound] : nil), !prefix.isEmpty, prefix.count <= ids.count, Array(ids[..<prefix.count]) == prefix, found.last != prefix.count - 1 {
                    found.append(prefix.count - 1)
                }
                search = r.upperBound
            }
            guard !found.isEmpty else { continue }
            guard ids.count <= maxTokens else {
                throw ConfigurationError("an example has \(ids.count) tokens, more than the model's context of \(maxTokens): '\(line.prefix(40))...'")
            }
            sentences.append(ids); positions.append(found)
        }
        guard !sentences.isEmpty else { throw ConfigurationError("no example sentence contains the word '\(word)'") }
        self.sentences = sentences
        keyPositions = positions
    }

    /// Already tokenized sentences and the word's last-token positions in each (tests).
    init(sentences: [[Int32]], keyPositions: [[Int]]) {
        precondition(sentences.count == keyPositions.count && keyPositions.allSatisfy { !$0.isEmpty })
        self.sentences = sentences
        self.keyPositions = keyPositions
    }

    /// All sentences as one batch, padded to the longest (every token is a row, the last has
    /// no target): targets are the next tokens after
    /// each sentence's first occurrence of the word (the word's own last token predicts the
    /// first of them); earlier positions and padding are ignored (-1).
    public func batch() -> TokenBatch {
        let seq = sentences.map(\.count).max() ?? 1
        var tokens = [Int32](repeating: 0, count: sentences.count * seq), targets = [Int32](repeating: -1, count: tokens.count)
        for (b, ids) in sentences.enumerated() {
            for t in 0..<ids.count { tokens[b * seq + t] = ids[t] }
            for t in keyPositions[b][0]..<(ids.count - 1) { targets[b * seq + t] = ids[t + 1] }
        }
        return TokenBatch(tokens: tokens, targets: targets, batch: sentences.count, seq: seq)
    }

    /// Rows of `batch()` (`b * seq + t`) at the word's last tokens.
    public func keyRows() -> [Int] {
        let seq = batch().seq
        return keyPositions.enumerated().flatMap { b, ps in ps.map { b * seq + $0 } }
    }
}

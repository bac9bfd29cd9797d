import Foundation
import SubspaceCore
import SubspaceModels

/// Trains a byte-level BPE tokenizer (GPT-2 pre-tokenization) to a target vocabulary size.
///
/// The vocabulary starts with the 256 byte symbols, with id = byte value. The text is cut
/// into GPT-2 pre-tokens (after splitting out special tokens, which are not learned) and
/// their frequencies counted; then the most frequent adjacent pair is merged, repeatedly,
/// until the vocabulary (merged tokens plus special tokens) reaches `vocabSize` or no pair
/// occurs `minFrequency` times. Ties go to the pair with the smaller (left id, right id), so
/// training is deterministic. Pair counts are updated incrementally, touching only the
/// words that contain the merged pair, and the best pair comes from a lazily updated heap.
/// Special tokens take the ids after the merged tokens.
public struct BPETrainer: Sendable {
    /// Target vocabulary size, including the 256 byte symbols and the special tokens.
    public var vocabSize: Int
    /// A pair must occur at least this many times (weighted by word frequency) to be merged.
    public var minFrequency: Int
    /// Special tokens, added after the merges as `added_tokens`.
    public var specialTokens: [String]

    /// The largest vocabulary trained (2^21): eight times the largest in common use (Gemma's
    /// 256K); tables are sized by it, so an absurd request must not reach them.
    public static let maxVocabSize = 1 << 21

    public init(vocabSize: Int, minFrequency: Int = 2, specialTokens: [String] = ["<|endoftext|>"]) {
        self.vocabSize = vocabSize
        self.minFrequency = minFrequency
        self.specialTokens = specialTokens
    }

    /// Trains on one text.
    public func train(text: String) throws -> BPETokenizer {
        try train(texts: [text])
    }

    /// Trains on the text of some files (each counted as its own document).
    public func train(files: [String]) throws -> BPETokenizer {
        var texts = [String]()
        for path in files {
            guard FileManager.default.fileExists(atPath: path) else { throw TokenizerError.fileNotFound(path) }
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                texts.append(String(decoding: data, as: UTF8.self))
            } catch {
                throw TokenizerError.io(path, FileErrorText.describe(error))
            }
        }
        return try train(texts: texts)
    }

    /// Trains on several texts (documents); pre-tokens never span two texts. `progress` is
    /// told (merges learned, merges at most) as merging goes on, about a hundred times.
    public func train(texts: [String], progress: (Int, Int) -> Void = { _, _ in }) throws -> BPETokenizer {
        var specials = [String]()
        for s in specialTokens where !s.isEmpty && !specials.contains(s) { specials.append(s) }
        let minimum = 256 + specials.count
        guard vocabSize >= minimum, vocabSize <= Self.maxVocabSize else { throw TokenizerError.invalidVocabSize(vocabSize, minimum: minimum) }

        // 1. Word frequencies.
        let (words, counts) = Self.countWords(texts, specials: specials)
        guard !words.isEmpty else { throw TokenizerError.emptyTrainingText }

        // 2. Merges.
        let (tokenBytes, merges) = Self.learnMerges(
            words: words, counts: counts, maxTokens: vocabSize - specials.count,
            minFrequency: max(1, minFrequency), progress: progress)

        // 3. Tokenizer.
        var vocab = [String: Int](minimumCapacity: vocabSize)
        var names = [String]()
        names.reserveCapacity(tokenBytes.count)
        for (id, bytes) in tokenBytes.enumerated() {
            let s = ByteLevel.encodeBytes(bytes)
            names.append(s)
            vocab[s] = id
        }
        var added = [BPETokenizer.AddedToken]()
        var nextID = tokenBytes.count
        for s in specials {
            if let id = vocab[s] {
                added.append(.init(id: id, content: s, special: true))
            } else {
                vocab[s] = nextID
                added.append(.init(id: nextID, content: s, special: true))
                nextID += 1
            }
        }
        let mergeStrings = merges.map { (names[Int($0.0)], names[Int($0.1)]) }
        return try BPETokenizer(vocab: vocab, merges: mergeStrings, addedTokens: added)
    }

    /// Unique pre-tokens (as byte symbols, sorted by bytes) and their frequencies.
    static func countWords(_ texts: [String], specials: [String]) -> ([[Int32]], [Int]) {
        var freq = [WordKey: Int]()
        // A splitter that knows the special tokens (ids are irrelevant here).
        let splitter = try? BPETokenizer(
            vocab: [:], merges: [],
            addedTokens: specials.enumerated().map { .init(id: $0.offset, content: $0.element) })
        for var text in texts {
            text.withUTF8 { p in
                func countSegment(_ seg: UnsafeBufferPointer<UInt8>) {
                    ByteLevel.forEachPreToken(in: seg) { r in
                        let w = UnsafeBufferPointer(rebasing: seg[r])
                        let probe = WordKey(borrowing: UnsafeRawBufferPointer(w))
                        if let i = freq.index(forKey: probe) {
                            freq.values[i] += 1
                        } else {
                            freq[WordKey(owning: Array(w))] = 1
                        }
                    }
                }
                if let splitter {
                    splitter.forEachSegment(p, allowSpecialTokens: true) { seg, added in
                        if added == nil { countSegment(seg) }
                    }
                } else {
                    countSegment(p)
                }
            }
        }
        let sorted = freq.map { ($0.key.bytes, $0.value) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        return (sorted.map { $0.0.map { Int32($0) } }, sorted.map { $0.1 })
    }

    /// Learns merges on byte-symbol words. Returns the bytes of every token (ids 0..<256 are
    /// the bytes) and the merges in order, as id pairs.
    static func learnMerges(
        words inputWords: [[Int32]], counts: [Int], maxTokens: Int, minFrequency: Int,
        progress: (Int, Int) -> Void = { _, _ in }
    ) -> (tokens: [[UInt8]], merges: [(Int32, Int32)]) {
        let wanted = max(1, maxTokens - 256), every = max(1, wanted / 100)
        var words = inputWords
        var tokens: [[UInt8]] = (0..<256).map { [UInt8($0)] }
        var tokenIndex = [[UInt8]: Int32]()
        for b in 0..<256 { tokenIndex[[UInt8(b)]] = Int32(b) }
        var merges = [(Int32, Int32)]()

        // Pair counts and, per pair, the words it may occur in (duplicates and stale entries
        // are harmless: merging a word without the pair changes nothing).
        var pairCounts = [UInt64: Int]()
        var pairWords = [UInt64: [Int32]]()
        for (w, syms) in words.enumerated() where syms.count > 1 {
            let c = counts[w]
            for k in 0..<(syms.count - 1) {
                let key = BPETokenizer.pairKey(syms[k], syms[k + 1])
                pairCounts[key, default: 0] += c
                if pairWords[key]?.last != Int32(w) { pairWords[key, default: []].append(Int32(w)) }
            }
        }
        var heap = PairHeap()
        for (key, c) in pairCounts { heap.push(.init(count: c, pair: key)) }

        var lastVisit = [Int](repeating: -1, count: words.count)
        var deltas = [UInt64: Int]()
        var touched = [UInt64: [Int32]]()
        while tokens.count < maxTokens {
            guard let top = heap.pop() else { break }
            let current = pairCounts[top.pair] ?? 0
            if current != top.count {
                if current > 0 { heap.push(.init(count: current, pair: top.pair)) }
                continue
            }
            if current < minFrequency { break }
            let a = Int32(truncatingIfNeeded: top.pair >> 32)
            let b = Int32(truncatingIfNeeded: top.pair & 0xFFFF_FFFF)
            let bytes = tokens[Int(a)] + tokens[Int(b)]
            let new: Int32
            if let existing = tokenIndex[bytes] {
                new = existing
            } else {
                new = Int32(tokens.count)
                tokens.append(bytes)
                tokenIndex[bytes] = new
            }
            merges.append((a, b))
            let mergeIndex = merges.count
            if mergeIndex % every == 0 { progress(min(mergeIndex, wanted), wanted) }

            deltas.removeAll(keepingCapacity: true)
            touched.removeAll(keepingCapacity: true)
            for w32 in pairWords[top.pair] ?? [] {
                let w = Int(w32)
                if lastVisit[w] == mergeIndex { continue }
                lastVisit[w] = mergeIndex
                let c = counts[w]
                var s = words[w]
                words[w] = []  // keep `s` uniquely referenced while editing it
                // One pass, compacting in place (the write index never passes the read
                // index), so a long word costs O(length) per merge.
                let n = s.count
                var r = 0, out = 0
                while r < n {
                    if r + 1 < n && s[r] == a && s[r + 1] == b {
                        if out > 0 {
                            let left = s[out - 1]  // already rewritten: may be `new`
                            deltas[BPETokenizer.pairKey(left, a), default: 0] -= c
                            let key = BPETokenizer.pairKey(left, new)
                            deltas[key, default: 0] += c
                            if touched[key]?.last != w32 { touched[key, default: []].append(w32) }
                        }
                        if r + 2 < n {
                            deltas[BPETokenizer.pairKey(b, s[r + 2]), default: 0] -= c
                            let key = BPETokenizer.pairKey(new, s[r + 2])
                            deltas[key, default: 0] += c
                            if touched[key]?.last != w32 { touched[key, default: []].append(w32) }
                        }
                        s[out] = new
                        out += 1
                        r += 2
                    } else {
                        s[out] = s[r]
                        out += 1
                        r += 1
                    }
                }
                s.removeLast(n - out)
                words[w] = s
            }
            pairCounts[top.pair] = nil
            pairWords[top.pair] = nil
            deltas[top.pair] = nil
            for (key, d) in deltas where d != 0 {
                let v = (pairCounts[key] ?? 0) + d
                if v > 0 { pairCounts[key] = v } else { pairCounts[key] = nil }
                if d > 0 { heap.push(.init(count: v, pair: key)) }
            }
            for (key, ws) in touched { pairWords[key, default: []].append(contentsOf: ws) }
        }
        progress(wanted, wanted)
        return (tokens, merges)
    }
}

/// Heap entries of the trainer: larger count first, then smaller pair key (deterministic ties).
struct PairEntry: Comparable {
    var count: Int
    var pair: UInt64
    static func < (x: PairEntry, y: PairEntry) -> Bool { x.count != y.count ? x.count > y.count : x.pair < y.pair }
}

typealias PairHeap = MinHeap<PairEntry>

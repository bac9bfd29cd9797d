import Foundation
import SubspaceCore
import SubspaceModels

/// Errors from loading, saving and training tokenizers. `description` is one line.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The tokenizer file does not exist.
    case fileNotFound(String)
    /// Reading or writing a file failed (path, reason).
    case io(String, String)
    /// The file is not valid JSON, or not a tokenizer.json (path, reason).
    case invalidJSON(String, String)
    /// The model is not BPE (the `model.type` found).
    case unsupportedModel(String)
    /// A normalizer, pre-tokenizer, decoder or model option we do not implement.
    case unsupportedComponent(String)
    /// The vocabulary or merges are inconsistent.
    case invalidVocabulary(String)
    /// Training was given no text (or only special tokens).
    case emptyTrainingText
    /// The requested vocabulary size cannot hold the 256 bytes and the special tokens.
    case invalidVocabSize(Int, minimum: Int)

    public var description: String {
        switch self {
        case .fileNotFound(let p): return "tokenizer file not found: \(p)"
        case .io(let p, let why): return "cannot access \(p): \(why)"
        case .invalidJSON(let p, let why): return "invalid tokenizer.json \(p): \(why)"
        case .unsupportedModel(let t): return "unsupported tokenizer model type '\(t)' (only BPE is supported)"
        case .unsupportedComponent(let c): return "unsupported tokenizer component: \(c)"
        case .invalidVocabulary(let why): return "invalid tokenizer vocabulary: \(why)"
        case .emptyTrainingText: return "cannot train a tokenizer on empty text"
        case .invalidVocabSize(let n, let m):
            return n < m ? "vocabulary size \(n) is too small (minimum \(m))" : "vocabulary size \(n) is too large (at most \(BPETrainer.maxVocabSize))"
        }
    }
}

extension TokenizerError: LocalizedError {
    public var errorDescription: String? { description }
}

/// A byte-level BPE tokenizer (GPT-2 style), compatible with Hugging Face `tokenizers`'
/// `tokenizer.json` for a `BPE` model with a `ByteLevel` pre-tokenizer and decoder.
///
/// Encoding: added (special) tokens are split out first, then each remaining segment is cut
/// into GPT-2 pre-tokens (`ByteLevel.forEachPreToken`), each pre-token's UTF-8 bytes become
/// byte symbols, and merges are applied lowest rank first (leftmost first among equal
/// ranks) until none applies, exactly as `tokenizers` does. Results are cached per
/// pre-token. Thread-safe: the cache is guarded by a lock.
///
/// A SentencePiece-style tokenizer (`charLevel`: Llama 2 / Mistral files) instead normalizes
/// each segment, pre-tokenizes it with Metaspace (if any) and starts BPE from characters,
/// with byte fallback (`ByteFallback.swift`); it decodes through its `TokenDecoder` chain.
public final class BPETokenizer: @unchecked Sendable {

    /// An entry of `added_tokens` (e.g. `<|endoftext|>`). `lstrip`, `rstrip`,
    /// `single_word` and `normalized` are kept for saving but not applied when matching.
    public struct AddedToken: Equatable, Sendable {
        public var id: Int
        public var content: String
        public var special: Bool
        public var singleWord: Bool = false
        public var lstrip: Bool = false
        public var rstrip: Bool = false
        public var normalized: Bool = false

        public init(id: Int, content: String, special: Bool = true) {
            self.id = id
            self.content = content
            self.special = special
        }
    }

    /// Byte-level token string -> id (the `model.vocab` of tokenizer.json).
    public let vocab: [String: Int]
    /// Merges in rank order (rank 0 first), as byte-level token strings.
    public let merges: [(String, String)]
    /// Added tokens, sorted by id.
    public let addedTokens: [AddedToken]
    /// ByteLevel `add_prefix_space`: prepend a space to each segment not starting with one.
    public let addPrefixSpace: Bool
    /// ByteLevel `use_regex`: split with the GPT-2 pattern (true) or not at all.
    public let useRegex: Bool
    /// BPE `ignore_merges`: a pre-token that is itself in the vocabulary is one token.
    public let ignoreMerges: Bool
    /// BPE `unk_token`, used for bytes missing from the vocabulary (else they are dropped).
    public let unkToken: String?
    /// BPE `fuse_unk`: consecutive unknown bytes give one unknown token.
    public let fuseUnk: Bool
    /// BPE `byte_fallback`: a character missing from the vocabulary becomes its UTF-8 bytes
    /// as `<0xNN>` tokens (SentencePiece style).
    public let byteFallback: Bool
    /// The normalizer applied to text between added tokens (SentencePiece style), if any.
    public let normalizer: TokenNormalizer?
    /// The Metaspace pre-tokenizer, if any.
    public let metaspace: Metaspace?
    /// The decoder (nil: none; for a byte-level tokenizer, ByteLevel and none decode alike).
    public let decoder: TokenDecoder?
    /// The post-processor template, applied by `encode(_:addSpecialTokens: true)` only.
    public let postProcessor: TemplatePostProcessor?
    /// True for a SentencePiece-style tokenizer (normalizer, Metaspace, byte fallback or a
    /// non-ByteLevel decoder): the BPE model works on Unicode characters, as `tokenizers`'
    /// BPE does, rather than on GPT-2 byte symbols.
    public let charLevel: Bool
    /// The tokenizer.json this tokenizer was loaded from, which `TokenizerJSON.serialize`
    /// returns as is for a char-level tokenizer.
    public let sourceJSON: Data?

    /// One past the largest id in the vocabulary and added tokens.
    public let vocabSize: Int

    // Encoding tables.
    struct Merge { var rank: Int32; var id: Int32 }
    let mergeTable: [UInt64: Merge]
    let byteIDs: [Int32]  // -1 where the byte's symbol is not in the vocabulary
    let unkID: Int32?
    /// Added tokens by content, longest first (for leftmost-longest matching).
    let addedPatterns: [(bytes: [UInt8], id: Int32)]
    let specialIDs: Set<Int32>
    // Decoding tables: the bytes of token `id` are `tokenBytes[tokenStart[id]..<tokenStart[id+1]]`.
    let tokenStart: [Int]
    let tokenBytes: [UInt8]
    let idToToken: [String?]

    // Cache of pre-token bytes -> ids.
    private let cacheLock = NSLock()
    private var cache: [WordKey: [Int32]] = [:]
    static let cacheCapacity = 100_000
    static let cacheMaxWordBytes = 128
    /// Words longer than this (in symbols) are merged with a heap instead of by rescanning.
    static let heapThreshold = 128

    /// Builds a tokenizer from a vocabulary and ranked merges.
    ///
    /// Every merge's two parts and their concatenation must be in `vocab`.
    /// Throws `TokenizerError.invalidVocabulary` otherwise.
    public init(
        vocab: [String: Int], merges: [(String, String)], addedTokens: [AddedToken] = [],
        addPrefixSpace: Bool = false, useRegex: Bool = true, ignoreMerges: Bool = false,
        unkToken: String? = nil, fuseUnk: Bool = false, byteFallback: Bool = false,
        normalizer: TokenNormalizer? = nil, metaspace: Metaspace? = nil, decoder: TokenDecoder? = nil,
        postProcessor: TemplatePostProcessor? = nil, sourceJSON: Data? = nil
    ) throws {
        self.byteFallback = byteFallback
        self.normalizer = normalizer
        self.metaspace = metaspace
        self.decoder = decoder
        self.postProcessor = postProcessor
        self.sourceJSON = sourceJSON
        let charLevel = byteFallback || normalizer != nil || metaspace != nil || (decoder != nil && decoder != .byteLevel)
        self.charLevel = charLevel
        self.vocab = vocab
        self.merges = merges
        self.addedTokens = addedTokens.sorted { $0.id < $1.id }
        self.addPrefixSpace = addPrefixSpace
        self.useRegex = useRegex
        self.ignoreMerges = ignoreMerges
        self.unkToken = unkToken
        self.fuseUnk = fuseUnk

        for (tok, id) in vocab where id < 0 || id > Int(Int32.max) {
            throw TokenizerError.invalidVocabulary("id \(id) of '\(tok)' is out of range")
        }
        var owner = [Int: String](minimumCapacity: vocab.count)
        for (tok, id) in vocab.sorted(by: { $0.key < $1.key }) {
            if let other = owner.updateValue(tok, forKey: id) {
                throw TokenizerError.invalidVocabulary("id \(id) is given to both '\(other)' and '\(tok)'")
            }
        }
        for t in addedTokens where t.id < 0 || t.id > Int(Int32.max) {
            throw TokenizerError.invalidVocabulary("added token id \(t.id) is out of range")
        }
        let maxID = max(vocab.values.max() ?? -1, addedTokens.map(\.id).max() ?? -1)
        // Id-indexed tables are allocated up to the largest id. Real vocabularies are dense
        // (ids 0..<n, perhaps with a few holes); an id far beyond the entry count is a damaged
        // or hostile file that would otherwise ask for gigabytes.
        let entries = vocab.count + addedTokens.count
        if maxID >= 2 * entries + 1_000_000 {
            throw TokenizerError.invalidVocabulary("token id \(maxID) is far beyond the \(entries) tokens defined (ids must be nearly dense)")
        }
        vocabSize = maxID + 1

        var table = [UInt64: Merge](minimumCapacity: merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b] else {
                throw TokenizerError.invalidVocabulary("merge \(rank) ('\(a)' '\(b)') uses a token missing from the vocabulary")
            }
            guard let inew = vocab[a + b] else {
                throw TokenizerError.invalidVocabulary("merge \(rank) ('\(a)' '\(b)') makes a token missing from the vocabulary")
            }
            // Like `tokenizers`, a repeated pair keeps its last rank.
            table[Self.pairKey(Int32(ia), Int32(ib))] = Merge(rank: Int32(rank), id: Int32(inew))
        }
        mergeTable = table

        var bids = [Int32](repeating: -1, count: 256)
        if charLevel {
            // Single ASCII characters (the only one-byte words of valid UTF-8).
            for b in 0..<128 { if let id = vocab[String(UnicodeScalar(UInt8(b)))] { bids[b] = Int32(id) } }
        } else {
            for b in 0..<256 { if let id = vocab[ByteLevel.byteToString[b]] { bids[b] = Int32(id) } }
        }
        byteIDs = bids
        if let u = unkToken {
            guard let id = vocab[u] else {
                throw TokenizerError.invalidVocabulary("unk_token '\(u)' is not in the vocabulary")
            }
            unkID = Int32(id)
        } else {
            unkID = nil
        }

        var patterns = [(bytes: [UInt8], id: Int32)]()
        var seen = Set<String>()
        for t in self.addedTokens where !t.content.isEmpty && seen.insert(t.content).inserted {
            patterns.append((Array(t.content.utf8), Int32(t.id)))
        }
        patterns.sort { $0.bytes.count > $1.bytes.count }
        addedPatterns = patterns
        specialIDs = Set(self.addedTokens.filter(\.special).map { Int32($0.id) })

        var names = [String?](repeating: nil, count: vocabSize)
        for (tok, id) in vocab { names[id] = tok }
        for t in self.addedTokens { names[t.id] = t.content }
        idToToken = names
        var starts = [Int](repeating: 0, count: vocabSize + 1)
        var bytes = [UInt8]()
        for id in 0..<vocabSize {
            starts[id] = bytes.count
            guard let tok = names[id] else { continue }
            let isAdded = self.addedTokens.contains { $0.id == id && $0.content == tok }
            // Like the ByteLevel decoder: map back through the byte table when every
            // character is in it, else keep the token's own UTF-8.
            if !isAdded, let raw = ByteLevel.decodeBytes(tok) {
                bytes.append(contentsOf: raw)
            } else {
                bytes.append(contentsOf: Array(tok.utf8))
            }
        }
        starts[vocabSize] = bytes.count
        tokenStart = starts
        tokenBytes = bytes
    }

    @inline(__always)
    static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        (UInt64(UInt32(bitPattern: a)) << 32) | UInt64(UInt32(bitPattern: b))
    }

    // MARK: - Lookup

    /// The id of a byte-level token string or added token.
    public func id(forToken token: String) -> Int? {
        if let t = addedTokens.first(where: { $0.content == token }) { return t.id }
        return vocab[token]
    }

    /// The byte-level token string (or added token content) of an id.
    public func token(forID id: Int) -> String? {
        id >= 0 && id < vocabSize ? idToToken[id] : nil
    }

    /// The id of `<|endoftext|>`, if the tokenizer has it.
    public var endOfTextID: Int? { id(forToken: "<|endoftext|>") }

    // MARK: - Encoding

    /// Token ids of `text`. With `allowSpecialTokens`, occurrences of added tokens (such as
    /// `<|endoftext|>`) become their ids, as in `tokenizers`; otherwise they are plain text.
    ///
    /// `addSpecialTokens` applies the post-processor template (Llama's `<s> $A` adds the
    /// `<s>` id in front), as `tokenizers`' `encode(text, add_special_tokens=True)` and
    /// transformers' tokenizer call do. It is off by default: language-model training
    /// wants the raw ids, the same as `encode(text, add_special_tokens=False)`.
    public func encode(_ text: String, allowSpecialTokens: Bool = true, addSpecialTokens: Bool = false) -> [Int32] {
        var text = text
        let ids = text.withUTF8 { encode(utf8: $0, allowSpecialTokens: allowSpecialTokens) }
        if addSpecialTokens, let post = postProcessor { return post.apply(ids) }
        return ids
    }

    /// Token ids of UTF-8 bytes (invalid UTF-8 is tokenized byte by byte, never rejected).
    public func encode(utf8 p: UnsafeBufferPointer<UInt8>, allowSpecialTokens: Bool = true) -> [Int32] {
        var out = [Int32]()
        out.reserveCapacity(p.count / 3 + 16)
        forEachSegment(p, allowSpecialTokens: allowSpecialTokens) { seg, added in
            if let added { out.append(added); return }
            if charLevel {
                encodeCharLevelSegment(seg, atStart: seg.baseAddress == p.baseAddress, into: &out)
            } else {
                encodeSegment(seg, into: &out)
            }
        }
        return out
    }

    /// Splits `p` around added tokens: calls `body(range, nil)` for ordinary text and
    /// `body(_, id)` for each added token (leftmost, longest match).
    func forEachSegment(
        _ p: UnsafeBufferPointer<UInt8>, allowSpecialTokens: Bool,
        _ body: (UnsafeBufferPointer<UInt8>, Int32?) -> Void
    ) {
        let n = p.count
        if !allowSpecialTokens || addedPatterns.isEmpty {
            if n > 0 { body(p, nil) }
            return
        }
        var firstBytes = [Bool](repeating: false, count: 256)
        for pat in addedPatterns { firstBytes[Int(pat.bytes[0])] = true }
        var segStart = 0
        var i = 0
        outer: while i < n {
            if firstBytes[Int(p[i])] {
                for pat in addedPatterns where pat.bytes.count <= n - i {
                    var match = true
                    for k in 0..<pat.bytes.count where p[i + k] != pat.bytes[k] { match = false; break }
                    if match {
                        if segStart < i { body(UnsafeBufferPointer(rebasing: p[segStart..<i]), nil) }
                        body(UnsafeBufferPointer(rebasing: p[i..<i]), pat.id)
                        i += pat.bytes.count
                        segStart = i
                        continue outer
                    }
                }
            }
            i += 1
        }
        if segStart < n { body(UnsafeBufferPointer(rebasing: p[segStart..<n]), nil) }
    }

    /// Pre-tokenizes one segment (no added tokens inside) and appends its ids.
    func encodeSegment(_ seg: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if addPrefixSpace, seg.first != 0x20 {
            let withSpace = [0x20] + Array(seg)
            withSpace.withUnsafeBufferPointer { encodeSegmentRaw($0, into: &out) }
        } else {
            encodeSegmentRaw(seg, into: &out)
        }
    }

    private func encodeSegmentRaw(_ seg: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if useRegex {
            ByteLevel.forEachPreToken(in: seg) { r in
                encodeWord(UnsafeBufferPointer(rebasing: seg[r]), into: &out)
            }
        } else if !seg.isEmpty {
            encodeWord(seg, into: &out)
        }
    }

    /// Appends the ids of one pre-token, through the cache.
    @inline(__always)
    func encodeWord(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if word.count == 1, byteIDs[Int(word[0])] >= 0, !ignoreMerges {
            out.append(byteIDs[Int(word[0])])
            return
        }
        let cacheable = word.count <= Self.cacheMaxWordBytes
        if cacheable {
            // Look up with a key that borrows the caller's bytes (no copy).
            let probe = WordKey(borrowing: UnsafeRawBufferPointer(word))
            cacheLock.lock()
            let cached = cache[probe]
            cacheLock.unlock()
            if let cached { out.append(contentsOf: cached); return }
        }
        let ids = bpe(word)
        out.append(contentsOf: ids)
        if cacheable {
            cacheLock.lock()
            if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
            cache[WordKey(owning: Array(word))] = ids
            cacheLock.unlock()
        }
    }

    /// Byte symbols of a pre-token (unknown bytes become `unk` or are dropped).
    func initialSymbols(_ word: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var syms = [Int32]()
        syms.reserveCapacity(word.count)
        var lastWasUnk = false
        for b in word {
            let id = byteIDs[Int(b)]
            if id >= 0 {
                syms.append(id); lastWasUnk = false
            } else if let u = unkID {
                if !(fuseUnk && lastWasUnk) { syms.append(u) }
                lastWasUnk = true
            }
        }
        return syms
    }

    /// BPE of one pre-token's bytes.
    func bpe(_ word: UnsafeBufferPointer<UInt8>) -> [Int32] {
        if ignoreMerges {
            let s = charLevel ? String(decoding: word, as: UTF8.self) : ByteLevel.encodeBytes(word)
            if let id = vocab[s] { return [Int32(id)] }
        }
        let syms = charLevel ? characterSymbols(word) : initialSymbols(word)
        return syms.count > Self.heapThreshold ? mergeWithHeap(syms) : mergeByScan(syms)
    }

    @inline(__always)
    func lookupMerge(_ a: Int32, _ b: Int32) -> Merge? {
        mergeTable[Self.pairKey(a, b)]
    }

    /// Applies merges, lowest rank first and leftmost first, by rescanning pair ranks
    /// (quadratic; for short words).
    func mergeByScan(_ input: [Int32]) -> [Int32] {
        var syms = input
        if syms.count < 2 { return syms }
        let none = Merge(rank: .max, id: -1)
        var pairs = [Merge]()
        pairs.reserveCapacity(syms.count - 1)
        for k in 0..<(syms.count - 1) { pairs.append(lookupMerge(syms[k], syms[k + 1]) ?? none) }
        while true {
            var best = -1
            var bestRank = Int32.max
            for k in 0..<pairs.count where pairs[k].rank < bestRank {
                bestRank = pairs[k].rank; best = k
            }
            if best < 0 { break }
            syms[best] = pairs[best].id
            syms.remove(at: best + 1)
            pairs.remove(at: best)
            if best < pairs.count { pairs[best] = lookupMerge(syms[best], syms[best + 1]) ?? none }
            if best > 0 { pairs[best - 1] = lookupMerge(syms[best - 1], syms[best]) ?? none }
        }
        return syms
    }

    /// Same result as `mergeByScan`, in O(n log n): a min-heap of (rank, position) over a
    /// linked list of symbols, with stale entries skipped when popped.
    func mergeWithHeap(_ input: [Int32]) -> [Int32] {
        var syms = input
        let n = syms.count
        if n < 2 { return syms }
        var next = (0..<n).map { $0 + 1 }  // n = none
        var prev = (0..<n).map { $0 - 1 }  // -1 = none
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap<UInt64>()
        @inline(__always) func push(_ pos: Int) {
            let q = next[pos]
            guard q < n, let m = lookupMerge(syms[pos], syms[q]) else { return }
            heap.push((UInt64(UInt32(m.rank)) << 32) | UInt64(pos))
        }
        for k in 0..<(n - 1) { push(k) }
        while let top = heap.pop() {
            let rank = Int32(truncatingIfNeeded: top >> 32)
            let pos = Int(top & 0xFFFF_FFFF)
            guard alive[pos] else { continue }
            let q = next[pos]
            guard q < n, let m = lookupMerge(syms[pos], syms[q]), m.rank == rank else { continue }
            syms[pos] = m.id
            alive[q] = false
            let r = next[q]
            next[pos] = r
            if r < n { prev[r] = pos }
            if prev[pos] >= 0 { push(prev[pos]) }
            push(pos)
        }
        var out = [Int32]()
        var k = 0
        while k < n { out.append(syms[k]); k = next[k] }
        return out
    }

    // MARK: - Decoding

    /// The bytes the ids stand for (ByteLevel decoder). Unknown ids are skipped.
    public func decodeBytes<S: Sequence>(_ ids: S, skipSpecialTokens: Bool = false) -> [UInt8]
    where S.Element: BinaryInteger {
        if charLevel { return Array(decodeCharLevel(ids, skipSpecialTokens: skipSpecialTokens).utf8) }
        var out = [UInt8]()
        tokenBytes.withUnsafeBufferPointer { tb in
            for raw in ids {
                guard let id = Int(exactly: raw), id >= 0, id < vocabSize else { continue }
                if skipSpecialTokens, specialIDs.contains(Int32(id)) { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: tb[tokenStart[id]..<tokenStart[id + 1]]))
            }
        }
        return out
    }

    /// The text the ids stand for. Byte sequences that are not valid UTF-8 (a character cut
    /// between tokens) decode to U+FFFD, as in `tokenizers`.
    public func decode<S: Sequence>(_ ids: S, skipSpecialTokens: Bool = false) -> String
    where S.Element: BinaryInteger {
        if charLevel { return decodeCharLevel(ids, skipSpecialTokens: skipSpecialTokens) }
        return String(decoding: decodeBytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    // MARK: - Token id files

    /// Writes ids as raw little-endian integers: UInt16 when `vocabSize <= 65535`, else
    /// UInt32 (the `.bin` format `scripts/check_tokenizer.py` reads). Atomic.
    static func writeTokenIDs(_ ids: [Int32], vocabSize: Int, to path: String) throws {
        var data = Data()
        if vocabSize <= 65535 {
            data.reserveCapacity(ids.count * 2)
            for id in ids { withUnsafeBytes(of: UInt16(truncatingIfNeeded: id).littleEndian) { data.append(contentsOf: $0) } }
        } else {
            data.reserveCapacity(ids.count * 4)
            for id in ids { withUnsafeBytes(of: UInt32(bitPattern: id).littleEndian) { data.append(contentsOf: $0) } }
        }
        try TokenizerJSON.atomicWrite(data, to: path)
    }
}

/// A byte string used as a dictionary key, either owning its bytes or borrowing them for a
/// lookup (a borrowing key must never be stored).
struct WordKey: Hashable {
    private let owned: [UInt8]
    private let borrowed: UnsafeRawBufferPointer?

    init(owning bytes: [UInt8]) { owned = bytes; borrowed = nil }
    init(borrowing bytes: UnsafeRawBufferPointer) { owned = []; borrowed = bytes }

    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let b = borrowed { return body(b) }
        return owned.withUnsafeBytes(body)
    }

    var bytes: [UInt8] { borrowed.map { Array($0) } ?? owned }

    static func == (l: WordKey, r: WordKey) -> Bool {
        l.withBytes { a in
            r.withBytes { b in
                a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
            }
        }
    }

    func hash(into h: inout Hasher) { withBytes { h.combine(bytes: $0) } }
}


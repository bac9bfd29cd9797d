import Foundation

/// SentencePiece-style (char-level) encoding and decoding for `BPETokenizer`: the path taken
/// when `charLevel` is set (a normalizer, Metaspace, `byte_fallback` or a non-ByteLevel decoder).
extension BPETokenizer {

    /// Normalizes and pre-tokenizes one piece of text between added tokens and appends its
    /// ids. `atStart`: the piece starts at offset 0 of the input (Metaspace `first`).
    /// Invalid UTF-8 is read as U+FFFD.
    func encodeCharLevelSegment(_ seg: UnsafeBufferPointer<UInt8>, atStart: Bool, into out: inout [Int32]) {
        var text = String(decoding: seg, as: UTF8.self)
        if let n = normalizer { text = n.apply(text) }
        let words = metaspace.map { $0.preTokenize(text, atStart: atStart) } ?? (text.isEmpty ? [] : [text])
        for var w in words {
            w.withUTF8 { encodeWord($0, into: &out) }
        }
    }

    /// Initial symbols of a word, as `tokenizers`' `BPE::merge_word`: each character in the
    /// vocabulary is its token; a missing one becomes its `<0xNN>` byte tokens when
    /// `byteFallback` is set and all of them exist, else the unknown token (consecutive ones
    /// fused with `fuseUnk`; dropped without an unknown token). As in `tokenizers`, a pending
    /// unknown token is emitted only at the next known character or the end of the word.
    func characterSymbols(_ word: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var syms = [Int32]()
        syms.reserveCapacity(word.count)
        var pendingUnk = false
        for u in String(decoding: word, as: UTF8.self).unicodeScalars {
            let s = String(u)
            if let id = vocab[s] {
                if pendingUnk, let unk = unkID { syms.append(unk); pendingUnk = false }
                syms.append(Int32(id))
                continue
            }
            if byteFallback {
                let ids = s.utf8.map { vocab[Self.byteTokenNames[Int($0)]] }
                if ids.allSatisfy({ $0 != nil }) {
                    syms += ids.map { Int32($0!) }
                    continue
                }
            }
            if let unk = unkID {
                if pendingUnk && !fuseUnk { syms.append(unk) }
                pendingUnk = true
            }
        }
        if pendingUnk, let unk = unkID { syms.append(unk) }
        return syms
    }

    /// `<0x00>` ... `<0xFF>`, the byte-fallback token names (`format!("<{b:#04X}>")`).
    static let byteTokenNames: [String] = (0..<256).map { b in
        let h = String(b, radix: 16, uppercase: true)
        return "<0x" + (h.count == 1 ? "0" + h : h) + ">"
    }

    /// Decodes as `tokenizers`' `Tokenizer::decode`: ids to token strings (unknown ids and,
    /// with `skipSpecialTokens`, special added tokens left out), then the decoder, or, with
    /// none, the tokens joined by spaces.
    func decodeCharLevel<S: Sequence>(_ ids: S, skipSpecialTokens: Bool) -> String where S.Element: BinaryInteger {
        var tokens = [String]()
        for raw in ids {
            guard let id = Int(exactly: raw), id >= 0, id < vocabSize, let t = idToToken[id] else { continue }
            if skipSpecialTokens, specialIDs.contains(Int32(id)) { continue }
            tokens.append(t)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens)
    }
}

extension BPETokenizer {
    /// Whether `id` is one of a byte-fallback vocabulary's `<0xNN>` byte pieces: a character
    /// that needed several of them is whole only once its last byte is decoded, which a
    /// streaming decoder waits for.
    public func isByteFallbackToken(_ id: Int32) -> Bool {
        guard byteFallback, let t = token(forID: Int(id)), t.utf8.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">") else { return false }
        return UInt8(t.dropFirst(3).dropLast(), radix: 16) != nil
    }
}

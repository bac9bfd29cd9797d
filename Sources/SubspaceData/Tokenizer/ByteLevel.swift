import SubspaceCore
import SubspaceModels

/// GPT-2 byte-level helpers: the reversible byte <-> printable-unicode map and the GPT-2
/// pre-tokenizer split, matching Hugging Face `tokenizers`' `ByteLevel` pre-tokenizer
/// (with `use_regex: true`).
///
/// The split implements, by hand and on UTF-8 bytes, the GPT-2 pattern
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// with the Unicode meaning of `\s` (White_Space: U+0009-U+000D, U+0085 and the categories
/// Zs, Zl, Zp), `\p{L}` (categories L*) and `\p{N}` (categories N*). The pattern matches
/// every character, so the pieces tile the input exactly.
public enum ByteLevel {

    // MARK: - Byte <-> unicode map

    /// `byteToScalar[b]` is the printable code point GPT-2 uses for byte `b`: printable
    /// Latin-1 bytes (`!`...`~`, `¡`...`¬`, `®`...`ÿ`) map to themselves, the other 68 bytes
    /// map in order to U+0100, U+0101, ...
    public static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// The byte-level character of each byte, as a one-character string.
    public static let byteToString: [String] = byteToScalar.map {
        String(Character(Unicode.Scalar($0)!))
    }

    /// Inverse of `byteToScalar`, indexed by code point (0..<324); -1 where unmapped.
    static let scalarToByteTable: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (b, s) in byteToScalar.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// The byte a byte-level code point stands for, or nil if it is not in the map.
    @inline(__always)
    public static func byte(forScalar s: UInt32) -> UInt8? {
        guard s < 324 else { return nil }
        let v = scalarToByteTable[Int(s)]
        return v < 0 ? nil : UInt8(v)
    }

    /// Maps raw bytes to their byte-level string (e.g. `" the"` -> `"Ġthe"`).
    public static func encodeBytes<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var scalars = String.UnicodeScalarView()
        for b in bytes { scalars.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(scalars)
    }

    /// Maps a byte-level string back to raw bytes; nil if any character is outside the map.
    public static func decodeBytes(_ s: String) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars {
            guard let b = byte(forScalar: u.value) else { return nil }
            out.append(b)
        }
        return out
    }

    // MARK: - Pre-tokenizer split

    /// Character classes of the GPT-2 pattern. `space` is `\s`.
    enum CharClass: UInt8 { case letter, number, space, other }

    /// Classes of the ASCII characters.
    static let asciiClass: [CharClass] = (0..<128).map { b -> CharClass in
        switch b {
        case 0x09...0x0D, 0x20: return .space
        case 0x30...0x39: return .number
        case 0x41...0x5A, 0x61...0x7A: return .letter
        default: return .other
        }
    }

    /// Class of a non-ASCII code point.
    static func classify(scalar v: UInt32) -> CharClass {
        guard let s = Unicode.Scalar(v) else { return .other }
        if v == 0x85 { return .space }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        case .spaceSeparator, .lineSeparator, .paragraphSeparator:
            return .space
        default:
            return .other
        }
    }

    /// Class and UTF-8 length of the character starting at `p[i]` (valid UTF-8 assumed;
    /// malformed sequences are treated as one-byte `other` characters).
    @inline(__always)
    static func charAt(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> (CharClass, Int) {
        let b0 = p[i]
        if b0 < 0x80 { return (asciiClass[Int(b0)], 1) }
        let n = p.count
        var len = 1
        var v: UInt32 = 0
        if b0 & 0xE0 == 0xC0 { len = 2; v = UInt32(b0 & 0x1F) }
        else if b0 & 0xF0 == 0xE0 { len = 3; v = UInt32(b0 & 0x0F) }
        else if b0 & 0xF8 == 0xF0 { len = 4; v = UInt32(b0 & 0x07) }
        else { return (.other, 1) }
        if i + len > n { return (.other, 1) }
        for k in 1..<len {
            let c = p[i + k]
            if c & 0xC0 != 0x80 { return (.other, 1) }
            v = (v << 6) | UInt32(c & 0x3F)
        }
        return (classify(scalar: v), len)
    }

    /// Calls `body` with the byte range of each GPT-2 pre-token of `p`, in order.
    public static func forEachPreToken(
        in p: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void
    ) {
        let n = p.count
        var i = 0
        while i < n {
            let c0 = p[i]
            // 's 't 're 've 'm 'll 'd (case-sensitive, as in GPT-2)
            if c0 == 0x27, i + 1 < n {
                let c1 = p[i + 1]
                if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 {  // s t m d
                    body(i..<(i + 2)); i += 2; continue
                }
                if i + 2 < n {
                    let c2 = p[i + 2]
                    if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65)
                        || (c1 == 0x6C && c2 == 0x6C)
                    {  // re ve ll
                        body(i..<(i + 3)); i += 3; continue
                    }
                }
            }
            var (cls, len) = charAt(p, i)
            var runStart = i
            if c0 == 0x20, i + 1 < n {
                // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a space may lead a run.
                let (cls1, len1) = charAt(p, i + 1)
                if cls1 != .space { cls = cls1; len = len1; runStart = i + 1 }
            }
            if cls != .space {
                var j = runStart + len
                while j < n {
                    let (c, l) = charAt(p, j)
                    if c != cls { break }
                    j += l
                }
                body(i..<j); i = j; continue
            }
            // `\s+(?!\S)` then `\s+`: a whitespace run that is followed by a non-space gives
            // its last character to the next piece, unless the run is a single character.
            var j = i + len
            var lastStart = i
            while j < n {
                let (c, l) = charAt(p, j)
                if c != .space { break }
                lastStart = j
                j += l
            }
            if j < n && lastStart > i { j = lastStart }
            body(i..<j); i = j
        }
    }

    /// The byte ranges of the GPT-2 pre-tokens of `bytes`.
    public static func preTokenRanges(_ bytes: [UInt8]) -> [Range<Int>] {
        var out = [Range<Int>]()
        bytes.withUnsafeBufferPointer { p in forEachPreToken(in: p) { out.append($0) } }
        return out
    }

    /// Splits `text` into GPT-2 pre-tokens (raw text, not byte-level mapped).
    public static func preTokenize(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        return preTokenRanges(bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
    }
}

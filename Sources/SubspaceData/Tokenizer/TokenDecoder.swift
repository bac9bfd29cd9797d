import Foundation

/// The decoders of a Hugging Face `tokenizer.json`, as a chain over token strings followed
/// by concatenation, as in `tokenizers` (`Decoder::decode` = `decode_chain` then join).
///
/// Mirrors `tokenizers::decoders`:
/// - `ByteLevel`: maps every token's characters back through the GPT-2 byte table (a token
///   with a character outside it keeps its UTF-8) and gives one string, invalid UTF-8 as U+FFFD.
/// - `Replace(pattern: {"String": p}, content)`: replaces `p` in every token.
/// - `ByteFallback`: runs of `<0xNN>` tokens become the string of their bytes, or one U+FFFD
///   per byte when those bytes are not valid UTF-8.
/// - `Fuse`: joins all tokens into one.
/// - `Strip(content, start, stop)`: removes up to `start` leading and `stop` trailing
///   `content` characters from every token.
/// - `Metaspace`: see `Metaspace.decodeChain`.
/// - `Sequence(decoders)`: chains them.
///
/// Other decoders (WordPiece, BPEDecoder, CTC, ...) are refused when loading.
public indirect enum TokenDecoder: Equatable, Sendable {
    case byteLevel
    case replace(pattern: String, content: String)
    case byteFallback
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    case metaspace(Metaspace)
    case sequence([TokenDecoder])

    /// The decoded text of token strings.
    public func decode(_ tokens: [String]) -> String {
        decodeChain(tokens).joined()
    }

    public func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes = [UInt8]()
            for t in tokens { bytes += ByteLevel.decodeBytes(t) ?? Array(t.utf8) }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { TokenNormalizer.replaceAll(in: $0, pattern: pattern, with: content) }
        case .byteFallback:
            var out = [String]()
            var pending = [UInt8]()
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validatingUTF8Bytes: pending) {
                    out.append(s)
                } else {
                    out += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = Self.fallbackByte(t) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { tok in
                let chars = Array(tok)
                var lo = 0
                while lo < min(start, chars.count), chars[lo] == content { lo += 1 }
                var hi = chars.count
                var k = 0
                while k < stop, hi > lo, chars[hi - 1] == content { hi -= 1; k += 1 }
                return String(chars[lo..<hi])
            }
        case .metaspace(let m):
            return m.decodeChain(tokens)
        case .sequence(let list):
            return list.reduce(tokens) { $1.decodeChain($0) }
        }
    }

    /// The byte of a byte-fallback token `<0xNN>` (as `tokenizers` reads it: six bytes, hex
    /// digits of either case), else nil.
    static func fallbackByte(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }

    /// Parses a `decoder` object of tokenizer.json.
    static func parse(_ v: Any) throws -> TokenDecoder {
        guard let d = v as? [String: Any], let type = d["type"] as? String else {
            throw TokenizerError.unsupportedComponent("decoder of unexpected shape")
        }
        switch type {
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Replace":
            let (p, c) = try TokenNormalizer.parseReplace(d, what: "decoder")
            return .replace(pattern: p, content: c)
        case "Strip":
            guard let s = d["content"] as? String, s.count == 1, let start = TokenizerJSON.intValue(d["start"] as Any),
                let stop = TokenizerJSON.intValue(d["stop"] as Any), start >= 0, stop >= 0
            else { throw TokenizerError.unsupportedComponent("decoder 'Strip' of unexpected shape") }
            return .strip(content: s.first!, start: start, stop: stop)
        case "Metaspace":
            return .metaspace(try Metaspace.parse(d, what: "decoder"))
        case "Sequence":
            guard let list = d["decoders"] as? [Any] else { throw TokenizerError.unsupportedComponent("decoder 'Sequence' without a decoders list") }
            return .sequence(try list.map(parse))
        default:
            throw TokenizerError.unsupportedComponent("decoder '\(type)' (only ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace and Sequence)")
        }
    }
}

extension String {
    /// The string of `bytes` when they are valid UTF-8, else nil.
    init?(validatingUTF8Bytes bytes: [UInt8]) {
        var it = bytes.makeIterator()
        var dec = UTF8()
        var s = String.UnicodeScalarView()
        loop: while true {
            switch dec.decode(&it) {
            case .scalarValue(let u): s.append(u)
            case .emptyInput: break loop
            case .error: return nil
            }
        }
        self = String(s)
    }
}

import Foundation

/// The text normalizers of a Hugging Face `tokenizer.json` that SentencePiece-style
/// (Llama 2, Mistral) files use, applied to each piece of text between added tokens,
/// as `tokenizers`' `AddedVocabulary::extract_and_normalize` does.
///
/// Mirrors `tokenizers::normalizers`:
/// - `Prepend(prepend)`: prepends the string to a non-empty text (an empty one stays empty).
/// - `Replace(pattern: {"String": p}, content)`: replaces every non-overlapping occurrence of
///   `p`, left to right (compared scalar by scalar, not by Swift's canonical equivalence).
/// - `Sequence(normalizers)`: applies them in order.
///
/// Anything else (NFC, NFKC, Lowercase, Strip, a Regex `Replace`, ...) is refused when
/// loading with `TokenizerError.unsupportedComponent` naming it.
public indirect enum TokenNormalizer: Equatable, Sendable {
    case prepend(String)
    case replace(pattern: String, content: String)
    case sequence([TokenNormalizer])

    /// The normalized text.
    public func apply(_ text: String) -> String {
        switch self {
        case .prepend(let p):
            return text.isEmpty ? text : p + text
        case .replace(let pattern, let content):
            return Self.replaceAll(in: text, pattern: pattern, with: content)
        case .sequence(let list):
            return list.reduce(text) { $1.apply($0) }
        }
    }

    /// Literal, scalar-wise replacement of every non-overlapping `pattern` (leftmost first).
    static func replaceAll(in text: String, pattern: String, with content: String) -> String {
        let pat = Array(pattern.unicodeScalars)
        guard !pat.isEmpty else { return text }
        let src = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < src.count {
            if src[i] == pat[0], i + pat.count <= src.count, Array(src[i..<(i + pat.count)]) == pat {
                out.append(contentsOf: content.unicodeScalars)
                i += pat.count
            } else {
                out.append(src[i])
                i += 1
            }
        }
        return String(out)
    }

    /// Parses a `normalizer` object of tokenizer.json.
    static func parse(_ v: Any) throws -> TokenNormalizer {
        guard let d = v as? [String: Any], let type = d["type"] as? String else {
            throw TokenizerError.unsupportedComponent("normalizer of unexpected shape")
        }
        switch type {
        case "Prepend":
            guard let p = d["prepend"] as? String else { throw TokenizerError.unsupportedComponent("normalizer 'Prepend' without a string prepend") }
            return .prepend(p)
        case "Replace":
            let (pattern, content) = try parseReplace(d, what: "normalizer")
            return .replace(pattern: pattern, content: content)
        case "Sequence":
            guard let list = d["normalizers"] as? [Any] else { throw TokenizerError.unsupportedComponent("normalizer 'Sequence' without a normalizers list") }
            return .sequence(try list.map(parse))
        default:
            throw TokenizerError.unsupportedComponent("normalizer '\(type)' (only Prepend, Replace and Sequence of them)")
        }
    }

    /// The `pattern` and `content` of a `Replace` normalizer or decoder; only string patterns.
    static func parseReplace(_ d: [String: Any], what: String) throws -> (String, String) {
        guard let pat = d["pattern"] as? [String: Any], let content = d["content"] as? String else {
            throw TokenizerError.unsupportedComponent("\(what) 'Replace' of unexpected shape")
        }
        guard let s = pat["String"] as? String else {
            throw TokenizerError.unsupportedComponent("\(what) 'Replace' with a Regex pattern (only String patterns)")
        }
        return (s, content)
    }
}

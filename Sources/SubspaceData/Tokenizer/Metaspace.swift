import Foundation

/// The `Metaspace` pre-tokenizer and decoder of Hugging Face `tokenizers`, as SentencePiece
/// style tokenizers (Llama, Mistral) use them: spaces become `replacement` ("▁"), a
/// replacement is prepended according to `prependScheme`, and the text is optionally split
/// before each replacement.
///
/// Mirrors `tokenizers::pre_tokenizers::metaspace::Metaspace` (0.19+):
/// - pre-tokenize, for each piece of text between added tokens: replace every " " with the
///   replacement; then prepend the replacement if the piece does not already start with it
///   and the scheme is `always`, or it is `first` and the piece starts at offset 0 of the
///   input; an empty piece stays empty. With `split`, cut before each replacement
///   (`SplitDelimiterBehavior::MergedWithNext`, empty pieces dropped).
/// - decode: in every token, replacements become spaces, except in the first token when
///   the scheme is not `never`, where they are removed.
///
/// Older files with `add_prefix_space` instead of `prepend_scheme` read it as `always`
/// (true) or `never` (false); a missing `split` means true, as in `tokenizers`.
public struct Metaspace: Equatable, Sendable {
    public enum PrependScheme: String, Sendable { case always, first, never }

    public var replacement: Unicode.Scalar
    public var prependScheme: PrependScheme
    public var split: Bool

    public init(replacement: Unicode.Scalar = "\u{2581}", prependScheme: PrependScheme = .always, split: Bool = true) {
        self.replacement = replacement
        self.prependScheme = prependScheme
        self.split = split
    }

    /// The pre-tokens of one piece of text; `atStart`: the piece starts at offset 0 of the input.
    public func preTokenize(_ text: String, atStart: Bool) -> [String] {
        var s = String.UnicodeScalarView()
        for u in text.unicodeScalars { s.append(u == " " ? replacement : u) }
        if let first = s.first, first != replacement,
            prependScheme == .always || (prependScheme == .first && atStart) {
            s.insert(replacement, at: s.startIndex)
        }
        if s.isEmpty { return [] }
        guard split else { return [String(s)] }
        var pieces = [String]()
        var cur = String.UnicodeScalarView()
        for u in s {
            if u == replacement, !cur.isEmpty { pieces.append(String(cur)); cur = String.UnicodeScalarView() }
            cur.append(u)
        }
        if !cur.isEmpty { pieces.append(String(cur)) }
        return pieces
    }

    /// The Metaspace decoder step (`decode_chain`).
    public func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { i, tok in
            var out = String.UnicodeScalarView()
            for u in tok.unicodeScalars {
                if u == replacement {
                    if !(i == 0 && prependScheme != .never) { out.append(" ") }
                } else {
                    out.append(u)
                }
            }
            return String(out)
        }
    }

    /// Parses a `Metaspace` pre-tokenizer or decoder object; `what` names it in errors.
    static func parse(_ d: [String: Any], what: String) throws -> Metaspace {
        var m = Metaspace()
        if let r = d["replacement"] {
            guard let s = r as? String, s.unicodeScalars.count == 1, let u = s.unicodeScalars.first else {
                throw TokenizerError.unsupportedComponent("\(what) 'Metaspace' replacement that is not one character")
            }
            m.replacement = u
        }
        if let p = d["prepend_scheme"] as? String {
            guard let scheme = PrependScheme(rawValue: p) else {
                throw TokenizerError.unsupportedComponent("\(what) 'Metaspace' prepend_scheme '\(p)'")
            }
            m.prependScheme = scheme
        } else if let add = TokenizerJSON.boolValue(d["add_prefix_space"]) {
            m.prependScheme = add ? .always : .never
        }
        m.split = TokenizerJSON.boolValue(d["split"]) ?? true
        return m
    }
}

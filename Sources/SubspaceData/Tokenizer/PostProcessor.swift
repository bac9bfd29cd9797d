import Foundation

/// The single-sequence template of a `TemplateProcessing` post-processor (Llama's
/// `"<s> $A"`), which `tokenizers` applies in `encode(text, add_special_tokens=True)` and
/// transformers in its tokenizer call. `BPETokenizer.encode` applies it only when asked
/// (`addSpecialTokens: true`); language-model training uses the raw ids (the default).
///
/// Mirrors `tokenizers::processors::template::TemplateProcessing` for one sequence: each
/// `SpecialToken` piece contributes the `ids` of its entry in `special_tokens`, the
/// `Sequence` piece (`$A`) the encoded text. `type_id`s are not kept. `ByteLevel`
/// post-processors (GPT-2) change no ids and are ignored; a `Sequence` of these is accepted.
/// Other post-processors (Roberta, Bert, a template over `$B` alone) are refused when loading.
public struct TemplatePostProcessor: Equatable, Sendable {
    public enum Piece: Equatable, Sendable {
        case special([Int32])
        case sequence
    }

    public var single: [Piece]

    public init(single: [Piece]) { self.single = single }

    /// `ids` with the template applied.
    public func apply(_ ids: [Int32]) -> [Int32] {
        var out = [Int32]()
        for p in single {
            switch p {
            case .special(let s): out += s
            case .sequence: out += ids
            }
        }
        return out
    }

    /// Parses a `post_processor` object: nil for one that changes no ids (ByteLevel).
    static func parse(_ v: Any) throws -> TemplatePostProcessor? {
        guard let d = v as? [String: Any], let type = d["type"] as? String else {
            throw TokenizerError.unsupportedComponent("post_processor of unexpected shape")
        }
        switch type {
        case "ByteLevel":
            return nil
        case "Sequence":
            guard let list = d["processors"] as? [Any] else { throw TokenizerError.unsupportedComponent("post_processor 'Sequence' without a processors list") }
            let parsed = try list.compactMap(parse)
            if parsed.count > 1 { throw TokenizerError.unsupportedComponent("post_processor 'Sequence' with several templates") }
            return parsed.first
        case "TemplateProcessing":
            guard let single = d["single"] as? [Any] else { throw TokenizerError.unsupportedComponent("post_processor 'TemplateProcessing' without a single template") }
            let specials = d["special_tokens"] as? [String: Any] ?? [:]
            var pieces = [Piece]()
            for item in single {
                guard let p = item as? [String: Any] else { throw TokenizerError.unsupportedComponent("post_processor 'TemplateProcessing' piece of unexpected shape") }
                if let s = p["SpecialToken"] as? [String: Any], let name = s["id"] as? String {
                    guard let entry = specials[name] as? [String: Any], let raw = entry["ids"] as? [Any] else {
                        throw TokenizerError.unsupportedComponent("post_processor 'TemplateProcessing' special token '\(name)' without ids")
                    }
                    let ids = try raw.map { v -> Int32 in
                        guard let i = TokenizerJSON.intValue(v), i >= 0, i <= Int(Int32.max) else {
                            throw TokenizerError.unsupportedComponent("post_processor 'TemplateProcessing' id of '\(name)' out of range")
                        }
                        return Int32(i)
                    }
                    pieces.append(.special(ids))
                } else if let s = p["Sequence"] as? [String: Any], s["id"] as? String == "A" {
                    pieces.append(.sequence)
                } else {
                    throw TokenizerError.unsupportedComponent("post_processor 'TemplateProcessing' single piece other than a special token or $A")
                }
            }
            return TemplatePostProcessor(single: pieces)
        default:
            throw TokenizerError.unsupportedComponent("post_processor '\(type)' (only TemplateProcessing and ByteLevel)")
        }
    }
}

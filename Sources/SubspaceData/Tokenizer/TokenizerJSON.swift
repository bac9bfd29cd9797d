import Foundation
import SubspaceCore
import SubspaceModels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes Hugging Face `tokenizer.json` files for BPE tokenizers.
///
/// Loading accepts what `tokenizers` writes for a GPT-2-style tokenizer: `model.type` "BPE"
/// (or no type, with `vocab` and `merges`), merges either as `"a b"` strings (older files)
/// or `["a", "b"]` pairs (newer), a `ByteLevel` pre-tokenizer (or none), a `ByteLevel`
/// decoder (or none), no normalizer, and `added_tokens`.
///
/// It also accepts SentencePiece-style files as Llama 2 and Mistral ship them (the tokenizer
/// is then `charLevel`): a normalizer of `Prepend`/`Replace` (string pattern)/`Sequence`
/// (`TokenNormalizer`), or a `Metaspace` pre-tokenizer (`Metaspace`); `byte_fallback`,
/// `unk_token`, `fuse_unk`, `ignore_merges` on the model (`ByteFallback.swift`); and a decoder
/// chain of `Replace`, `ByteFallback`, `Fuse`, `Strip`, `Metaspace` (`TokenDecoder`).
///
/// Post-processor: `TemplateProcessing` is kept and applied only by
/// `encode(_:addSpecialTokens: true)` (`TemplatePostProcessor`); `ByteLevel` (GPT-2's offsets
/// fix-up, no id change) is ignored. Anything else that we do not implement (another model,
/// normalizer, pre-tokenizer, decoder or post-processor, a Regex `Replace`, a subword prefix
/// or suffix, an added token with `normalized: true` under a normalizer, a ByteLevel
/// pre-tokenizer mixed with the SentencePiece parts) is rejected with
/// `TokenizerError.unsupportedComponent` naming it in one line.
///
/// Saving a char-level tokenizer writes back the file it was loaded from. Otherwise saving writes the layout `tokenizers` 0.2x writes: version "1.0", added tokens, ByteLevel
/// pre-tokenizer and decoder, and the BPE model with its vocabulary in id order and merges
/// as pairs. The file is written to a temporary file and renamed into place.
public enum TokenizerJSON {

    // MARK: - Loading

    /// Loads a tokenizer.json file.
    public static func load(path: String) throws -> BPETokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError.fileNotFound(path)
        }
        if isDir.boolValue { throw TokenizerError.io(path, "is a directory") }
        // Only regular files: a device such as /dev/zero would be read forever.
        guard FileKind.of(URL(fileURLWithPath: path)) == .regular else { throw TokenizerError.io(path, "is not a regular file") }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError.io(path, FileErrorText.describe(error))
        }
        return try parse(data, source: path)
    }

    /// Builds a tokenizer from tokenizer.json contents; `source` names it in errors.
    public static func parse(_ data: Data, source: String = "<data>") throws -> BPETokenizer {
        try BPETokenizer(json: data, source: source)
    }

    static func parseSpec(_ data: Data, source: String) throws -> Spec {
        func bad(_ why: String) -> TokenizerError { .invalidJSON(source, why) }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw bad(data.isEmpty ? "the file is empty" : "not valid JSON")
        }
        guard let root = object as? [String: Any] else { throw bad("top level is not an object") }
        guard let model = root["model"] as? [String: Any] else { throw bad("missing \"model\" object") }

        if let type = model["type"] {
            guard let t = type as? String else { throw bad("model.type is not a string") }
            guard t == "BPE" else { throw TokenizerError.unsupportedModel(t) }
        } else if model["vocab"] == nil || model["merges"] == nil {
            throw TokenizerError.unsupportedModel("unknown (no type, vocab or merges)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key], !(v is NSNull) {
                if let s = v as? String, s.isEmpty { continue }
                throw TokenizerError.unsupportedComponent("BPE \(key)")
            }
        }

        // Vocabulary.
        guard let rawVocab = model["vocab"] as? [String: Any] else { throw bad("model.vocab is not an object") }
        var vocab = [String: Int](minimumCapacity: rawVocab.count)
        for (tok, v) in rawVocab {
            guard let id = intValue(v) else { throw bad("vocab id of '\(tok)' is not an integer") }
            vocab[tok] = id
        }

        // Merges: "a b" strings or ["a", "b"] pairs.
        guard let rawMerges = model["merges"] as? [Any] else { throw bad("model.merges is not an array") }
        var merges = [(String, String)]()
        merges.reserveCapacity(rawMerges.count)
        for (i, m) in rawMerges.enumerated() {
            if let s = m as? String {
                guard let space = s.firstIndex(of: " ") else { throw bad("merge \(i) '\(s)' has no space") }
                let rest = s[s.index(after: space)...]
                if rest.contains(" ") { throw bad("merge \(i) '\(s)' has more than two parts") }
                merges.append((String(s[..<space]), String(rest)))
            } else if let pair = m as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String {
                merges.append((a, b))
            } else {
                throw bad("merge \(i) is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }

        let ignoreMerges = boolValue(model["ignore_merges"]) ?? false
        let fuseUnk = boolValue(model["fuse_unk"]) ?? false
        let unkToken = model["unk_token"] as? String

        let byteFallback = boolValue(model["byte_fallback"]) ?? false

        // Normalizer: none, or Prepend / Replace / Sequence (SentencePiece style).
        var normalizer: TokenNormalizer?
        if let n = root["normalizer"], !(n is NSNull) { normalizer = try TokenNormalizer.parse(n) }

        // Pre-tokenizer: ByteLevel, Metaspace, or none (which then means no split at all).
        var addPrefixSpace = false
        var useRegex = true
        var metaspace: Metaspace?
        var byteLevelPre = false
        if let p = root["pre_tokenizer"], !(p is NSNull) {
            guard let pre = p as? [String: Any], let type = pre["type"] as? String, type == "ByteLevel" || type == "Metaspace" else {
                throw TokenizerError.unsupportedComponent("pre_tokenizer \(typeName(p)) (only ByteLevel and Metaspace)")
            }
            if type == "ByteLevel" {
                byteLevelPre = true
                addPrefixSpace = boolValue(pre["add_prefix_space"]) ?? false
                useRegex = boolValue(pre["use_regex"]) ?? true
            } else {
                metaspace = try Metaspace.parse(pre, what: "pre_tokenizer")
                useRegex = false
            }
        } else {
            useRegex = false
        }

        // Decoder: ByteLevel, the SentencePiece chain, or none.
        var decoder: TokenDecoder?
        if let d = root["decoder"], !(d is NSNull) { decoder = try TokenDecoder.parse(d) }

        // A ByteLevel pre-tokenizer works on GPT-2 byte symbols; the SentencePiece-style parts
        // work on characters. `tokenizers` would run such a mix, but we implement neither half of it.
        if byteLevelPre {
            if normalizer != nil { throw TokenizerError.unsupportedComponent("normalizer with a ByteLevel pre_tokenizer") }
            if byteFallback { throw TokenizerError.unsupportedComponent("BPE byte_fallback with a ByteLevel pre_tokenizer") }
            if let decoder, decoder != .byteLevel {
                throw TokenizerError.unsupportedComponent("decoder other than ByteLevel with a ByteLevel pre_tokenizer")
            }
        }

        // Post-processor: TemplateProcessing (applied on request), ByteLevel (ignored), or none.
        var postProcessor: TemplatePostProcessor?
        if let pp = root["post_processor"], !(pp is NSNull) { postProcessor = try TemplatePostProcessor.parse(pp) }

        // Added tokens.
        var added = [BPETokenizer.AddedToken]()
        if let a = root["added_tokens"], !(a is NSNull) {
            guard let list = a as? [Any] else { throw bad("added_tokens is not an array") }
            for (i, item) in list.enumerated() {
                guard let t = item as? [String: Any], let id = intValue(t["id"] as Any),
                    let content = t["content"] as? String
                else { throw bad("added token \(i) needs an integer id and a string content") }
                var tok = BPETokenizer.AddedToken(id: id, content: content, special: boolValue(t["special"]) ?? false)
                tok.singleWord = boolValue(t["single_word"]) ?? false
                tok.lstrip = boolValue(t["lstrip"]) ?? false
                tok.rstrip = boolValue(t["rstrip"]) ?? false
                tok.normalized = boolValue(t["normalized"]) ?? !tok.special
                // `tokenizers` matches such a token in the normalized text; we match raw text.
                if tok.normalized, normalizer != nil {
                    throw TokenizerError.unsupportedComponent("added token '\(content)' with normalized=true under a normalizer")
                }
                added.append(tok)
            }
        }

        return Spec(
            vocab: vocab, merges: merges, addedTokens: added, addPrefixSpace: addPrefixSpace,
            useRegex: useRegex, ignoreMerges: ignoreMerges, unkToken: unkToken, fuseUnk: fuseUnk,
            byteFallback: byteFallback, normalizer: normalizer, metaspace: metaspace, decoder: decoder,
            postProcessor: postProcessor)
    }

    /// The parts of a tokenizer.json that `BPETokenizer.init` needs.
    struct Spec {
        var vocab: [String: Int]
        var merges: [(String, String)]
        var addedTokens: [BPETokenizer.AddedToken]
        var addPrefixSpace: Bool
        var useRegex: Bool
        var ignoreMerges: Bool
        var unkToken: String?
        var fuseUnk: Bool
        var byteFallback: Bool
        var normalizer: TokenNormalizer?
        var metaspace: Metaspace?
        var decoder: TokenDecoder?
        var postProcessor: TemplatePostProcessor?
        /// As `BPETokenizer.charLevel`.
        var charLevel: Bool { byteFallback || normalizer != nil || metaspace != nil || (decoder != nil && decoder != .byteLevel) }
    }

    static func intValue(_ v: Any) -> Int? {
        if let i = v as? Int { return i }
        if let n = v as? NSNumber, let i = Int(exactly: n.doubleValue) { return i }
        return nil
    }

    static func boolValue(_ v: Any?) -> Bool? {
        guard let v, !(v is NSNull) else { return nil }
        if let b = v as? Bool { return b }
        if let n = v as? NSNumber { return n.boolValue }
        return nil
    }

    static func typeName(_ v: Any) -> String {
        if let d = v as? [String: Any], let t = d["type"] as? String { return "'\(t)'" }
        return "of unexpected shape"
    }

    // MARK: - Saving

    /// The tokenizer.json text for `tok`. A char-level (SentencePiece-style) tokenizer gives
    /// back the file it was loaded from, unchanged.
    public static func serialize(_ tok: BPETokenizer) -> String {
        if tok.charLevel, let src = tok.sourceJSON { return String(decoding: src, as: UTF8.self) }
        var o = "{\n"
        o += "  \"version\": \"1.0\",\n"
        o += "  \"truncation\": null,\n"
        o += "  \"padding\": null,\n"
        if tok.addedTokens.isEmpty {
            o += "  \"added_tokens\": [],\n"
        } else {
            o += "  \"added_tokens\": [\n"
            for (i, t) in tok.addedTokens.enumerated() {
                o += "    {\"id\": \(t.id), \"content\": \(quote(t.content)), \"single_word\": \(t.singleWord), "
                o += "\"lstrip\": \(t.lstrip), \"rstrip\": \(t.rstrip), \"normalized\": \(t.normalized), "
                o += "\"special\": \(t.special)}"
                o += i + 1 < tok.addedTokens.count ? ",\n" : "\n"
            }
            o += "  ],\n"
        }
        o += "  \"normalizer\": null,\n"
        if tok.useRegex || tok.addPrefixSpace {
            o += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": \(tok.addPrefixSpace), "
            o += "\"trim_offsets\": true, \"use_regex\": \(tok.useRegex)},\n"
        } else {
            o += "  \"pre_tokenizer\": null,\n"
        }
        o += "  \"post_processor\": null,\n"
        o += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
        o += "  \"model\": {\n"
        o += "    \"type\": \"BPE\",\n"
        o += "    \"dropout\": null,\n"
        o += "    \"unk_token\": \(tok.unkToken.map(quote) ?? "null"),\n"
        o += "    \"continuing_subword_prefix\": null,\n"
        o += "    \"end_of_word_suffix\": null,\n"
        o += "    \"fuse_unk\": \(tok.fuseUnk),\n"
        o += "    \"byte_fallback\": false,\n"
        o += "    \"ignore_merges\": \(tok.ignoreMerges),\n"
        o += "    \"vocab\": {"
        let entries = tok.vocab.sorted { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }
        for (i, e) in entries.enumerated() {
            o += i == 0 ? "\n" : ",\n"
            o += "      \(quote(e.key)): \(e.value)"
        }
        o += entries.isEmpty ? "},\n" : "\n    },\n"
        o += "    \"merges\": ["
        for (i, m) in tok.merges.enumerated() {
            o += i == 0 ? "\n" : ",\n"
            o += "      [\(quote(m.0)), \(quote(m.1))]"
        }
        o += tok.merges.isEmpty ? "]\n" : "\n    ]\n"
        o += "  }\n"
        o += "}\n"
        return o
    }

    /// Saves `tok` as tokenizer.json at `path` (temporary file, then rename).
    public static func save(_ tok: BPETokenizer, to path: String) throws {
        try atomicWrite(Data(serialize(tok).utf8), to: path)
    }

    /// JSON string literal, escaped as serde_json does (`"`, `\` and control characters).
    static func quote(_ s: String) -> String {
        var o = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            case "\n": o += "\\n"
            case "\r": o += "\\r"
            case "\t": o += "\\t"
            case "\u{08}": o += "\\b"
            case "\u{0C}": o += "\\f"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let hex = String(u.value, radix: 16)
                    o += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    o.unicodeScalars.append(u)
                }
            }
        }
        return o + "\""
    }

    /// Writes `data` through `AtomicFile` (temporary file, fsync, rename), reporting failures
    /// as `TokenizerError.io`.
    static func atomicWrite(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw TokenizerError.io(path, "directory \(dir) does not exist")
        }
        do { try AtomicFile.write(data, to: url) } catch { throw TokenizerError.io(path, "\(error)") }
    }
}

extension BPETokenizer {
    /// A tokenizer from the contents of a Hugging Face tokenizer.json (see `TokenizerJSON`);
    /// `source` names it in errors.
    public convenience init(json data: Data, source: String = "<data>") throws {
        let s = try TokenizerJSON.parseSpec(data, source: source)
        try self.init(
            vocab: s.vocab, merges: s.merges, addedTokens: s.addedTokens, addPrefixSpace: s.addPrefixSpace,
            useRegex: s.useRegex, ignoreMerges: s.ignoreMerges, unkToken: s.unkToken, fuseUnk: s.fuseUnk,
            byteFallback: s.byteFallback, normalizer: s.normalizer, metaspace: s.metaspace, decoder: s.decoder,
            postProcessor: s.postProcessor, sourceJSON: s.charLevel ? data : nil)
    }

    /// Loads a Hugging Face tokenizer.json (see `TokenizerJSON`).
    public static func load(from path: String) throws -> BPETokenizer {
        try TokenizerJSON.load(path: path)
    }

    /// Saves as a Hugging Face tokenizer.json, atomically.
    public func save(to path: String) throws {
        try TokenizerJSON.save(self, to: path)
    }

    /// The tokenizer.json text.
    public func jsonString() -> String {
        TokenizerJSON.serialize(self)
    }
}

extension BPETokenizer {
    /// transformers' `tokenizer_config.json` for this tokenizer saved as `tokenizer.json`:
    /// `AutoTokenizer.from_pretrained(dir)` then builds a `PreTrainedTokenizerFast` with the
    /// end-of-text token as its bos, eos and pad token (GPT-2's convention for byte-level BPE:
    /// one special token that separates documents), `model_max_length` the model's context,
    /// and no clean-up of spaces around punctuation, which would change decoded text.
    public func huggingFaceTokenizerConfig(modelMaxLength: Int) throws -> Data {
        var object: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": modelMaxLength,
            "clean_up_tokenization_spaces": false,
        ]
        if let id = endOfTextID, let token = token(forID: id) {
            object["bos_token"] = token
            object["eos_token"] = token
            object["pad_token"] = token
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}

import Foundation
import Testing

@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Tests of the byte-level BPE tokenizer: the GPT-2 split, training, tokenizer.json, and
/// agreement with Hugging Face `tokenizers` on a committed fixture
/// (made by `scripts/make_tokenizer_fixtures.py`).
@Suite struct TokenizerTests {

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let fixtureTokenizer = fixtures.appendingPathComponent("tokenizer_gpt2style.json").path
    static let fixtureIDs = fixtures.appendingPathComponent("tokenizer_expected_ids.json").path

    static let sampleText = """
        To be, or not to be, that is the question:
        Whether 'tis nobler in the mind to suffer
        The slings and arrows of outrageous fortune,
        Or to take arms against a sea of troubles
        And by opposing end them. To die: to sleep;
        No more; and by a sleep to say we end
        The heart-ache and the thousand natural shocks
        That flesh is heir to, 'tis a consummation
        Devoutly to be wish'd. To die, to sleep;
        To sleep: perchance to dream: ay, there's the rub;
        For in that sleep of death what dreams may come
        When we have shuffled off this mortal coil,
        Must give us pause: there's the respect
        That makes calamity of so long life;   1600 A.D.  
        """

    static let varied: [String] = [
        "",
        " ",
        "a",
        "Hello, world!",
        "  two leading spaces and trailing   ",
        "tabs\t\tand\nnewlines\n\n\n  \n\t mixed \r\n",
        "\n\n\n",
        "I'll we've they're it's 'S ''ll don't",
        "numbers 12345 3.14159 1,000 ²³ ½ Ⅻ",
        "Café naïve résumé — “quoted” ‘single’ …",
        "日本語のテキスト 한국어 Ελληνικά русский عربى",
        "emoji 👍🏽 family 👨‍👩‍👧 flags 🇬🇧",
        "nbsp\u{00A0}x ideographic\u{3000}y nel\u{0085}z ls\u{2028}ps\u{2029} zwsp\u{200B}j",
        "combining e\u{0301} a\u{0308}",
        "control \u{0000}\u{0001}\u{007F} bytes",
        String(repeating: "=", count: 500) + String(repeating: " ", count: 400) + "x",
        String(repeating: "ab", count: 300),
        "<|endoftext|>between<|endoftext|>",
    ]

    static func smallTokenizer() throws -> BPETokenizer {
        try BPETrainer(vocabSize: 320).train(text: String(repeating: sampleText, count: 3))
    }

    // MARK: - ByteLevel

    @Test func byteMapIsABijection() {
        let scalars = ByteLevel.byteToScalar
        #expect(Set(scalars).count == 256)
        for b in 0..<256 { #expect(ByteLevel.byte(forScalar: scalars[b]) == UInt8(b)) }
        #expect(ByteLevel.byteToString[0x20] == "Ġ")
        #expect(ByteLevel.byteToString[0x0A] == "Ċ")
        #expect(ByteLevel.byteToString[0x41] == "A")
        #expect(ByteLevel.encodeBytes(Array(" the".utf8)) == "Ġthe")
        #expect(ByteLevel.decodeBytes("Ġthe") == Array(" the".utf8))
        #expect(ByteLevel.decodeBytes("日") == nil)
    }

    @Test func preTokenizerMatchesGPT2Pattern() {
        // Expected pieces from tokenizers' ByteLevel(add_prefix_space=False).pre_tokenize_str.
        let text = "a   b\n\n x 'S it's  \u{00A0}y \u{3000}z 123abc"
        #expect(ByteLevel.preTokenize(text) == [
            "a", "  ", " b", "\n\n", " x", " '", "S", " it", "'s", "  ", "\u{00A0}", "y", " ",
            "\u{3000}", "z", " 123", "abc",
        ])
        #expect(ByteLevel.preTokenize("don't''s 're 'll've 'd") == ["don", "'t", "''", "s", " '", "re", " '", "ll", "'ve", " '", "d"])
        #expect(ByteLevel.preTokenize("x  \n") == ["x", "  \n"])
        #expect(ByteLevel.preTokenize(" \n x") == [" \n", " x"])
        #expect(ByteLevel.preTokenize("\ta") == ["\t", "a"])
        #expect(ByteLevel.preTokenize("... ,,a1 2") == ["...", " ,,", "a", "1", " 2"])
        #expect(ByteLevel.preTokenize("naïve 日本") == ["naïve", " 日本"])
        #expect(ByteLevel.preTokenize("") == [])
        // The pieces always tile the input.
        for t in Self.varied { #expect(ByteLevel.preTokenize(t).joined() == t) }
    }

    // MARK: - Encoding

    @Test func roundTripOnVariedText() throws {
        let trained = try Self.smallTokenizer()
        let fixture = try BPETokenizer.load(from: Self.fixtureTokenizer)
        for tok in [trained, fixture] {
            for t in Self.varied {
                let ids = tok.encode(t)
                #expect(tok.decode(ids) == t, "round trip of \(t.debugDescription)")
                #expect(ids.allSatisfy { $0 >= 0 && Int($0) < tok.vocabSize })
            }
            // Twice, to go through the cache.
            let again = Self.varied.map { tok.encode($0) }
            #expect(again.map { tok.decode($0) } == Self.varied)
        }
        // Merging happens: the trained tokenizer compresses its own text.
        let ids = trained.encode(Self.sampleText)
        #expect(ids.count * 3 < Self.sampleText.utf8.count * 2)
    }

    @Test func specialTokens() throws {
        let tok = try Self.smallTokenizer()
        let eot = try #require(tok.endOfTextID)
        #expect(eot == 319)
        let ids = tok.encode("a<|endoftext|>b")
        #expect(ids.filter { Int($0) == eot }.count == 1)
        #expect(!tok.encode("a<|endoftext|>b", allowSpecialTokens: false).contains(Int32(eot)))
        #expect(tok.decode(ids) == "a<|endoftext|>b")
        #expect(tok.decode(ids, skipSpecialTokens: true) == "ab")
    }

    @Test func heapAndScanMergesAgree() throws {
        let tok = try BPETokenizer.load(from: Self.fixtureTokenizer)
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("the and  of\n\nto,e a".utf8)
        for len in [2, 3, 7, 40, 200, 700] {
            for _ in 0..<10 {
                let bytes = (0..<len).map { _ in alphabet.randomElement(using: &rng)! }
                let syms = bytes.withUnsafeBufferPointer { tok.initialSymbols($0) }
                #expect(tok.mergeWithHeap(syms) == tok.mergeByScan(syms))
            }
        }
    }

    // MARK: - Training

    @Test func trainingIsDeterministic() throws {
        let a = try Self.smallTokenizer()
        let b = try Self.smallTokenizer()
        #expect(a.vocab == b.vocab)
        #expect(a.merges.map { $0.0 + " " + $0.1 } == b.merges.map { $0.0 + " " + $0.1 })
        #expect(a.vocabSize == 320)
        #expect(a.merges.count == 320 - 256 - 1)
        // Bytes keep their own ids; the most frequent pair is merged first.
        #expect(a.vocab["A"] == 0x41 && a.vocab["Ġ"] == 0x20)
        #expect(a.merges.first.map { $0.0 + $0.1 } == "Ġt")
        #expect(a.jsonString() == b.jsonString())
    }

    @Test func trainingStopsWhenPairsRunOut() throws {
        let tok = try BPETrainer(vocabSize: 1000).train(text: "ab ab ab")
        // "ab" twice, " ab" ... at most a handful of merges.
        #expect(tok.merges.count < 5)
        #expect(tok.decode(tok.encode("ab ab ab")) == "ab ab ab")
    }

    @Test func longWordsStayLinear() throws {
        // One 200 KB pre-token: training and encoding must not go quadratic.
        let word = String(repeating: "ab", count: 100_000)
        let tok = try BPETrainer(vocabSize: 280).train(text: word + " " + word)
        // Merges double "ab" runs until the pairs run out (fewer than 23 merges).
        #expect(tok.merges.count > 10 && tok.merges.count <= 280 - 256 - 1)
        let ids = tok.encode(word)
        #expect(ids.count < 20_000)
        #expect(tok.decode(ids) == word)
        let spaces = String(repeating: " ", count: 100_000) + "x"
        #expect(tok.decode(tok.encode(spaces)) == spaces)
    }

    // MARK: - tokenizer.json

    @Test func saveLoadRoundTrip() throws {
        let tok = try Self.smallTokenizer()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tokenizer.json").path
        try tok.save(to: path)
        try tok.save(to: path)  // overwrite in place
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(names == ["tokenizer.json"])  // no temporary files left behind
        let back = try BPETokenizer.load(from: path)
        #expect(back.vocab == tok.vocab)
        #expect(back.merges.map { [$0.0, $0.1] } == tok.merges.map { [$0.0, $0.1] })
        #expect(back.addedTokens == tok.addedTokens)
        for t in Self.varied { #expect(back.encode(t) == tok.encode(t)) }
        #expect(back.jsonString() == tok.jsonString())
    }

    @Test func fixtureFromTokenizersGivesIdenticalIDs() throws {
        let tok = try BPETokenizer.load(from: Self.fixtureTokenizer)
        #expect(tok.vocabSize == 512)
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixtureIDs))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try #require(root["cases"] as? [[String: Any]])
        #expect(cases.count > 10)
        for c in cases {
            let text = try #require(c["text"] as? String)
            let ids = try #require(c["ids"] as? [Int]).map(Int32.init)
            #expect(tok.encode(text) == ids, "ids of \(text.debugDescription)")
            #expect(tok.decode(ids) == text)
        }
    }

    @Test func loadsLegacyStringMerges() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixtureTokenizer))
        var root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var model = try #require(root["model"] as? [String: Any])
        let pairs = try #require(model["merges"] as? [[String]])
        model["merges"] = pairs.map { $0.joined(separator: " ") }
        model["ignore_merges"] = nil
        root["model"] = model
        let legacy = try BPETokenizer(json: JSONSerialization.data(withJSONObject: root))
        let modern = try BPETokenizer.load(from: Self.fixtureTokenizer)
        #expect(legacy.merges.count == modern.merges.count)
        for t in Self.varied { #expect(legacy.encode(t) == modern.encode(t)) }
    }

    @Test func errorsAreTypedAndOneLine() throws {
        func check(_ expected: (TokenizerError) -> Bool, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("expected an error")
            } catch let e as TokenizerError {
                #expect(expected(e), "\(e)")
                #expect(!e.description.contains("\n") && !e.description.isEmpty)
            } catch {
                Issue.record("untyped error \(error)")
            }
        }
        check({ if case .fileNotFound = $0 { true } else { false } }) {
            _ = try BPETokenizer.load(from: "/nonexistent/tokenizer.json")
        }
        check({ if case .invalidJSON = $0 { true } else { false } }) {
            _ = try BPETokenizer(json: Data("{\"model\": [1,".utf8))
        }
        check({ if case .invalidJSON = $0 { true } else { false } }) {
            _ = try BPETokenizer(json: Data("[1, 2]".utf8))
        }
        check({ if case .unsupportedModel("WordPiece") = $0 { true } else { false } }) {
            _ = try BPETokenizer(json: Data(#"{"model": {"type": "WordPiece", "vocab": {}}}"#.utf8))
        }
        check({ if case .unsupportedComponent = $0 { true } else { false } }) {
            _ = try BPETokenizer(json: Data(#"{"normalizer": {"type": "NFC"}, "model": {"type": "BPE", "vocab": {}, "merges": []}}"#.utf8))
        }
        check({ if case .invalidVocabulary = $0 { true } else { false } }) {
            _ = try BPETokenizer(json: Data(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#.utf8))
        }
        check({ $0 == .emptyTrainingText }) { _ = try BPETrainer(vocabSize: 300).train(text: "") }
        check({ $0 == .emptyTrainingText }) { _ = try BPETrainer(vocabSize: 300).train(text: "<|endoftext|>") }
        check({ if case .invalidVocabSize = $0 { true } else { false } }) {
            _ = try BPETrainer(vocabSize: 100).train(text: "abc")
        }
        check({ if case .io = $0 { true } else { false } }) {
            try Self.smallTokenizer().save(to: "/nonexistent-dir/tokenizer.json")
        }
    }

    // MARK: - SentencePiece style (Llama / Mistral), fixtures from scripts/make_spm_tokenizer_fixtures.py

    static let spmForms = ["spm_normalizer", "spm_metaspace", "spm_metaspace_split"]

    @Test(arguments: spmForms)
    func spmFixtureMatchesTokenizers(form: String) throws {
        let tok = try BPETokenizer.load(from: Self.fixtures.appendingPathComponent("tokenizer_\(form).json").path)
        #expect(tok.charLevel && tok.byteFallback && tok.vocabSize == 600)
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("tokenizer_\(form)_expected.json"))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try #require(root["cases"] as? [[String: Any]])
        #expect(cases.count > 20)
        for c in cases {
            let text = try #require(c["text"] as? String)
            let ids = try #require(c["ids"] as? [Int]).map(Int32.init)
            let idsSpecial = try #require(c["ids_special"] as? [Int]).map(Int32.init)
            #expect(tok.encode(text) == ids, "\(form) ids of \(text.debugDescription)")
            #expect(tok.encode(text, addSpecialTokens: true) == idsSpecial, "\(form) ids+special of \(text.debugDescription)")
            #expect(tok.decode(ids) == (c["decoded"] as? String), "\(form) decode of \(text.debugDescription)")
            #expect(tok.decode(idsSpecial, skipSpecialTokens: true) == (c["decoded_skip"] as? String),
                    "\(form) decode (skip special) of \(text.debugDescription)")
            #expect(tok.decodeBytes(ids) == Array((c["decoded"] as? String ?? "").utf8))
        }
        // Saving gives back the file it came from.
        let again = try BPETokenizer(json: Data(tok.jsonString().utf8))
        for c in cases.prefix(10) {
            let text = c["text"] as? String ?? ""
            #expect(again.encode(text) == tok.encode(text))
        }
    }

    @Test func spmComponentsMirrorTokenizers() {
        // Metaspace pre-tokenizer (values from tokenizers 0.23 pre_tokenize_str).
        let m = Metaspace(prependScheme: .always, split: true)
        #expect(m.preTokenize("Hey  friend", atStart: false) == ["\u{2581}Hey", "\u{2581}", "\u{2581}friend"])
        #expect(m.preTokenize("", atStart: true).isEmpty)
        #expect(Metaspace(prependScheme: .first, split: false).preTokenize("a b", atStart: false) == ["a\u{2581}b"])
        #expect(Metaspace(prependScheme: .never).preTokenize(" x", atStart: true) == ["\u{2581}x"])
        // Decoders.
        #expect(TokenDecoder.byteFallback.decodeChain(["<0xE6>", "<0x97>", "<0xA5>", "a", "<0xE6>"]) == ["日", "a", "\u{FFFD}"])
        #expect(TokenDecoder.strip(content: " ", start: 1, stop: 0).decodeChain(["  a "]) == [" a "])
        #expect(TokenDecoder.metaspace(m).decode(["\u{2581}a\u{2581}", "\u{2581}b"]) == "a b")
        // Normalizers.
        let n = TokenNormalizer.sequence([.prepend("\u{2581}"), .replace(pattern: " ", content: "\u{2581}")])
        #expect(n.apply("") == "" && n.apply("a b") == "\u{2581}a\u{2581}b")
    }

    @Test func unknownCharactersWithoutByteFallbackFuse() throws {
        // A vocabulary without the byte tokens: missing characters become <unk>, fused.
        let vocab = ["<unk>": 0, "a": 1, "b": 2, "\u{2581}": 3, "ab": 4]
        let fused = try BPETokenizer(vocab: vocab, merges: [("a", "b")], unkToken: "<unk>", fuseUnk: true,
                                     metaspace: Metaspace(prependScheme: .never, split: false))
        #expect(fused.encode("abxyab") == [4, 0, 4])
        let unfused = try BPETokenizer(vocab: vocab, merges: [("a", "b")], unkToken: "<unk>", fuseUnk: false,
                                       metaspace: Metaspace(prependScheme: .never, split: false))
        #expect(unfused.encode("abxyab") == [4, 0, 0, 4])
    }

    @Test func spmUnsupportedVariantsAreRefusedInOneLine() throws {
        let base = try Data(contentsOf: Self.fixtures.appendingPathComponent("tokenizer_spm_normalizer.json"))
        let root = try #require(try JSONSerialization.jsonObject(with: base) as? [String: Any])
        let variants: [(String, Any, String)] = [
            ("normalizer", ["type": "NFKC"], "NFKC"),
            ("normalizer", ["type": "Replace", "pattern": ["Regex": " +"], "content": "_"], "Regex"),
            ("pre_tokenizer", ["type": "Whitespace"], "Whitespace"),
            ("pre_tokenizer", ["type": "ByteLevel", "add_prefix_space": false], "ByteLevel"),
            ("decoder", ["type": "WordPiece", "prefix": "##"], "WordPiece"),
            ("post_processor", ["type": "RobertaProcessing"], "RobertaProcessing"),
        ]
        for (key, value, name) in variants {
            var r = root
            r[key] = value
            do {
                _ = try BPETokenizer(json: JSONSerialization.data(withJSONObject: r))
                Issue.record("\(key) \(name) was accepted")
            } catch let e as TokenizerError {
                guard case .unsupportedComponent = e else { Issue.record("\(e)"); continue }
                #expect(e.description.contains(name) && !e.description.contains("\n"), "\(e)")
            }
        }
    }

    // MARK: - Cross-check harness (opt-in)

    /// Trains on the Shakespeare works except a held-out one, saves tokenizer.json and the
    /// held-out ids for `scripts/check_tokenizer.py`, and prints timings. Runs only when
    /// SUBSPACE_TOKENIZER_XCHECK names an output directory.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SUBSPACE_TOKENIZER_XCHECK"] != nil))
    func crossCheckArtifacts() throws {
        let env = ProcessInfo.processInfo.environment
        let out = env["SUBSPACE_TOKENIZER_XCHECK"]!
        let dataDir = env["SUBSPACE_TOKENIZER_DATA"] ?? "/work/shared/data/shakespeare"
        let heldOut = env["SUBSPACE_TOKENIZER_HELDOUT"] ?? "hamlet_gut.txt"
        let vocabSize = Int(env["SUBSPACE_TOKENIZER_VOCAB"] ?? "") ?? 4096
        let files = try FileManager.default.contentsOfDirectory(atPath: dataDir)
            .filter { $0.hasSuffix("_gut.txt") && $0 != heldOut }.sorted()
            .map { dataDir + "/" + $0 }
        let texts = try files.map { try String(contentsOfFile: $0, encoding: .utf8) }
        let trainBytes = texts.reduce(0) { $0 + $1.utf8.count }

        var t0 = Date()
        let tok = try BPETrainer(vocabSize: vocabSize).train(texts: texts)
        let trainSeconds = Date().timeIntervalSince(t0)
        try tok.save(to: out + "/tokenizer.json")

        let heldText = try String(contentsOfFile: dataDir + "/" + heldOut, encoding: .utf8)
        let fresh = try BPETokenizer.load(from: out + "/tokenizer.json")
        t0 = Date()
        let ids = fresh.encode(heldText)
        let coldSeconds = Date().timeIntervalSince(t0)
        let all = texts.joined(separator: "\n")
        t0 = Date()
        let allIDs = fresh.encode(all)
        let bulkSeconds = Date().timeIntervalSince(t0)
        t0 = Date()
        _ = fresh.encode(all)
        let warmSeconds = Date().timeIntervalSince(t0)
        try BPETokenizer.writeTokenIDs(ids, vocabSize: fresh.vocabSize, to: out + "/heldout.ids.bin")
        try heldText.write(toFile: out + "/heldout.txt", atomically: true, encoding: .utf8)
        #expect(fresh.decode(ids) == heldText)
        #expect(fresh.decode(allIDs) == all)

        let mb = { (n: Int) in Double(n) / 1_000_000 }
        print(String(format: "xcheck: trained vocab %d on %d files (%.2f MB) in %.2f s",
                     tok.vocabSize, files.count, mb(trainBytes), trainSeconds))
        print(String(format: "xcheck: encode held-out %@ %.2f MB cold cache: %.1f MB/s, %d tokens (%.2f bytes/token)",
                     heldOut, mb(heldText.utf8.count), mb(heldText.utf8.count) / coldSeconds, ids.count,
                     Double(heldText.utf8.count) / Double(ids.count)))
        print(String(format: "xcheck: encode training text %.2f MB: %.1f MB/s (cache filling), %.1f MB/s (warm cache)",
                     mb(all.utf8.count), mb(all.utf8.count) / bulkSeconds, mb(all.utf8.count) / warmSeconds))
    }
}

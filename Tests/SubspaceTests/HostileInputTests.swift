import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Hostile input for the command-line tool: occupied and impossible run directories,
/// inconsistent resumes, absurd sizes, failing I/O, values that give wrong results, samples
/// beyond the context, and corrupt, truncated, empty or misplaced files of every format the
/// tool reads. Every case asserts the README's promise (`Promise.expectUserError`): exit
/// status 1 (64 allowed for argument parsing), exactly one `error:` line and it ends stderr,
/// no trap, no hang (30 s), no Foundation error text; and where a run or checkpoint existed,
/// its bytes are unchanged afterwards.
extension Reliability {
@Suite struct HostileInputTests {

    /// What a case runs, and what must survive it byte for byte.
    struct Plan {
        var args: [String]
        var protect: [URL] = []
        var fragments: [String] = []
    }

    struct Case: CustomTestStringConvertible, @unchecked Sendable {
        let name: String
        var usage = false
        var memory = false
        var timeout: Double = 30
        let make: (Micro, URL) throws -> Plan
        var testDescription: String { name }

        init(_ name: String, usage: Bool = false, memory: Bool = false, timeout: Double = 30, _ make: @escaping (Micro, URL) throws -> Plan) {
            self.name = name; self.usage = usage; self.memory = memory; self.timeout = timeout; self.make = make
        }
    }

    func check(_ c: Case) throws {
        let m = try Micro.shared()
        let dir = try m.scratch(c.name)
        defer { Files.remove(dir) }
        let plan = try c.make(m, dir)
        let before = plan.protect.map(Files.snapshot)
        let r = try CLI.run(plan.args, timeout: c.timeout)
        var problems = Promise.userErrorProblems(r, allowUsage: c.usage, fragments: plan.fragments, memoryError: c.memory)
        for (url, b) in zip(plan.protect, before) {
            #expect(!b.isEmpty, "nothing to protect at \(url.path)")
            let a = Files.snapshot(url)
            if a != b {
                let why = "DATA LOSS: \(url.lastPathComponent) changed: \(Files.diff(b, a))"
                problems.append(why)
                Issue.record("\(why) — \(r)")
            }
        }
        // One line per case for the worklist: grep '^RELIABILITY'.
        print(CLIResult.short("RELIABILITY\t\(problems.isEmpty ? "PASS" : "FAIL")\t\(c.name)\t\(r.outcome)\t\(problems.joined(separator: "; "))\t\(r.headline)"))
    }

    // MARK: Helpers for cases

    static func ck(_ run: URL) -> URL { run.appendingPathComponent("checkpoint") }
    static func resume(_ run: URL, steps: Int = 8, _ extra: [String] = []) -> [String] {
        ["train", "--resume", run.path, "--steps", "\(steps)", "--sample-tokens", "0"] + extra
    }
    static func eval(_ m: Micro, _ checkpoint: URL, data: String? = nil, _ extra: [String] = []) -> [String] {
        ["eval", "--checkpoint", checkpoint.path, "--data", data ?? m.corpus.path, "--batch", "2"] + extra
    }
    static func sample(_ checkpoint: URL, _ extra: [String] = []) -> [String] {
        ["sample", "--checkpoint", checkpoint.path, "--prompt", "the ", "--tokens", "8"] + extra
    }
    static func train(_ m: Micro, _ d: URL, steps: Int = 3, _ extra: [String] = []) -> [String] {
        m.trainArgs(out: d.appendingPathComponent("run"), steps: steps, extra: extra)
    }
    /// Replaces the value of `"key" : value` in a pretty-printed JSON file (first match).
    static func setValue(_ url: URL, _ key: String, _ value: String) throws {
        let text = try String(contentsOf: url, encoding: .utf8)
        let re = try NSRegularExpression(pattern: "(\n\\s*\"\(key)\"\\s*:\\s*)[^,\n}]+")
        let ns = text as NSString
        guard let match = re.firstMatch(in: text, range: NSRange(location: 0, length: ns.length)) else {
            throw Child.SpawnError(description: "no key \(key) in \(url.path)")
        }
        let prefix = ns.substring(with: match.range(at: 1))
        try Files.write(ns.replacingCharacters(in: match.range, with: prefix + value), url)
    }
    /// The base run's checkpoint with `file` replaced by `bytes`; protects the checkpoint.
    static func corrupt(_ m: Micro, _ d: URL, _ file: String, _ bytes: (Data) -> Data) throws -> URL {
        let run = try m.copyBaseRun(into: d)
        let url = ck(run).appendingPathComponent(file)
        try Files.write(bytes(try Data(contentsOf: url)), url)
        return run
    }
    static func garbage(_ n: Int, seed: UInt64 = 7) -> Data {
        var r = SeededRandom(seed: seed)
        return Data((0..<n).map { _ in UInt8(truncatingIfNeeded: r.next()) })
    }
    static let nonUTF8 = Data([0x7B, 0x22, 0xC3, 0x28, 0xFF, 0xFE, 0x22, 0x3A, 0x20, 0x31, 0x7D])
    static func tokenFile(_ d: URL, _ name: String, _ bytes: [UInt8]) throws -> String {
        let u = d.appendingPathComponent(name)
        try Files.write(Data(bytes), u)
        return u.path
    }
    static func u16(_ ids: [UInt16]) -> [UInt8] { ids.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] } }
    static func u32(_ ids: [UInt32]) -> [UInt8] { ids.flatMap { v in (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xff) } } }
    /// A config.json for `train --config`.
    static func config(_ d: URL, _ json: String) throws -> String {
        let u = d.appendingPathComponent("config.json")
        try Files.write(json, u)
        return u.path
    }
    /// A tokenizer.json like the fixture's, with its vocabulary entry for "the" set to `id`.
    static func tokenizerWithID(_ m: Micro, _ d: URL, _ id: String) throws -> URL {
        var text = try String(contentsOf: m.tokenizer, encoding: .utf8)
        let re = try NSRegularExpression(pattern: "\"!\"\\s*:\\s*\\d+")
        let ns = text as NSString
        guard let match = re.firstMatch(in: text, range: NSRange(location: 0, length: ns.length)) else {
            throw Child.SpawnError(description: "tokenizer fixture has no '!' entry")
        }
        text = ns.replacingCharacters(in: match.range, with: "\"!\": \(id)")
        let u = d.appendingPathComponent("tokenizer-bad.json")
        try Files.write(text, u)
        return u
    }

    // MARK: 1. Run directories

    static let runDirectoryCases: [Case] = [
        Case("train --out an existing run (no --resume/--overwrite)") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: m.trainArgs(out: run, steps: 3), protect: [run])
        },
        Case("train --out a dir holding only run_config.json") { m, d in
            let run = d.appendingPathComponent("run")
            try Files.write(try Data(contentsOf: m.baseRun.appendingPathComponent("run_config.json")), run.appendingPathComponent("run_config.json"))
            return Plan(args: m.trainArgs(out: run, steps: 3), protect: [run])
        },
        Case("train --out a dir holding only checkpoint/") { m, d in
            let run = d.appendingPathComponent("run")
            try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: ck(m.baseRun), to: ck(run))
            return Plan(args: m.trainArgs(out: run, steps: 3), protect: [run])
        },
        Case("train --out a regular file") { m, d in
            let f = d.appendingPathComponent("notes.txt")
            try Files.write("my notes\n", f)
            return Plan(args: m.trainArgs(out: f, steps: 3), protect: [f])
        },
        Case("train --out DIR whose checkpoint is a regular file (refused before any step)") { m, d in
            let run = d.appendingPathComponent("run")
            try Files.write("not a checkpoint\n", ck(run))
            return Plan(args: m.trainArgs(out: run, steps: 3), protect: [run])
        },
        Case("train --out DIR whose checkpoint/ is a folder that is not a checkpoint") { m, d in
            let run = d.appendingPathComponent("run")
            try Files.write("precious\n", ck(run).appendingPathComponent("thesis.tex"))
            return Plan(args: m.trainArgs(out: run, steps: 3), protect: [run])
        },
        Case("train --resume DIR whose checkpoint is a regular file") { m, d in
            let run = try m.copyBaseRun(into: d)
            Files.remove(ck(run))
            try Files.write("not a checkpoint\n", ck(run))
            return Plan(args: resume(run), protect: [run])
        },
        Case("train --resume DIR whose checkpoint/ is a folder that is not a checkpoint") { m, d in
            let run = try m.copyBaseRun(into: d)
            Files.remove(ck(run))
            try Files.write("precious\n", ck(run).appendingPathComponent("thesis.tex"))
            return Plan(args: resume(run), protect: [run])
        },
        Case("train --out below a regular file") { m, d in
            let f = d.appendingPathComponent("file.txt")
            try Files.write("x\n", f)
            return Plan(args: m.trainArgs(out: f.appendingPathComponent("run"), steps: 3), protect: [f])
        },
        Case("train --out /dev/null") { m, _ in Plan(args: m.trainArgs(out: URL(fileURLWithPath: "/dev/null"), steps: 3)) },
        Case("train --out under /proc (cannot create)") { m, _ in
            Plan(args: m.trainArgs(out: URL(fileURLWithPath: "/proc/subspace-hostile/run"), steps: 3))
        },
        Case("train --resume an empty directory") { _, d in Plan(args: resume(d)) },
        Case("train --resume a regular file") { _, d in
            let f = d.appendingPathComponent("run")
            try Files.write("x\n", f)
            return Plan(args: resume(f), protect: [f])
        },
        Case("train --resume a run without checkpoint/") { m, d in
            let run = try m.copyBaseRun(into: d)
            Files.remove(ck(run))
            return Plan(args: resume(run), protect: [run])
        },
    ]

    @Test(arguments: runDirectoryCases) func runDirectory(_ c: Case) throws { try check(c) }

    /// `--overwrite` replaces an existing run (the refusal above must have a way out).
    @Test func overwriteReplacesAnExistingRun() throws {
        let m = try Micro.shared()
        let d = try m.scratch("overwrite")
        defer { Files.remove(d) }
        let run = try m.copyBaseRun(into: d)
        let r = try CLI.run(m.trainArgs(out: run, steps: 2, extra: ["--overwrite"]))
        Promise.expectSuccess(r)
        #expect(Files.checkpointStep(Self.ck(run)) == 2, "after --overwrite the checkpoint is not the new run's")
        #expect(Files.losses(run.appendingPathComponent("metrics.jsonl")).count == 2, "metrics.jsonl still holds the old run")
    }

    /// While a run holds DIR, a second `train` on DIR (`--overwrite` or `--resume`) exits at
    /// once naming the holder's pid; after the holder dies (SIGKILL: no clean-up), DIR is free.
    @Test func aRunningRunLocksItsDirectory() throws {
        let m = try Micro.shared()
        let d = try m.scratch("lock")
        defer { Files.remove(d) }
        let run = d.appendingPathComponent("run")
        let ck = Self.ck(run)
        let holder = try Child.spawn(m.trainArgs(out: run, steps: 1_000_000, checkpointEvery: 20))
        defer { holder.signal(SIGKILL) }
        let started = holder.waitUntil(timeout: 30) { (Files.checkpointStep(ck) ?? 0) >= 20 }
        try #require(started && holder.isRunning, "the holder run did not start: \(holder.stderrSoFar)")
        let pidText = "in use by process \(holder.pid)"
        // A resume that would otherwise succeed (the holder has a checkpoint) must not run.
        let resumeSteps = (Files.checkpointStep(ck) ?? 20) + 2
        for args in [m.trainArgs(out: run, steps: 3, extra: ["--overwrite"]), Self.resume(run, steps: resumeSteps)] {
            let r = try CLI.run(args, timeout: 20)
            Promise.expectUserError(r, fragments: [pidText])
            #expect(r.seconds < 10, "did not exit at once (\(r.seconds) s)")
        }
        #expect(holder.isRunning, "the second invocation disturbed the holder")
        holder.signal(SIGKILL)
        _ = holder.wait(timeout: 10)
        let r = try CLI.run(m.trainArgs(out: run, steps: 2, extra: ["--overwrite"]))
        Promise.expectSuccess(r)
    }

    // MARK: 4. Resume consistency

    static let resumeCases: [Case] = [
        Case("resume with a different --tokenizer (names both)") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, ["--tokenizer", m.otherTokenizer.path]), protect: [ck(run)],
                        fragments: [m.tokenizer.lastPathComponent, m.otherTokenizer.lastPathComponent])
        },
        Case("resume with --steps fewer than done") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, steps: Micro.baseSteps - 3), protect: [run])
        },
        Case("resume with a different --batch") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, ["--batch", "2"]), protect: [ck(run)], fragments: ["batch"])
        },
        Case("resume a backprop run with --trainer mezo") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, ["--trainer", "mezo"]), protect: [ck(run)], fragments: ["step rule"])
        },
        Case("resume with a different --data") { m, d in
            let run = try m.copyBaseRun(into: d)
            let other = d.appendingPathComponent("other.txt")
            try Files.write(Micro.syntheticText(lines: 400, seed: 9), other)
            return Plan(args: resume(run, ["--data", other.path]), protect: [ck(run)])
        },
        Case("trainer_state step = Int64.max") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "step", "9223372036854775807")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state step = -1") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "step", "-1")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state tokens_seen = Int64.max") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "tokens_seen", "9223372036854775807")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state tokens_seen = -5") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "tokens_seen", "-5")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state data_position = Int64.max") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "data_position", "9223372036854775807")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state step = 1e300") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "step", "1e300")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state step is a string") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "step", "\"six\"")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state format_version 99") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("trainer_state.json"), "format_version", "99")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state.json truncated") { m, d in
            let run = try corrupt(m, d, "trainer_state.json") { $0.prefix($0.count / 2) }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state.json empty") { m, d in
            let run = try corrupt(m, d, "trainer_state.json") { _ in Data() }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state.json non-UTF-8") { m, d in
            let run = try corrupt(m, d, "trainer_state.json") { _ in nonUTF8 }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state.json missing") { m, d in
            let run = try m.copyBaseRun(into: d)
            Files.remove(ck(run).appendingPathComponent("trainer_state.json"))
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("trainer_state.json is a directory") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = ck(run).appendingPathComponent("trainer_state.json")
            Files.remove(u)
            try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("checkpoint config.json differs from run_config (intermediate_size)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("config.json"), "intermediate_size", "96")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("run_config.json truncated") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("run_config.json")
            try Files.write(try Data(contentsOf: u).prefix(100), u)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("run_config.json empty") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.write(Data(), run.appendingPathComponent("run_config.json"))
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("run_config.json garbage bytes") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.write(garbage(700), run.appendingPathComponent("run_config.json"))
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("run_config.json steps is a string") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(run.appendingPathComponent("run_config.json"), "steps", "\"abc\"")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("run_config.json batch 0") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(run.appendingPathComponent("run_config.json"), "batch", "0")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("run_config.json is a directory") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("run_config.json")
            Files.remove(u)
            try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("train --resume an fp32 run with --precision bf16") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, steps: 8, ["--precision", "bf16"]), protect: [ck(run)], fragments: ["precision"])
        },
        Case("train --resume an fp32-state run with --state-precision bf16") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, steps: 8, ["--state-precision", "bf16"]), protect: [ck(run)], fragments: ["state precision"])
        },
        Case("run_config.json precision fp16") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("run_config.json")
            let text = try String(contentsOf: u, encoding: .utf8)
            try Files.write(Data(text.replacingOccurrences(of: "{", with: "{\"precision\": \"fp16\", ", options: [], range: text.range(of: "{")).utf8), u)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("run_config.json missing, checkpoint present") { m, d in
            let run = try m.copyBaseRun(into: d)
            Files.remove(run.appendingPathComponent("run_config.json"))
            return Plan(args: resume(run), protect: [ck(run)])
        },
    ]

    @Test(arguments: resumeCases) func resumeConsistency(_ c: Case) throws { try check(c) }

    /// The same tokenizer content at another path is not a mismatch.
    @Test func resumeWithACopyOfTheSameTokenizerIsAllowed() throws {
        let m = try Micro.shared()
        let d = try m.scratch("same-tokenizer")
        defer { Files.remove(d) }
        let run = try m.copyBaseRun(into: d)
        let copy = d.appendingPathComponent("copy of tokenizer.json")
        try FileManager.default.copyItem(at: m.tokenizer, to: copy)
        Promise.expectSuccess(try CLI.run(Self.resume(run, ["--tokenizer", copy.path])))
    }

    // MARK: 5. Resources checked before allocation

    static let resourceCases: [Case] = [
        Case("config hidden_size 1000000", memory: true) { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(hidden: 1_000_000))]))
        },
        Case("config num_hidden_layers 100000", memory: true) { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(layers: 100_000))]))
        },
        Case("config vocab_size 2147483647", memory: true) { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(vocab: 2_147_483_647))]))
        },
        Case("config hidden 1e6, layers 1e5, vocab 2^31-1", memory: true) { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(hidden: 1_000_000, layers: 100_000, vocab: 2_147_483_647))]))
        },
        Case("config intermediate_size 10^12", memory: true) { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(ffn: 1_000_000_000_000))]))
        },
        Case("config max_position_embeddings 2147483647", memory: true) { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(maxSeq: 2_147_483_647)), "--seq", "32"]))
        },
        Case("--batch 100000 (context 1024)", memory: true) { m, d in
            Plan(args: train(m, d, ["--config", m.wideConfig.path, "--batch", "100000", "--seq", "1024"]))
        },
        Case("--grad-accum 1000000000", memory: true) { m, d in Plan(args: train(m, d, ["--grad-accum", "1000000000"])) },
        Case("--tokenizer with a token id 2147483647") { m, d in
            Plan(args: train(m, d, ["--tokenizer", try tokenizerWithID(m, d, "2147483647").path]))
        },
        Case("sample from a checkpoint whose tokenizer has id 2147483647") { m, d in
            let run = try m.copyBaseRun(into: d)
            let bad = try tokenizerWithID(m, d, "2147483647")
            let u = ck(run).appendingPathComponent("tokenizer.json")
            Files.remove(u)
            try FileManager.default.copyItem(at: bad, to: u)
            return Plan(args: sample(ck(run)), protect: [ck(run)])
        },
        Case("eval --batch 100000000") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: eval(m, ck(run), ["--batch", "100000000"]), protect: [ck(run)])
        },
        Case("memory --model config(hidden 1e6, layers 1e5, vocab 2^31-1, context 2^31-1) --batch 10^9 --seq 2^31-1") { _, d in
            let cfg = try config(d, Micro.configJSON(hidden: 1_000_000, layers: 100_000, vocab: 2_147_483_647, maxSeq: 2_147_483_647))
            return Plan(args: ["memory", "--model", cfg, "--batch", "1000000000", "--seq", "2147483647"])
        },
        Case("memory --model llama7b --batch Int64.max") { _, _ in
            Plan(args: ["memory", "--model", "llama7b", "--batch", "9223372036854775807"])
        },
        Case("memory --model llama7b --runtime-bytes Int64.max") { _, _ in
            Plan(args: ["memory", "--model", "llama7b", "--runtime-bytes", "9223372036854775807"])
        },
        Case("memory --optimizer galore --rank Int64.max") { _, _ in
            Plan(args: ["memory", "--model", "llama7b", "--optimizer", "galore", "--rank", "9223372036854775807"])
        },
        Case("eval of a checkpoint whose weights do not match its config (intermediate_size)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("config.json"), "intermediate_size", "65")
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("eval of a checkpoint whose tensor header claims shape [320, 1000000]") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.replaceSafeTensorsHeader(ck(run).appendingPathComponent("model.safetensors")) {
                $0.replacingOccurrences(of: "\"shape\":[320,32]", with: "\"shape\":[320,1000000]")
            }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("config num_attention_heads 0") { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(heads: 0))]))
        },
        Case("config num_key_value_heads 0") { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(kvHeads: 0))]))
        },
        Case("config hidden_size -32") { m, d in
            Plan(args: train(m, d, ["--config", try config(d, Micro.configJSON(hidden: -32))]))
        },
        Case("tokenizer train --vocab 2147483647") { m, d in
            Plan(args: ["tokenizer", "train", "--data", m.corpus.path, "--vocab", "2147483647", "--out", d.appendingPathComponent("t.json").path])
        },
    ]

    @Test(arguments: resourceCases) func resourcesCheckedBeforeAllocation(_ c: Case) throws { try check(c) }

    // MARK: 6. I/O failures

    static let ioCases: [Case] = [
        Case("resume with metrics.jsonl a symlink to /dev/full (ENOSPC)") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("metrics.jsonl")
            Files.remove(u)
            try FileManager.default.createSymbolicLink(atPath: u.path, withDestinationPath: "/dev/full")
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("resume with metrics.jsonl a directory") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("metrics.jsonl")
            Files.remove(u)
            try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("resume with run_config.json a dangling symlink") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("run_config.json")
            Files.remove(u)
            try FileManager.default.createSymbolicLink(atPath: u.path, withDestinationPath: d.appendingPathComponent("gone.json").path)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("resume with run_config.json a symlink loop") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("run_config.json")
            Files.remove(u)
            try FileManager.default.createSymbolicLink(atPath: u.path, withDestinationPath: u.path)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("train --data a FIFO (nothing ever written)", timeout: 20) { m, d in
            let fifo = d.appendingPathComponent("corpus.txt")
            mkfifo(fifo.path, 0o644)
            return Plan(args: train(m, d, ["--data", fifo.path]))
        },
        Case("train --data /dev/zero (endless)") { m, d in Plan(args: train(m, d, ["--data", "/dev/zero"])) },
        Case("train --tokenizer /dev/zero (endless)") { m, d in Plan(args: train(m, d, ["--tokenizer", "/dev/zero"])) },
        Case("tokenizer train --out under /proc") { m, _ in
            Plan(args: ["tokenizer", "train", "--data", m.corpus.path, "--vocab", "300", "--out", "/proc/subspace-hostile/tok.json"])
        },
        Case("tokenizer train --out an existing directory") { m, d in
            Plan(args: ["tokenizer", "train", "--data", m.corpus.path, "--vocab", "300", "--out", d.path], protect: [d])
        },
        Case("tokenizer encode --out under /proc") { m, _ in
            Plan(args: ["tokenizer", "encode", "--tokenizer", m.tokenizer.path, "--input", m.corpus.path, "--out", "/proc/subspace-hostile/ids.bin"])
        },
        Case("tokenizer encode --input a directory") { m, d in
            Plan(args: ["tokenizer", "encode", "--tokenizer", m.tokenizer.path, "--input", d.path, "--out", d.appendingPathComponent("ids.bin").path])
        },
        Case("tokenizer encode --input non-UTF-8") { m, d in
            let u = d.appendingPathComponent("in.txt")
            try Files.write(nonUTF8, u)
            return Plan(args: ["tokenizer", "encode", "--tokenizer", m.tokenizer.path, "--input", u.path, "--out", d.appendingPathComponent("ids.bin").path])
        },
        Case("plot --out under /proc") { m, _ in Plan(args: ["plot", m.baseRun.path, "--out", "/proc/subspace-hostile/loss.svg"]) },
        Case("plot a run whose metrics.jsonl is a directory") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = run.appendingPathComponent("metrics.jsonl")
            Files.remove(u)
            try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
            return Plan(args: ["plot", run.path, "--out", d.appendingPathComponent("l.svg").path])
        },
        Case("plot a run whose metrics.jsonl is non-UTF-8") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.write(nonUTF8, run.appendingPathComponent("metrics.jsonl"))
            return Plan(args: ["plot", run.path, "--out", d.appendingPathComponent("l.svg").path])
        },
        Case("plot a nonexistent run") { _, d in
            Plan(args: ["plot", d.appendingPathComponent("nope").path, "--out", d.appendingPathComponent("l.svg").path])
        },
        Case("eval --checkpoint a regular file") { m, d in
            let f = d.appendingPathComponent("ckpt")
            try Files.write("x\n", f)
            return Plan(args: eval(m, f))
        },
        Case("train --init-from a regular file") { m, d in
            let f = d.appendingPathComponent("ckpt")
            try Files.write("x\n", f)
            return Plan(args: train(m, d, ["--init-from", f.path]))
        },
        Case("train --config a directory") { m, d in Plan(args: train(m, d, ["--config", d.path])) },
        Case("train --tokenizer a directory") { m, d in Plan(args: train(m, d, ["--tokenizer", d.path])) },
    ]

    @Test(arguments: ioCases) func ioFailures(_ c: Case) throws { try check(c) }

    // MARK: 7. Wrong results and impossible values

    static func flagCase(_ extra: [String], usage: Bool = false) -> Case {
        Case("train " + extra.joined(separator: " "), usage: usage) { m, d in Plan(args: train(m, d, extra)) }
    }

    static let valueCases: [Case] = [
        Case("eval of NaN weights") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.poisonSafeTensors(ck(run).appendingPathComponent("model.safetensors"), bits: 0x7FC0_0000)
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("eval of +Inf weights") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.poisonSafeTensors(ck(run).appendingPathComponent("model.safetensors"), bits: 0x7F80_0000)
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("resume from NaN weights (NaN loss)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.poisonSafeTensors(ck(run).appendingPathComponent("model.safetensors"), bits: 0x7FC0_0000)
            return Plan(args: resume(run), protect: [ck(run)])
        },
        flagCase(["--stop-after", "0"]),
        flagCase(["--stop-after=-1"]),
        flagCase(["--optimizer", "adamw", "--betas", "0.9"]),
        flagCase(["--betas", "0.9,0.999,0.5"]),
        flagCase(["--betas", "abc"]),
        flagCase(["--betas", "1.5,0.999"]),
        flagCase(["--betas", "nan,0.999"]),
        flagCase(["--steps", "0"]),
        flagCase(["--steps=-1"]),
        flagCase(["--lr", "nan"]),
        flagCase(["--lr", "inf"]),
        flagCase(["--warmup=-1"]),
        flagCase(["--eps=-1"]),
        flagCase(["--eps", "nan"]),
        flagCase(["--clip=-1"]),
        flagCase(["--clip", "nan"]),
        flagCase(["--seq", "0"]),
        flagCase(["--seq=-3"]),
        flagCase(["--batch", "0"]),
        flagCase(["--eval-every=-5"]),
        flagCase(["--eval-batches=-1"]),
        flagCase(["--checkpoint-every=-1"]),
        flagCase(["--grad-accum", "0"]),
        flagCase(["--min-lr-ratio", "0"]),
        flagCase(["--min-lr-ratio", "1.5"]),
        flagCase(["--weight-decay", "nan"]),
        flagCase(["--schedule", "linear"]),
        flagCase(["--precision", "fp16"]),
        flagCase(["--state-precision", "fp16"]),
        flagCase(["--optimizer", "adamw8bit", "--state-precision", "bf16"]),
        flagCase(["--dp-communication", "ring"]),
        flagCase(["--dp-communication", "projected"]),  // adamw reads whole gradients
        flagCase(["--optimizer", "galore", "--dp-communication", "projected"]),  // train clips at 1.0
        flagCase(["--optimizer", "galore", "--rank", "0"]),
        flagCase(["--optimizer", "galore", "--update-gap", "0"]),
        flagCase(["--optimizer", "sgd", "--momentum", "nan"]),
        flagCase(["--optimizer", "mkor", "--factor-interval", "0"]),
        flagCase(["--optimizer", "mkor", "--stat-decay", "1"]),
        flagCase(["--optimizer", "mkor", "--mkor-inner", "lbfgs"]),
        flagCase(["--optimizer", "mkor-h", "--switch-window", "0"]),
        flagCase(["--sample-tokens=-1"]),
        flagCase(["--trainer", "mezo", "--zo-eps", "0"]),
        flagCase(["--trainer", "mezo", "--zo-eps=-1"]),
        flagCase(["--trainer", "mezo", "--zo-eps", "nan"]),
        flagCase(["--trainer", "mezo", "--zo-eps", "inf"]),
        flagCase(["--trainer", "lozo", "--zo-rank", "0"]),
        flagCase(["--trainer", "subzero", "--zo-interval", "0"]),
        flagCase(["--trainer", "lozo-m", "--zo-momentum", "1"]),
        flagCase(["--trainer", "lozo-m", "--zo-momentum", "0"]),
        flagCase(["--trainer", "lozo-m", "--zo-update", "optimizer"]),
        flagCase(["--trainer", "mezo", "--zo-update", "adam"]),
        flagCase(["--trainer", "mezo", "--lr", "nan"]),
        flagCase(["--trainer", "eggroll", "--population", "0"]),
        flagCase(["--trainer", "eggroll", "--population", "7"]),
        flagCase(["--trainer", "eggroll", "--sigma", "0"]),
        flagCase(["--trainer", "eggroll", "--sigma", "nan"]),
        flagCase(["--trainer", "eggroll", "--fitness-shaping", "softmax"]),
        flagCase(["--trainer", "eggroll", "--population-chunk", "0"]),
        flagCase(["--trainer", "eggroll", "--population-forward", "parallel"]),
        flagCase(["--trainer", "eggroll", "--population-forward", "batched", "--adapter", "lora"]),
        flagCase(["--trainer", "no-such-rule"]),
        flagCase(["--step-rule", "no-such-rule"]),
        flagCase(["--steps", "abc"], usage: true),
        flagCase(["--steps", "99999999999999999999"], usage: true),
        flagCase(["--bogus-flag"], usage: true),
        flagCase(["--shuffle", "maybe"], usage: true),
        flagCase(["--seed=-1"], usage: true),
        Case("train --steps (value missing)", usage: true) { _, _ in Plan(args: ["train", "--steps"]) },
        Case("sample --temperature -1") { m, _ in Plan(args: sample(ck(m.baseRun), ["--temperature=-1"])) },
        Case("sample --temperature nan") { m, _ in Plan(args: sample(ck(m.baseRun), ["--temperature", "nan"])) },
        Case("sample --top-k -3") { m, _ in Plan(args: sample(ck(m.baseRun), ["--top-k=-3"])) },
        Case("sample --tokens -5") { m, _ in Plan(args: sample(ck(m.baseRun), ["--tokens=-5"])) },
        Case("sample --tokens abc", usage: true) { m, _ in Plan(args: sample(ck(m.baseRun), ["--tokens", "abc"])) },
        Case("sample --top-p 0") { m, _ in Plan(args: sample(ck(m.baseRun), ["--top-p", "0"])) },
        Case("sample --top-p 1.5") { m, _ in Plan(args: sample(ck(m.baseRun), ["--top-p", "1.5"])) },
        Case("sample --top-p nan") { m, _ in Plan(args: sample(ck(m.baseRun), ["--top-p", "nan"])) },
        Case("sample --top-p -0.5") { m, _ in Plan(args: sample(ck(m.baseRun), ["--top-p=-0.5"])) },
        Case("sample --top-p abc", usage: true) { m, _ in Plan(args: sample(ck(m.baseRun), ["--top-p", "abc"])) },
        Case("sample --num-samples 0") { m, _ in Plan(args: sample(ck(m.baseRun), ["--num-samples", "0"])) },
        Case("sample --num-samples -2") { m, _ in Plan(args: sample(ck(m.baseRun), ["--num-samples=-2"])) },
        Case("sample --num-samples abc", usage: true) { m, _ in Plan(args: sample(ck(m.baseRun), ["--num-samples", "abc"])) },
        Case("sample --stop (empty)") { m, _ in Plan(args: sample(ck(m.baseRun), ["--stop", ""])) },
        Case("sample --stop (value missing)", usage: true) { m, _ in Plan(args: sample(ck(m.baseRun), ["--stop"])) },
        Case("eval --batch 0") { m, _ in Plan(args: eval(m, ck(m.baseRun), ["--batch", "0"])) },
        Case("eval --seq 0") { m, _ in Plan(args: eval(m, ck(m.baseRun), ["--seq", "0"])) },
        Case("eval --split foo") { m, _ in Plan(args: eval(m, ck(m.baseRun), ["--split", "foo"])) },
        Case("eval --precision fp16") { m, _ in Plan(args: eval(m, ck(m.baseRun), ["--precision", "fp16"]), fragments: ["precision"]) },
        Case("bench --precision int8") { _, _ in Plan(args: ["bench", "--preset", "tiny", "--steps", "1", "--precision", "int8"], fragments: ["precision"]) },
        Case("memory --precision fp16") { _, _ in Plan(args: ["memory", "--model", "tiny", "--precision", "fp16"], fragments: ["precision"]) },
        Case("bench --optimizer muon --state-precision bf16") { _, _ in
            Plan(args: ["bench", "--preset", "tiny", "--steps", "1", "--optimizer", "muon", "--state-precision", "bf16"], fragments: ["state-precision"])
        },
        Case("memory --state-precision bf16 --state-bits 8") { _, _ in
            Plan(args: ["memory", "--model", "tiny", "--state-precision", "bf16", "--state-bits", "8"], fragments: ["state-precision"])
        },
        Case("tokenizer train --vocab 0") { m, d in
            Plan(args: ["tokenizer", "train", "--data", m.corpus.path, "--vocab", "0", "--out", d.appendingPathComponent("t.json").path])
        },
        Case("memory --batch -1") { _, _ in Plan(args: ["memory", "--model", "tiny", "--batch=-1"]) },
        Case("memory --seq 0") { _, _ in Plan(args: ["memory", "--model", "tiny", "--seq", "0"]) },
        Case("memory --state-bits 3") { _, _ in Plan(args: ["memory", "--model", "tiny", "--state-bits", "3"]) },
        Case("memory --dtype fp8") { _, _ in Plan(args: ["memory", "--model", "tiny", "--dtype", "fp8"]) },
        Case("memory --runtime-bytes -1") { _, _ in Plan(args: ["memory", "--model", "tiny", "--runtime-bytes=-1"]) },
        Case("memory --trainer lozo --zo-rank 0") { _, _ in Plan(args: ["memory", "--model", "tiny", "--trainer", "lozo", "--zo-rank", "0"]) },
        Case("memory --ranks 0") { _, _ in Plan(args: ["memory", "--model", "tiny", "--ranks", "0"], fragments: ["--ranks"]) },
        Case("memory --ranks 2 --trainer mezo (cannot run data-parallel)") { _, _ in
            Plan(args: ["memory", "--model", "tiny", "--ranks", "2", "--trainer", "mezo"], fragments: ["data-parallel"])
        },
        Case("memory --trainer bogus") { _, _ in Plan(args: ["memory", "--model", "tiny", "--trainer", "bogus"]) },
    ]

    @Test(arguments: valueCases) func impossibleValues(_ c: Case) throws { try check(c) }

    // MARK: 8. Samples beyond the context

    @Test func sampleBeyondTheContextIsRefused() throws {
        let m = try Micro.shared()
        let d = try m.scratch("sample-context")
        defer { Files.remove(d) }
        let run = try m.copyBaseRun(into: d)
        let before = Files.snapshot(Self.ck(run))
        // The micro model's context is 32 tokens.
        let r = try CLI.run(["sample", "--checkpoint", Self.ck(run).path, "--prompt", "the ", "--tokens", "100"])
        Promise.expectUserError(r)
        Promise.expectSuccess(try CLI.run(["sample", "--checkpoint", Self.ck(run).path, "--prompt", "the ", "--tokens", "100", "--sliding-window"]))
        Promise.expectSuccess(try CLI.run(["sample", "--checkpoint", Self.ck(run).path, "--prompt", "the ", "--tokens", "10"]))
        #expect(Files.snapshot(Self.ck(run)) == before)
    }

    /// `eval`, `sample` and `plot` take a run directory as well as its checkpoint (or, for
    /// `plot`, the checkpoint as well as the run), with identical results.
    @Test func runDirectoryOrCheckpoint() throws {
        let m = try Micro.shared()
        let e1 = try CLI.run(Self.eval(m, m.baseRun, ["--json"])), e2 = try CLI.run(Self.eval(m, Self.ck(m.baseRun), ["--json"]))
        guard Promise.expectSuccess(e1), Promise.expectSuccess(e2) else { return }
        #expect(e1.stdout == e2.stdout)
        let s1 = try CLI.run(Self.sample(m.baseRun, ["--temperature", "0"])), s2 = try CLI.run(Self.sample(Self.ck(m.baseRun), ["--temperature", "0"]))
        guard Promise.expectSuccess(s1), Promise.expectSuccess(s2) else { return }
        #expect(s1.stdout == s2.stdout)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-plot-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.svg"), b = dir.appendingPathComponent("b.svg")
        let p1 = try CLI.run(["plot", m.baseRun.path, "--out", a.path]), p2 = try CLI.run(["plot", Self.ck(m.baseRun).path, "--out", b.path])
        guard Promise.expectSuccess(p1), Promise.expectSuccess(p2) else { return }
        #expect(try Data(contentsOf: a) == Data(contentsOf: b))
    }

    /// The sampling options work together: several samples with their headers, a stop
    /// string that ends each sample (and is printed), the tokens/s line last on stderr, and
    /// the reference path (`--no-cache`) printing exactly what the cached path prints.
    @Test func sampleOptions() throws {
        let m = try Micro.shared()
        let base = Self.sample(Self.ck(m.baseRun))
        let r = try CLI.run(base + ["--num-samples", "3", "--seed", "5", "--top-p", "0.9", "--stop", "e"])
        guard Promise.expectSuccess(r) else { return }
        for i in 1...3 { #expect(r.stdout.contains("=== sample \(i) of 3 (seed \(4 + i)) ===")) }
        #expect(r.stderrLines.last?.contains("tokens/s") == true, "\(r.stderr)")
        // Each sample's generated text ends at its first "e" (or runs out of tokens).
        for part in r.stdout.components(separatedBy: "===\n").dropFirst() {
            let text = part.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            let generated = String(text.joined(separator: "\n").dropFirst("the ".count)).components(separatedBy: "=== sample")[0]
            if let e = generated.firstIndex(of: "e") {
                #expect(generated[generated.index(after: e)...].trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(generated)")
            }
        }
        // Sample 2 of --seed 5 is --seed 6 alone.
        let alone = try CLI.run(base + ["--seed", "6", "--top-p", "0.9", "--stop", "e"])
        #expect(r.stdout.contains(alone.stdout))
        for extra in [["--temperature", "0"], ["--temperature", "0.9", "--top-k", "5", "--top-p", "0.8", "--sliding-window", "--tokens", "40"]] {
            let cached = try CLI.run(base + extra), reference = try CLI.run(base + extra + ["--no-cache"])
            Promise.expectSuccess(cached)
            Promise.expectSuccess(reference)
            #expect(cached.stdout == reference.stdout, "\(extra)")
        }
    }

    // MARK: Corrupt, truncated, empty and misplaced files

    static let corruptCases: [Case] = [
        // model.safetensors
        Case("model.safetensors empty (eval)") { m, d in
            let run = try corrupt(m, d, "model.safetensors") { _ in Data() }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors 3 bytes (eval)") { m, d in
            let run = try corrupt(m, d, "model.safetensors") { $0.prefix(3) }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors header length 2^64-1 (eval)") { m, d in
            let run = try corrupt(m, d, "model.safetensors") { Data(repeating: 0xFF, count: 8) + $0.dropFirst(8) }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors header length past the end (eval)") { m, d in
            let run = try corrupt(m, d, "model.safetensors") { data in
                var n = UInt64(data.count + 10).littleEndian
                return Data(bytes: &n, count: 8) + data.dropFirst(8)
            }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors header not JSON (eval)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.replaceSafeTensorsHeader(ck(run).appendingPathComponent("model.safetensors")) { String(repeating: "@", count: $0.count) }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors data offsets past the end (eval)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.replaceSafeTensorsHeader(ck(run).appendingPathComponent("model.safetensors")) {
                $0.replacingOccurrences(of: "\"data_offsets\":[0,40960]", with: "\"data_offsets\":[9223372036854775000,9223372036854775807]")
            }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors dtype I32 (eval)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.replaceSafeTensorsHeader(ck(run).appendingPathComponent("model.safetensors")) {
                $0.replacingOccurrences(of: "\"dtype\":\"F32\"", with: "\"dtype\":\"I32\"")
            }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors truncated data (eval)") { m, d in
            let run = try corrupt(m, d, "model.safetensors") { $0.dropLast(1000) }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors garbage (sample)") { m, d in
            let run = try corrupt(m, d, "model.safetensors") { garbage($0.count) }
            return Plan(args: sample(ck(run)), protect: [ck(run)])
        },
        Case("model.safetensors truncated (resume)") { m, d in
            let run = try corrupt(m, d, "model.safetensors") { $0.prefix($0.count / 2) }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("model.safetensors is a directory (eval)") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = ck(run).appendingPathComponent("model.safetensors")
            Files.remove(u)
            try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        // optimizer.safetensors
        Case("optimizer.safetensors empty (resume)") { m, d in
            let run = try corrupt(m, d, "optimizer.safetensors") { _ in Data() }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("optimizer.safetensors truncated (resume)") { m, d in
            let run = try corrupt(m, d, "optimizer.safetensors") { $0.prefix($0.count - 100) }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("optimizer.safetensors garbage (resume)") { m, d in
            let run = try corrupt(m, d, "optimizer.safetensors") { garbage($0.count, seed: 3) }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("optimizer.safetensors missing (resume)") { m, d in
            let run = try m.copyBaseRun(into: d)
            Files.remove(ck(run).appendingPathComponent("optimizer.safetensors"))
            return Plan(args: resume(run), protect: [ck(run)])
        },
        // config.json
        Case("config.json empty (eval)") { m, d in
            let run = try corrupt(m, d, "config.json") { _ in Data() }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("config.json truncated (sample)") { m, d in
            let run = try corrupt(m, d, "config.json") { $0.prefix($0.count / 2) }
            return Plan(args: sample(ck(run)), protect: [ck(run)])
        },
        Case("config.json non-UTF-8 (eval)") { m, d in
            let run = try corrupt(m, d, "config.json") { _ in nonUTF8 }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("config.json a JSON array (resume)") { m, d in
            let run = try corrupt(m, d, "config.json") { _ in Data("[1, 2, 3]".utf8) }
            return Plan(args: resume(run), protect: [ck(run)])
        },
        Case("config.json hidden_size a string (eval)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("config.json"), "hidden_size", "\"32\"")
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("config.json num_attention_heads 0 (eval)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try setValue(ck(run).appendingPathComponent("config.json"), "num_attention_heads", "0")
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("config.json is a directory (eval)") { m, d in
            let run = try m.copyBaseRun(into: d)
            let u = ck(run).appendingPathComponent("config.json")
            Files.remove(u)
            try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("train --config truncated JSON") { m, d in
            Plan(args: train(m, d, ["--config", try config(d, String(Micro.configJSON().prefix(40)))]))
        },
        Case("train --config non-UTF-8") { m, d in
            let u = d.appendingPathComponent("c.json")
            try Files.write(nonUTF8, u)
            return Plan(args: train(m, d, ["--config", u.path]))
        },
        // tokenizer.json
        Case("checkpoint tokenizer.json empty (sample)") { m, d in
            let run = try corrupt(m, d, "tokenizer.json") { _ in Data() }
            return Plan(args: sample(ck(run)), protect: [ck(run)])
        },
        Case("checkpoint tokenizer.json truncated (eval)") { m, d in
            let run = try corrupt(m, d, "tokenizer.json") { $0.prefix($0.count / 2) }
            return Plan(args: eval(m, ck(run)), protect: [ck(run)])
        },
        Case("checkpoint tokenizer.json garbage (sample)") { m, d in
            let run = try corrupt(m, d, "tokenizer.json") { garbage($0.count, seed: 11) }
            return Plan(args: sample(ck(run)), protect: [ck(run)])
        },
        Case("checkpoint tokenizer.json missing (sample)") { m, d in
            let run = try m.copyBaseRun(into: d)
            Files.remove(ck(run).appendingPathComponent("tokenizer.json"))
            return Plan(args: sample(ck(run)), protect: [ck(run)])
        },
        Case("--tokenizer with a negative token id") { m, d in
            Plan(args: train(m, d, ["--tokenizer", try tokenizerWithID(m, d, "-7").path]))
        },
        Case("--tokenizer with a duplicate token id") { m, d in
            Plan(args: train(m, d, ["--tokenizer", try tokenizerWithID(m, d, "5").path]))
        },
        Case("--tokenizer non-UTF-8") { m, d in
            let u = d.appendingPathComponent("t.json")
            try Files.write(nonUTF8, u)
            return Plan(args: train(m, d, ["--tokenizer", u.path]))
        },
        // metrics.jsonl
        Case("plot a run whose metrics.jsonl is garbage") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.write(garbage(500, seed: 5), run.appendingPathComponent("metrics.jsonl"))
            return Plan(args: ["plot", run.path, "--out", d.appendingPathComponent("l.svg").path])
        },
        Case("resume with metrics.jsonl garbage (history would be dropped silently)") { m, d in
            let run = try m.copyBaseRun(into: d)
            try Files.write(garbage(500, seed: 5), run.appendingPathComponent("metrics.jsonl"))
            return Plan(args: resume(run), protect: [ck(run), run.appendingPathComponent("metrics.jsonl")])
        },
        // token files
        Case(".bin with an odd number of bytes") { m, d in Plan(args: train(m, d, ["--data", try tokenFile(d, "ids.bin", [1, 0, 2])])) },
        Case(".u32 with 5 bytes") { m, d in Plan(args: train(m, d, ["--data", try tokenFile(d, "ids.u32", [1, 0, 0, 0, 2])])) },
        Case("empty .bin") { m, d in Plan(args: train(m, d, ["--data", try tokenFile(d, "ids.bin", [])])) },
        Case(".bin with ids beyond the vocabulary (65535)") { m, d in
            Plan(args: train(m, d, ["--data", try tokenFile(d, "ids.bin", u16((0..<4000).map { $0 % 7 == 0 ? 65535 : UInt16($0 % 300) }))]))
        },
        Case(".u32 with id 0xFFFFFFFF") { m, d in
            Plan(args: train(m, d, ["--data", try tokenFile(d, "ids.u32", u32((0..<4000).map { $0 == 3999 ? 0xFFFF_FFFF : UInt32($0 % 300) }))]))
        },
        Case(".bin shorter than one sequence") { m, d in Plan(args: train(m, d, ["--data", try tokenFile(d, "ids.bin", u16([1, 2, 3]))])) },
        Case("eval of a .bin with ids beyond the vocabulary") { m, d in
            Plan(args: eval(m, ck(m.baseRun), data: try tokenFile(d, "ids.bin", u16((0..<4000).map { UInt16(300 + $0 % 1000) }))))
        },
        Case("a directory named ids.bin") { m, d in
            let u = d.appendingPathComponent("ids.bin")
            try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
            return Plan(args: train(m, d, ["--data", u.path]))
        },
        // text
        Case("empty text file") { m, d in
            let u = d.appendingPathComponent("empty.txt")
            try Files.write(Data(), u)
            return Plan(args: train(m, d, ["--data", u.path]))
        },
        Case("whitespace-only text") { m, d in
            let u = d.appendingPathComponent("ws.txt")
            try Files.write(" \n\t\n   \n", u)
            return Plan(args: train(m, d, ["--data", u.path]))
        },
        Case("text shorter than one sequence") { m, d in
            let u = d.appendingPathComponent("short.txt")
            try Files.write("hi there.\n", u)
            return Plan(args: train(m, d, ["--data", u.path]))
        },
        Case("directory without .txt files") { m, d in
            let u = d.appendingPathComponent("corpus")
            try Files.write("x", u.appendingPathComponent("readme.md"))
            return Plan(args: train(m, d, ["--data", u.path]))
        },
        Case("directory with a non-UTF-8 .txt work") { m, d in
            let u = d.appendingPathComponent("corpus")
            try Files.write(Micro.syntheticText(lines: 300, seed: 2), u.appendingPathComponent("a.txt"))
            try Files.write(nonUTF8, u.appendingPathComponent("b.txt"))
            return Plan(args: train(m, d, ["--data", u.path]))
        },
        Case("eval --data non-UTF-8 text") { m, d in
            let u = d.appendingPathComponent("bad.txt")
            try Files.write(nonUTF8, u)
            return Plan(args: eval(m, ck(m.baseRun), data: u.path))
        },
        // nonexistent paths
        Case("train --config nonexistent") { m, d in Plan(args: train(m, d, ["--config", d.appendingPathComponent("nope.json").path])) },
        Case("train --tokenizer nonexistent") { m, d in Plan(args: train(m, d, ["--tokenizer", d.appendingPathComponent("nope.json").path])) },
        Case("train --init-from nonexistent") { m, d in Plan(args: train(m, d, ["--init-from", d.appendingPathComponent("nope").path])) },
        Case("train --data nonexistent") { m, d in Plan(args: train(m, d, ["--data", d.appendingPathComponent("nope.txt").path])) },
        Case("eval --data nonexistent") { m, d in Plan(args: eval(m, ck(m.baseRun), data: d.appendingPathComponent("nope.txt").path)) },
        Case("memory --model nonexistent.json") { _, d in Plan(args: ["memory", "--model", d.appendingPathComponent("nope.json").path]) },
        // eval --tokenizer
        Case("eval --tokenizer nonexistent") { m, d in Plan(args: eval(m, ck(m.baseRun), ["--tokenizer", d.appendingPathComponent("nope.json").path])) },
        Case("eval --tokenizer a directory") { m, d in Plan(args: eval(m, ck(m.baseRun), ["--tokenizer", d.path])) },
        Case("eval --tokenizer garbage") { m, d in
            let u = d.appendingPathComponent("t.json")
            try Files.write(Data("{ not json".utf8), u)
            return Plan(args: eval(m, ck(m.baseRun), ["--tokenizer", u.path]))
        },
        Case("eval --tokenizer with no value", usage: true) { m, _ in Plan(args: eval(m, ck(m.baseRun), ["--tokenizer"])) },
    ]

    @Test(arguments: corruptCases) func corruptFiles(_ c: Case) throws { try check(c) }

    // MARK: 9. Fine-tuning, recipes and settings

    /// `train --init-from DIR` on text, with the micro model's shapes, no `--tokenizer`.
    static func fineTune(_ m: Micro, _ d: URL, from: URL, _ extra: [String] = []) -> [String] {
        ["train", "--init-from", from.path, "--data", m.corpus.path, "--steps", "2", "--batch", "4", "--seq", "32",
         "--warmup", "1", "--eval-every", "0", "--eval-batches", "2", "--sample-tokens", "0", "--out", d.appendingPathComponent("ft").path] + extra
    }
    /// A Hugging Face-style folder: the base run's config.json and weights, plus `tokenizer`
    /// as its tokenizer.json when given.
    static func hfFolder(_ m: Micro, _ d: URL, tokenizer: Data? = nil) throws -> URL {
        let hf = d.appendingPathComponent("hf")
        try FileManager.default.createDirectory(at: hf, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: ck(m.baseRun).appendingPathComponent(f), to: hf.appendingPathComponent(f))
        }
        if let tokenizer { try Files.write(tokenizer, hf.appendingPathComponent("tokenizer.json")) }
        return hf
    }

    static let fineTuneCases: [Case] = [
        Case("train --init-from a folder without tokenizer.json (text data, no --tokenizer)") { m, d in
            let hf = try hfFolder(m, d)
            return Plan(args: fineTune(m, d, from: hf), protect: [hf], fragments: ["tokenizer.json", "--tokenizer", "--new-tokenizer"])
        },
        Case("train --init-from a folder whose tokenizer.json is WordPiece") { m, d in
            let hf = try hfFolder(m, d, tokenizer: Data(#"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}}"#.utf8))
            return Plan(args: fineTune(m, d, from: hf), protect: [hf], fragments: ["tokenizer.json", "cannot read", "WordPiece", "--tokenizer", "--new-tokenizer"])
        },
        Case("train --init-from a folder whose tokenizer.json is not JSON") { m, d in
            let hf = try hfFolder(m, d, tokenizer: garbage(300))
            return Plan(args: fineTune(m, d, from: hf), protect: [hf], fragments: ["tokenizer.json", "--new-tokenizer"])
        },
        Case("train --init-from a folder whose tokenizer.json is a directory") { m, d in
            let hf = try hfFolder(m, d)
            try FileManager.default.createDirectory(at: hf.appendingPathComponent("tokenizer.json"), withIntermediateDirectories: true)
            return Plan(args: fineTune(m, d, from: hf), protect: [hf], fragments: ["tokenizer.json", "--new-tokenizer"])
        },
        Case("train --init-from a folder whose tokenizer is larger than the model's vocabulary") { m, d in
            let big = d.appendingPathComponent("big.json")
            let r = try CLI.run(["tokenizer", "train", "--data", m.corpus.path, "--vocab", "400", "--out", big.path])
            guard r.exitStatus == 0 else { throw Child.SpawnError(description: "tokenizer: \(r)") }
            let hf = try hfFolder(m, d, tokenizer: try Data(contentsOf: big))
            return Plan(args: fineTune(m, d, from: hf), protect: [hf], fragments: ["vocabulary is 320", "--new-tokenizer", "tokenizer.json"])
        },
        Case("train --init-from --new-tokenizer --tokenizer (contradiction)") { m, d in
            Plan(args: fineTune(m, d, from: ck(m.baseRun), ["--new-tokenizer", "--tokenizer", m.tokenizer.path]),
                 fragments: ["--new-tokenizer", "--tokenizer"])
        },
        Case("train --new-tokenizer with a value", usage: true) { m, d in
            Plan(args: fineTune(m, d, from: ck(m.baseRun), ["--new-tokenizer", "yes"]))
        },
        Case("train --resume --new-tokenizer") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, ["--new-tokenizer"]), protect: [run], fragments: ["--new-tokenizer"])
        },
        Case("train --recipe nonexistent") { _, d in
            Plan(args: ["train", "--recipe", d.appendingPathComponent("nope.json").path, "--out", d.appendingPathComponent("r").path])
        },
        Case("train --recipe a garbage file") { _, d in
            let f = d.appendingPathComponent("recipe.json")
            try Files.write(garbage(200), f)
            return Plan(args: ["train", "--recipe", f.path, "--out", d.appendingPathComponent("r").path], protect: [f])
        },
        Case("train --recipe a JSON file that is not a run config") { _, d in
            let f = d.appendingPathComponent("recipe.json")
            try Files.write(#"{"steps": "many"}"#, f)
            return Plan(args: ["train", "--recipe", f.path, "--out", d.appendingPathComponent("r").path], protect: [f], fragments: ["run config"])
        },
        Case("train --recipe a directory without run_config.json") { _, d in
            Plan(args: ["train", "--recipe", d.path, "--out", d.appendingPathComponent("r").path], fragments: ["run_config.json"])
        },
        Case("train --recipe with --resume") { m, d in
            let run = try m.copyBaseRun(into: d)
            return Plan(args: resume(run, ["--recipe", m.baseRun.appendingPathComponent("run_config.json").path]), protect: [run], fragments: ["--recipe"])
        },
        Case("train --recipe with --preset") { m, d in
            Plan(args: ["train", "--recipe", m.baseRun.path, "--preset", "tiny", "--out", d.appendingPathComponent("r").path],
                 fragments: ["--recipe", "--preset"])
        },
        Case("train --recipe with an impossible override (--steps 0)") { m, d in
            Plan(args: ["train", "--recipe", m.baseRun.path, "--steps", "0", "--out", d.appendingPathComponent("r").path], fragments: ["steps"])
        },
        Case("train --recipe without a value", usage: true) { _, _ in Plan(args: ["train", "--recipe"]) },
        Case("settings --table --json") { _, _ in Plan(args: ["settings", "--table", "--json"], fragments: ["--table"]) },
        Case("settings --table with a value", usage: true) { _, _ in Plan(args: ["settings", "--table", "yes"]) },
    ]

    @Test(arguments: fineTuneCases) func fineTuneAndRecipes(_ c: Case) throws { try check(c) }

    // MARK: 10. Adapters, restarts and merging

    /// A LoRA fine-tune of the base run (rank 2), in `d/ft`.
    static func adapterRun(_ m: Micro, _ d: URL) throws -> URL {
        let r = try CLI.run(fineTune(m, d, from: ck(m.baseRun), ["--adapter", "lora", "--adapter-rank", "2"]))
        guard r.exitStatus == 0 else { throw Child.SpawnError(description: "adapter run: \(r)") }
        return d.appendingPathComponent("ft")
    }
    static func lora(_ m: Micro, _ d: URL, _ extra: [String]) -> [String] { fineTune(m, d, from: ck(m.baseRun), extra) }
    /// A copy of the adapter run's checkpoint as an adapter folder, with `file` replaced.
    static func adapterFolder(_ m: Micro, _ d: URL, _ file: String? = nil, _ bytes: Data = Data()) throws -> URL {
        let run = try adapterRun(m, d)
        let a = d.appendingPathComponent("adapter")
        try FileManager.default.createDirectory(at: a, withIntermediateDirectories: true)
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            try FileManager.default.copyItem(at: ck(run).appendingPathComponent(f), to: a.appendingPathComponent(f))
        }
        if let file { try Files.write(bytes, a.appendingPathComponent(file)) }
        return a
    }

    static let adapterCases: [Case] = [
        Case("train --adapter bogus") { m, d in Plan(args: lora(m, d, ["--adapter", "bogus"]), fragments: ["unknown adapter", "lora"]) },
        Case("train --adapter lora --adapter-rank 0") { m, d in Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-rank", "0"]), fragments: ["rank"]) },
        Case("train --adapter lora --adapter-rank above min(in, out)") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-rank", "100000"]), fragments: ["rank 100000", "min(in, out)"])
        },
        Case("train --adapter lora --adapter-rank not a number", usage: true) { m, d in Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-rank", "x"])) },
        Case("train --adapter lora --adapter-targets with an unknown slot") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-targets", "q_proj,lm_head"]), fragments: ["lm_head", "q_proj"])
        },
        Case("train --adapter lora --adapter-targets empty") { m, d in Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-targets", ""]), fragments: ["target"]) },
        Case("train --adapter lora --adapter-targets repeated") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-targets", "v_proj,v_proj"]), fragments: ["twice"])
        },
        Case("train --adapter lora --adapter-alpha nan") { m, d in Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-alpha", "nan"]), fragments: ["alpha"]) },
        Case("train --adapter lora --adapter-alpha -2") { m, d in Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-alpha=-2"]), fragments: ["alpha"]) },
        Case("train --adapter-rank without --adapter") { m, d in Plan(args: lora(m, d, ["--adapter-rank", "4"]), fragments: ["--adapter"]) },
        Case("train --adapter relora without --relora-every") { m, d in Plan(args: lora(m, d, ["--adapter", "relora"]), fragments: ["--relora-every"]) },
        Case("train --adapter relora --relora-every 1") { m, d in
            Plan(args: lora(m, d, ["--adapter", "relora", "--relora-every", "1"]), fragments: ["at least 2"])
        },
        Case("train --adapter relora --restart-warmup not shorter than the interval") { m, d in
            Plan(args: lora(m, d, ["--adapter", "relora", "--relora-every", "4", "--restart-warmup", "4", "--steps", "9"]), fragments: ["shorter than the interval"])
        },
        Case("train --adapter relora --optimizer-reset bogus") { m, d in
            Plan(args: lora(m, d, ["--adapter", "relora", "--relora-every", "4", "--optimizer-reset", "bogus"]), fragments: ["optimizer reset", "random:F"])
        },
        Case("train --adapter relora --optimizer-reset random:x") { m, d in
            Plan(args: lora(m, d, ["--adapter", "relora", "--relora-every", "4", "--optimizer-reset", "random:x"]), fragments: ["not a number"])
        },
        Case("train --adapter relora --optimizer-reset magnitude:1.5") { m, d in
            Plan(args: lora(m, d, ["--adapter", "relora", "--relora-every", "4", "--optimizer-reset", "magnitude:1.5"]), fragments: ["between 0 and 1"])
        },
        Case("train --adapter lora --optimizer-reset zero (needs relora)") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora", "--optimizer-reset", "zero"]), fragments: ["--adapter relora"])
        },
        Case("train --adapter relora whose restarts never happen") { m, d in
            Plan(args: lora(m, d, ["--adapter", "relora", "--relora-every", "50"]), fragments: ["never happen"])
        },
        Case("train --resume an adapter run with another rank") { m, d in
            let run = try adapterRun(m, d)
            return Plan(args: resume(run, ["--adapter-rank", "3"]), protect: [run], fragments: ["adapter"])
        },
        Case("train --resume an adapter run whose adapter weights are missing") { m, d in
            let run = try adapterRun(m, d)
            try FileManager.default.removeItem(at: ck(run).appendingPathComponent("adapter_model.safetensors"))
            return Plan(args: resume(run), protect: [run], fragments: ["adapter_model.safetensors"])
        },
        Case("eval --adapter nonexistent") { m, d in
            Plan(args: eval(m, ck(m.baseRun), ["--adapter", d.appendingPathComponent("nope").path]), fragments: ["adapter"])
        },
        Case("eval --adapter whose adapter_config.json is garbage") { m, d in
            let a = try adapterFolder(m, d, "adapter_config.json", garbage(100))
            return Plan(args: eval(m, ck(m.baseRun), ["--adapter", a.path]), protect: [a], fragments: ["adapter_config.json"])
        },
        Case("eval --adapter for another architecture (GPT-2's c_attn)") { m, d in
            let a = try adapterFolder(m, d, "adapter_config.json", Data(#"{"peft_type": "LORA", "r": 2, "lora_alpha": 8, "target_modules": ["c_attn"]}"#.utf8))
            return Plan(args: eval(m, ck(m.baseRun), ["--adapter", a.path]), protect: [a], fragments: ["c_attn", "another architecture"])
        },
        Case("eval --adapter whose rank does not match its weights") { m, d in
            let a = try adapterFolder(m, d, "adapter_config.json", Data(#"{"peft_type": "LORA", "r": 5, "lora_alpha": 8, "target_modules": "all-linear"}"#.utf8))
            return Plan(args: eval(m, ck(m.baseRun), ["--adapter", a.path]), protect: [a], fragments: ["shape"])
        },
        Case("eval --adapter whose weights are garbage") { m, d in
            let a = try adapterFolder(m, d, "adapter_model.safetensors", garbage(500))
            return Plan(args: eval(m, ck(m.baseRun), ["--adapter", a.path]), protect: [a], fragments: ["adapter_model.safetensors"])
        },
        Case("eval an adapter checkpoint whose subspace_adapter.json is garbage") { m, d in
            let run = try adapterRun(m, d)
            try Files.write(garbage(64), ck(run).appendingPathComponent("subspace_adapter.json"))
            return Plan(args: eval(m, ck(run)), protect: [run], fragments: ["subspace_adapter.json"])
        },
        Case("sample --adapter with DoRA") { m, d in
            let a = try adapterFolder(m, d, "adapter_config.json", Data(#"{"peft_type": "LORA", "r": 2, "lora_alpha": 8, "target_modules": "all-linear", "use_dora": true}"#.utf8))
            return Plan(args: sample(ck(m.baseRun), ["--adapter", a.path]), protect: [a], fragments: ["DoRA"])
        },
        Case("merge --out an existing model (no --overwrite)") { m, d in
            let run = try adapterRun(m, d)
            try FileManager.default.createDirectory(at: d.appendingPathComponent("other"), withIntermediateDirectories: true)
            let out = try m.copyBaseRun(into: d.appendingPathComponent("other"))
            return Plan(args: ["merge", "--checkpoint", run.path, "--out", ck(out).path], protect: [out, run], fragments: ["exists", "--overwrite"])
        },
        Case("merge --overwrite over a folder that is not a model") { m, d in
            let run = try adapterRun(m, d)
            let out = d.appendingPathComponent("notes")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try Files.write("keep me", out.appendingPathComponent("notes.txt"))
            return Plan(args: ["merge", "--checkpoint", run.path, "--out", out.path, "--overwrite"], protect: [out], fragments: ["refusing"])
        },
        Case("merge a checkpoint without adapters") { m, d in
            Plan(args: ["merge", "--checkpoint", m.baseRun.path, "--out", d.appendingPathComponent("m").path], fragments: ["no adapter"])
        },
        Case("merge --checkpoint nonexistent") { _, d in
            Plan(args: ["merge", "--checkpoint", d.appendingPathComponent("nope").path, "--out", d.appendingPathComponent("m").path])
        },
        Case("merge without --out", usage: true) { m, _ in Plan(args: ["merge", "--checkpoint", m.baseRun.path]) },
        Case("memory --adapter lora --adapter-rank 0") { _, _ in Plan(args: ["memory", "--adapter", "lora", "--adapter-rank", "0"], fragments: ["rank"]) },
        Case("train --parametrization bogus") { m, d in Plan(args: train(m, d, ["--parametrization", "bogus"]), fragments: ["unknown parametrization", "low-rank"]) },
        Case("train --parametrization lora (an adapter)") { m, d in Plan(args: train(m, d, ["--parametrization", "lora"]), fragments: ["parametrization"]) },
        Case("train --adapter low-rank (a parametrization)") { m, d in Plan(args: lora(m, d, ["--adapter", "low-rank"]), fragments: ["unknown adapter"]) },
        Case("train --adapter and --parametrization together") { m, d in
            Plan(args: train(m, d, ["--adapter", "lora", "--parametrization", "low-rank"]), fragments: ["exclude"])
        },
        Case("train --adapter lora --adapter-dropout 1") { m, d in Plan(args: lora(m, d, ["--adapter", "lora", "--adapter-dropout", "1"]), fragments: ["dropout"]) },
        Case("train --adapter lora-xs --adapter-dropout 0.1 (lora only)") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora-xs", "--adapter-dropout", "0.1"]), fragments: ["dropout"])
        },
        Case("train --parametrization sltrain --sltrain-density 0") { m, d in
            Plan(args: train(m, d, ["--parametrization", "sltrain", "--sltrain-density", "0"]), fragments: ["density"])
        },
        Case("train --adapter lora --sltrain-density 0.1 (sltrain only)") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora", "--sltrain-density", "0.1"]), fragments: ["sltrain"])
        },
        Case("train --parametrization comera --tt-rank 0") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-rank", "0"]), fragments: ["TT rank"])
        },
        Case("train --parametrization comera --target-compression 1") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--target-compression", "1"]), fragments: ["--target-compression"])
        },
        Case("train --parametrization comera --target-compression nan") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--target-compression", "nan"]), fragments: ["--target-compression"])
        },
        Case("train --parametrization comera --tt-modes 5 (16 has four prime factors)") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-modes", "5"]), fragments: ["cannot be factorised into 5 modes"])
        },
        Case("train --adapter lora --tt-rank 4 (comera with an adapter)") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora", "--tt-rank", "4"]), fragments: ["--parametrization comera"])
        },
        Case("train --parametrization comera --tt-embedding --tt-embedding-modes 2,2,2,2/2,2,2,2 (16 rows do not cover the vocabulary)") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-embedding", "--tt-embedding-modes", "2,2,2,2/2,2,2,2"]), fragments: ["below the vocabulary size"])
        },
        Case("train --parametrization comera --tt-embedding --tt-embedding-modes 64,64/2,8 (16 is not the dim 32)") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-embedding", "--tt-embedding-modes", "64,64/2,8"]), fragments: ["not the embedding dim"])
        },
        Case("train --parametrization comera --tt-embedding --tt-embedding-modes 8,8/2,2,4") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-embedding", "--tt-embedding-modes", "8,8/2,2,4"]), fragments: ["as many vocabulary as dimension modes"])
        },
        Case("train --parametrization comera --tt-embedding --tt-embedding-modes 8,x") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-embedding", "--tt-embedding-modes", "8,x"]), fragments: ["--tt-embedding-modes takes"])
        },
        Case("train --parametrization comera --tt-embedding --tt-embedding-rank 0") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-embedding", "--tt-embedding-rank", "0"]), fragments: ["TT embedding rank"])
        },
        Case("tt-bench --rows 0") { _, _ in Plan(args: ["tt-bench", "--rows", "0"], fragments: ["--rows"]) },
        Case("tt-bench --presets nope") { _, _ in Plan(args: ["tt-bench", "--presets", "nope"], fragments: ["unknown preset"]) },
        Case("bench --suite speed --sweep") { _, d in
            Plan(args: ["bench", "--suite", "speed", "--sweep", "--out", d.appendingPathComponent("s").path], fragments: ["--sweep"])
        },
        Case("bench --suite lowrank --only (a tiny cell on small)") { _, d in
            Plan(args: ["bench", "--suite", "lowrank", "--presets", "small", "--only", "galore-r64@lr1e-2", "--out", d.appendingPathComponent("s").path],
                 fragments: ["galore-r64@lr1e-2"])
        },
        Case("train --parametrization comera --tt-embedding-rank 4 (without --tt-embedding)") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-embedding-rank", "4"]), fragments: ["need --tt-embedding"])
        },
        Case("train --parametrization comera --adapter-rank 4") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--adapter-rank", "4"]), fragments: ["--tt-rank"])
        },
        Case("train --parametrization comera --trainer mezo") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--trainer", "mezo"]), fragments: ["--trainer backprop"])
        },
        Case("train --parametrization comera --tt-contraction bogus") { m, d in
            Plan(args: train(m, d, ["--parametrization", "comera", "--tt-contraction", "bogus"]), fragments: ["--tt-contraction"])
        },
        Case("train --adapter lora-sb --lora-sb-batches 0") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora-sb", "--lora-sb-batches", "0"]), fragments: ["LoRA-SB"])
        },
        Case("train --parametrization low-rank --momentum-reset without a cycle") { m, d in
            Plan(args: train(m, d, ["--parametrization", "low-rank", "--momentum-reset"]), fragments: ["--refactor-every", "--reset-every"])
        },
        Case("train --parametrization low-rank --refactor-every 2 --reset-every 3") { m, d in
            Plan(args: train(m, d, steps: 8, ["--parametrization", "low-rank", "--refactor-every", "2", "--reset-every", "3"]), fragments: ["two cycles"])
        },
        Case("train --parametrization low-rank --refactor-every 0") { m, d in
            Plan(args: train(m, d, steps: 8, ["--parametrization", "low-rank", "--refactor-every", "0"]), fragments: ["at least 2"])
        },
        Case("train --adapter lora --refactor-every 4 (parametrizations only)") { m, d in
            Plan(args: lora(m, d, ["--adapter", "lora", "--refactor-every", "4"]), fragments: ["restart flags"])
        },
        Case("train --parametrization low-rank --adapter-rank above min(in, out)") { m, d in
            Plan(args: train(m, d, ["--parametrization", "low-rank", "--adapter-rank", "100000"]), fragments: ["rank 100000"])
        },
        Case("bench --adapter lora --adapter-rank 0") { _, _ in
            Plan(args: ["bench", "--preset", "tiny", "--steps", "1", "--adapter", "lora", "--adapter-rank", "0"], fragments: ["rank"])
        },
        Case("bench --parametrization bogus") { _, _ in
            Plan(args: ["bench", "--preset", "tiny", "--steps", "1", "--parametrization", "bogus"], fragments: ["unknown parametrization"])
        },
        Case("train --init-from --parametrization low-rank (no base to fill)") { m, d in
            Plan(args: lora(m, d, ["--parametrization", "low-rank", "--adapter-rank", "4"]), fragments: ["cannot start from dense weights"])
        },
    ]

    @Test(arguments: adapterCases) func adapters(_ c: Case) throws { try check(c) }

    // MARK: Perfusion edits

    /// `edit` of the micro base run with `word`, examples `lines` (written to a file).
    static func edit(_ m: Micro, _ d: URL, word: String = "zorblat", lines: String = "the zorblat was here.\nwe saw a zorblat.\n", _ extra: [String] = []) throws -> [String] {
        let f = d.appendingPathComponent("examples.txt")
        try Files.write(lines, f)
        return ["edit", "--checkpoint", m.baseRun.path, "--word", word, "--examples", f.path, "--corpus", m.corpus.path,
                "--steps", "2", "--covariance-batches", "2", "--eval-batches", "1", "--out", d.appendingPathComponent("edit").path] + extra
    }

    static let editCases: [Case] = [
        Case("edit: no example contains the word") { m, d in Plan(args: try edit(m, d, lines: "no word here.\nnor here.\n"), fragments: ["no example", "zorblat"]) },
        Case("edit: empty examples file") { m, d in Plan(args: try edit(m, d, lines: "\n  \n"), fragments: ["no sentences"]) },
        Case("edit: examples file missing") { m, d in
            var args = try edit(m, d)
            args[args.firstIndex(of: "--examples")! + 1] = d.appendingPathComponent("nope.txt").path
            return Plan(args: args, fragments: ["cannot read"])
        },
        Case("edit: a word that tokenizes to nothing") { m, d in Plan(args: try edit(m, d, word: " "), fragments: ["tokenizes to nothing"]) },
        Case("edit: unknown slot") { m, d in Plan(args: try edit(m, d, ["--slot", "model.layers.9.mlp.down_proj"]), fragments: ["unknown slot"]) },
        Case("edit: --steps=-1") { m, d in Plan(args: try edit(m, d, ["--steps=-1"]), fragments: ["--steps"]) },
        Case("edit: --tau 0") { m, d in Plan(args: try edit(m, d, ["--tau", "0"]), fragments: ["--tau"]) },
        Case("edit: --out exists (no --overwrite)") { m, d in
            let out = d.appendingPathComponent("edit")
            try Files.write("keep me", out.appendingPathComponent("edit.json"))
            return Plan(args: try edit(m, d), protect: [out], fragments: ["exists", "--overwrite"])
        },
        Case("edit --overwrite over a folder that is not an edit") { m, d in
            let out = d.appendingPathComponent("edit")
            try Files.write("keep me", out.appendingPathComponent("notes.txt"))
            return Plan(args: try edit(m, d, ["--overwrite"]), protect: [out], fragments: ["refusing"])
        },
        Case("eval --edit a folder without an edit") { m, d in Plan(args: eval(m, ck(m.baseRun), ["--edit", d.path]), fragments: ["edit.json"]) },
        Case("sample --edit whose edit.json is garbage") { _, d in
            let m = try Micro.shared()
            try Files.write(garbage(64), d.appendingPathComponent("edit.json"))
            return Plan(args: sample(ck(m.baseRun), ["--edit", d.path]), fragments: ["edit.json"])
        },
    ]

    @Test(arguments: editCases) func edits(_ c: Case) throws { try check(c) }

    // MARK: Prompt-completion files

    /// A .jsonl file holding `text`.
    static func jsonl(_ d: URL, _ text: String) throws -> String {
        let u = d.appendingPathComponent("task.jsonl")
        try Files.write(text, u)
        return u.path
    }
    /// `args` with the micro corpus swapped for `data`.
    static func onData(_ args: [String], _ m: Micro, _ data: String) -> [String] { args.map { $0 == m.corpus.path ? data : $0 } }
    static let goodTask = (0..<12).map { #"{"prompt": "line \#($0)\nLabel:", "completion": "\#($0 % 2 == 0 ? " even" : " odd")"}"# }.joined(separator: "\n")

    static let promptCompletionCases: [Case] = [
        Case("train --data a .jsonl line that is not JSON") { m, d in
            Plan(args: onData(fineTune(m, d, from: m.baseRun), m, try jsonl(d, goodTask + "\n{oops")), fragments: ["line 13", "JSON"])
        },
        Case("train --data a .jsonl line without completion") { m, d in
            Plan(args: onData(fineTune(m, d, from: m.baseRun), m, try jsonl(d, #"{"prompt": "a"}"# + "\n" + goodTask)), fragments: ["line 1", "completion"])
        },
        Case("train --data a .jsonl with an empty completion") { m, d in
            Plan(args: onData(fineTune(m, d, from: m.baseRun), m, try jsonl(d, goodTask + "\n" + #"{"prompt": "a", "completion": ""}"#)), fragments: ["empty completion"])
        },
        Case("train --data a .jsonl with one example") { m, d in
            Plan(args: onData(fineTune(m, d, from: m.baseRun), m, try jsonl(d, #"{"prompt": "a", "completion": " b"}"#)), fragments: ["at least 2"])
        },
        Case("train --data a .jsonl whose completion is longer than --seq") { m, d in
            let long = String(repeating: " the", count: 80)
            return Plan(args: onData(fineTune(m, d, from: m.baseRun), m, try jsonl(d, goodTask + "\n" + #"{"prompt": "a", "completion": "\#(long)"}"#)), fragments: ["completion", "sequence length 32"])
        },
        Case("train --data a .jsonl for a new model (no tokenizer)") { m, d in
            var args = onData(train(m, d), m, try jsonl(d, goodTask))
            args.removeSubrange(args.firstIndex(of: "--tokenizer")!...(args.firstIndex(of: "--tokenizer")! + 1))
            return Plan(args: args, fragments: ["tokenizer", "--init-from"])
        },
        Case("eval --data a .jsonl that is not UTF-8") { m, d in
            let u = d.appendingPathComponent("task.jsonl")
            try Files.write(nonUTF8, u)
            return Plan(args: eval(m, ck(m.baseRun), data: u.path), fragments: ["UTF-8"])
        },
    ]

    @Test(arguments: promptCompletionCases) func promptCompletionFiles(_ c: Case) throws { try check(c) }

    /// A good classification file fine-tunes and evaluates, with accuracy in both outputs.
    @Test func promptCompletionFineTuneReportsAccuracy() throws {
        let m = try Micro.shared()
        let d = try m.scratch("jsonl")
        defer { Files.remove(d) }
        let task = try Self.jsonl(d, Self.goodTask)
        let r = try CLI.run(Self.onData(Self.fineTune(m, d, from: m.baseRun), m, task))
        _ = Promise.expectSuccess(r)
        let summary = try String(contentsOf: d.appendingPathComponent("ft/summary.json"), encoding: .utf8)
        #expect(summary.contains("\"valAccuracy\""))
        let e = try CLI.run(Self.eval(m, d.appendingPathComponent("ft"), data: task, ["--json"]))
        _ = Promise.expectSuccess(e)
        #expect(e.stdout.contains("\"accuracy\""))
    }

    /// A good edit of the micro base run succeeds and writes its two files.
    @Test func editWritesItsFiles() throws {
        let m = try Micro.shared()
        let d = try m.scratch("edit")
        defer { Files.remove(d) }
        let r = try CLI.run(try Self.edit(m, d))
        Promise.expectSuccess(r)
        for f in ["edit.safetensors", "edit.json"] { #expect(Files.exists(d.appendingPathComponent("edit/\(f)")), "\(f)") }
    }

    /// Paths with spaces and non-ASCII characters work end to end.
    @Test func pathsWithSpacesAndUnicode() throws {
        let m = try Micro.shared()
        let d = try m.scratch("unicode")
        defer { Files.remove(d) }
        let dir = d.appendingPathComponent("my runs/Ünïcødé 日本語 ✓")
        let corpus = dir.appendingPathComponent("corpus with spaces.txt")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: m.corpus, to: corpus)
        let tok = dir.appendingPathComponent("tökenizer.json")
        try FileManager.default.copyItem(at: m.tokenizer, to: tok)
        let run = dir.appendingPathComponent("rün 1")
        var args = m.trainArgs(out: run, steps: 2)
        args[args.firstIndex(of: "--data")! + 1] = corpus.path
        args[args.firstIndex(of: "--tokenizer")! + 1] = tok.path
        Promise.expectSuccess(try CLI.run(args))
        Promise.expectSuccess(try CLI.run(Self.eval(m, Self.ck(run), data: corpus.path)))
        Promise.expectSuccess(try CLI.run(Self.sample(Self.ck(run))))
        Promise.expectSuccess(try CLI.run(Self.resume(run, steps: 3)))
    }
}
}

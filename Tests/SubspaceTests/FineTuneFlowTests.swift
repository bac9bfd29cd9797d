import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// The fine-tuning flow and the settings a run shows, end to end through the binary:
/// `--init-from` reads with the model's own tokenizer (`--new-tokenizer` to train one), the
/// start-up summary and `resolvedRun`, the warm-up fitted to the run, the re-stretch note on
/// resume, ignored-flag warnings, `--recipe` replays and the README's settings table.
extension Reliability {
@Suite struct FineTuneFlowTests {
    typealias H = HostileInputTests

    static func json(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
    }

    /// Text unlike the fixture corpus (another seed), to fine-tune on.
    static func otherCorpus(_ d: URL) throws -> URL {
        let u = d.appendingPathComponent("other.txt")
        try Files.write(Micro.syntheticText(lines: 600, seed: 9), u)
        return u
    }

    @Test func initFromUsesTheModelsOwnTokenizer() throws {
        let m = try Micro.shared()
        let d = try m.scratch("init-from-tokenizer")
        defer { Files.remove(d) }
        let data = try Self.otherCorpus(d)
        var args = H.fineTune(m, d, from: m.baseRun)  // a run directory: its checkpoint/
        args[args.firstIndex(of: "--data")! + 1] = data.path
        let r = try CLI.run(args)
        guard Promise.expectSuccess(r) else { return }
        let run = d.appendingPathComponent("ft")
        let baseTok = try Data(contentsOf: H.ck(m.baseRun).appendingPathComponent("tokenizer.json"))
        #expect(try Data(contentsOf: run.appendingPathComponent("tokenizer.json")) == baseTok)
        #expect(try Data(contentsOf: H.ck(run).appendingPathComponent("tokenizer.json")) == baseTok)
        #expect(!r.stderr.contains("training a"), "no tokenizer is trained: \(r.stderr)")
        #expect(r.stderr.contains("tokenizer: \(H.ck(m.baseRun).path)/tokenizer.json"))
        let cfg = try Self.json(run.appendingPathComponent("run_config.json"))
        #expect(cfg["tokenizer"] as? String == H.ck(m.baseRun).path + "/tokenizer.json")
        #expect(cfg["newTokenizer"] == nil)

        // --new-tokenizer: trained on the new data, recorded.
        var fresh = H.fineTune(m, d, from: H.ck(m.baseRun), ["--new-tokenizer"])
        fresh[fresh.firstIndex(of: "--data")! + 1] = data.path
        fresh[fresh.firstIndex(of: "--out")! + 1] = d.appendingPathComponent("ft-new").path
        let r2 = try CLI.run(fresh)
        guard Promise.expectSuccess(r2) else { return }
        let cfg2 = try Self.json(d.appendingPathComponent("ft-new/run_config.json"))
        #expect(cfg2["newTokenizer"] as? Bool == true)
        #expect(cfg2["tokenizer"] == nil)
        #expect(try Data(contentsOf: d.appendingPathComponent("ft-new/tokenizer.json")) != baseTok)
    }

    @Test func initFromAHuggingFaceFolderWithItsTokenizer() throws {
        let m = try Micro.shared()
        let d = try m.scratch("init-from-hf")
        defer { Files.remove(d) }
        let hf = try H.hfFolder(m, d, tokenizer: try Data(contentsOf: m.tokenizer))
        let r = try CLI.run(H.fineTune(m, d, from: hf))
        guard Promise.expectSuccess(r) else { return }
        #expect(try Data(contentsOf: d.appendingPathComponent("ft/tokenizer.json")) == Data(contentsOf: m.tokenizer))
        // Token ids need no tokenizer, whatever the folder holds.
        let ids = d.appendingPathComponent("ids.bin")
        try Files.write(Data(H.u16((0..<4000).map { UInt16($0 * 7 % 300) })), ids)
        let bare = try H.hfFolder(m, d.appendingPathComponent("bare"))
        var args = H.fineTune(m, d, from: bare)
        args[args.firstIndex(of: "--data")! + 1] = ids.path
        args[args.firstIndex(of: "--out")! + 1] = d.appendingPathComponent("ft-ids").path
        Promise.expectSuccess(try CLI.run(args))
    }

    @Test func startupSummaryAndResolvedRun() throws {
        let m = try Micro.shared()
        let d = try m.scratch("summary")
        defer { Files.remove(d) }
        let run = d.appendingPathComponent("run")
        let r = try CLI.run(m.trainArgs(out: run, steps: 3))
        guard Promise.expectSuccess(r) else { return }
        let cfg = try Self.json(run.appendingPathComponent("run_config.json"))
        let plan = try #require(cfg["resolvedRun"] as? [String: Any])
        let params = LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, vocab: 320, maxSeq: 32).parameterCount
        #expect((plan["parameters"] as? NSNumber)?.intValue == params)
        #expect((plan["tokensPerStep"] as? NSNumber)?.intValue == 4 * 32)
        #expect((cfg["warmup"] as? NSNumber)?.intValue == 2)
        let spe = try #require((plan["stepsPerEpoch"] as? NSNumber)?.doubleValue)
        #expect(spe > 10)
        #expect((plan["trainTokens"] as? NSNumber)?.intValue ?? 0 > 0)
        // Each value once: no key of the record repeats a config key.
        #expect(Set(plan.keys).isDisjoint(with: cfg.keys), "\(plan.keys.sorted())")
        #expect((cfg["resolvedOptimizer"] as? [String: Any])?["optimizer"] as? String == "adamw")
        for text in ["model: \(RunPlan.grouped(params)) parameters", "optimizer: adamw", "all parameters: adamw (torch)",
                     "learningRate=0.003", "128 tokens per step", "steps per epoch", "warm-up 2 steps"] {
            #expect(r.stderr.contains(text), "start-up summary lacks '\(text)': \(r.stderr)")
        }
        // Train and evaluation time apart in the last report.
        #expect(r.stdout.contains("training ") && r.stdout.contains("evaluation "), "\(r.stdout)")
        #expect(r.stderr.contains("final evaluation on the whole validation split"), "\(r.stderr)")
    }

    @Test func warmupLongerThanTheRunIsClamped() throws {
        let m = try Micro.shared()
        let d = try m.scratch("warmup")
        defer { Files.remove(d) }
        let run = d.appendingPathComponent("run")
        let r = try CLI.run(m.trainArgs(out: run, steps: 1, extra: ["--warmup", "60"]))
        guard Promise.expectSuccess(r) else { return }
        #expect(r.stderr.contains("note: warm-up of 60 steps does not fit a run of 1 step"), "\(r.stderr)")
        let line = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        #expect(((o?["lr"] as? NSNumber)?.doubleValue ?? 0) > 0, "step 1 trains at a positive rate: \(line)")
        #expect((try Self.json(run.appendingPathComponent("run_config.json"))["warmup"] as? NSNumber)?.intValue == 0)
        // A warm-up that fits is left alone, and says nothing.
        let r2 = try CLI.run(m.trainArgs(out: d.appendingPathComponent("run2"), steps: 3))
        Promise.expectSuccess(r2)
        #expect(!r2.stderr.contains("note: warm-up"))
    }

    @Test func resumeWithMoreStepsSaysTheScheduleIsRestretched() throws {
        let m = try Micro.shared()
        let d = try m.scratch("restretch")
        defer { Files.remove(d) }
        let run = try m.copyBaseRun(into: d)
        let r = try CLI.run(H.resume(run, steps: 8))
        guard Promise.expectSuccess(r) else { return }
        #expect(r.stderr.contains("re-stretched from \(Micro.baseSteps) to 8 steps"), "\(r.stderr)")
        #expect(r.stderr.contains("resuming at step \(Micro.baseSteps) of 8"), "\(r.stderr)")
        #expect(r.stdout.contains("trained steps \(Micro.baseSteps + 1)-8 (2 steps"), "\(r.stdout)")
    }

    @Test func flagsTheMethodIgnoresAreWarnedAbout() throws {
        let m = try Micro.shared()
        let d = try m.scratch("ignored")
        defer { Files.remove(d) }
        let r = try CLI.run(m.trainArgs(out: d.appendingPathComponent("run"), steps: 2, extra: ["--rank", "64"]))
        Promise.expectSuccess(r)
        #expect(r.stderr.contains("warning: adamw does not use --rank"), "\(r.stderr)")
        let r2 = try CLI.run(m.trainArgs(out: d.appendingPathComponent("run2"), steps: 2, extra: ["--optimizer", "galore", "--rank", "4"]))
        Promise.expectSuccess(r2)
        #expect(!r2.stderr.contains("does not use"), "\(r2.stderr)")
    }

    @Test func ignoredOptionsFollowTheSettingsTypes() {
        var o = OptimizerOptions()
        o.rank = 64; o.momentum = 0.5; o.learningRate = 1e-3; o.beta1 = 0.9; o.beta2 = 0.99
        #expect(OptimizerRegistry.ignoredOptions("adamw", options: o) == ["--momentum", "--rank"])
        #expect(OptimizerRegistry.ignoredOptions("galore", options: o) == ["--momentum"])
        #expect(OptimizerRegistry.ignoredOptions("sgd", options: o) == ["--betas", "--rank"])
        #expect(OptimizerRegistry.ignoredOptions("muon", options: o) == ["--rank"])
        var a = OptimizerOptions()
        a.adamLearningRate = 1e-3; a.blockSize = 128; a.variant = "paper"
        #expect(OptimizerRegistry.ignoredOptions("adamw8bit", options: a) == ["--variant", "--adam-lr"])
        #expect(OptimizerRegistry.ignoredOptions("adamw", options: OptimizerOptions()).isEmpty)
        // Options that do not resolve are `settings`' to report, not this list's.
        var bad = OptimizerOptions(); bad.rank = -1
        #expect(OptimizerRegistry.ignoredOptions("galore", options: bad).isEmpty)
    }

    @Test func recipeReplaysARun() throws {
        let m = try Micro.shared()
        let d = try m.scratch("recipe")
        defer { Files.remove(d) }
        let out = d.appendingPathComponent("replay")
        let r = try CLI.run(["train", "--recipe", m.baseRun.appendingPathComponent("run_config.json").path, "--out", out.path, "--sample-tokens", "0"])
        guard Promise.expectSuccess(r) else { return }
        Micro.expectSameLosses(Files.losses(out.appendingPathComponent("metrics.jsonl")),
                               Files.losses(m.baseRun.appendingPathComponent("metrics.jsonl")), "--recipe replay")
        // A run directory works as a recipe; flags override its values.
        let r2 = try CLI.run(["train", "--recipe", m.baseRun.path, "--steps", "3", "--out", d.appendingPathComponent("r2").path, "--sample-tokens", "0"])
        guard Promise.expectSuccess(r2) else { return }
        #expect(Files.losses(d.appendingPathComponent("r2/metrics.jsonl")).count == 3)
    }

    /// The README's table of per-method defaults is `subspace settings --table`'s output.
    @Test func readmeSettingsTableMatchesTheRegistry() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let begin = try #require(text.range(of: SettingsTable.begin), "README has no \(SettingsTable.begin)")
        let end = try #require(text.range(of: SettingsTable.end), "README has no \(SettingsTable.end)")
        let block = text[begin.upperBound..<end.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
        let table = try SettingsTable.markdown()
        #expect(block == table, "regenerate the README's table with `subspace settings --table`")
    }
}
}

/// Token caches live in the user's cache directory, never beside the data:
/// `$SUBSPACE_CACHE_DIR`, else `$XDG_CACHE_HOME/subspace`, else `~/.cache/subspace`.
@Suite(.serialized) struct CacheDirectoryTests {
    @Test func cacheDirectoryFollowsTheEnvironment() throws {
        let saved = (ProcessInfo.processInfo.environment["SUBSPACE_CACHE_DIR"], ProcessInfo.processInfo.environment["XDG_CACHE_HOME"])
        defer {
            if let v = saved.0 { setenv("SUBSPACE_CACHE_DIR", v, 1) } else { unsetenv("SUBSPACE_CACHE_DIR") }
            if let v = saved.1 { setenv("XDG_CACHE_HOME", v, 1) } else { unsetenv("XDG_CACHE_HOME") }
        }
        setenv("SUBSPACE_CACHE_DIR", "/tmp/sc-a", 1)
        #expect(PreparedData.cacheDirectory.path == "/tmp/sc-a")
        unsetenv("SUBSPACE_CACHE_DIR")
        setenv("XDG_CACHE_HOME", "/tmp/xdg-b", 1)
        #expect(PreparedData.cacheDirectory.path == "/tmp/xdg-b/subspace")
        unsetenv("XDG_CACHE_HOME")
        #expect(PreparedData.cacheDirectory.path == URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".cache/subspace").path)
    }
}

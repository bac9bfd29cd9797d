import Foundation
import Testing

/// The command-line tool turns every user mistake into one `error:` line and exit status 1.
/// Runs the `subspace` binary built next to the test bundle.
@Suite struct CLITests {
    static var binary: URL? {
        let dir = Bundle.module.bundleURL.deletingLastPathComponent()
        let url = dir.appendingPathComponent("subspace")
        return FileManager.default.isExecutableFile(atPath: url.path) ? url : nil
    }

    func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = try #require(Self.binary)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func tmp(_ name: String) -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-cli-\(name)-\(getpid())")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    @Test(arguments: [
        (["train", "--data", "/nonexistent/corpus"], "does not exist"),
        (["train", "--preset", "tiny", "--seq", "512", "--data", "/nonexistent"], "longer than"),
        (["train", "--lr=-1", "--data", "/nonexistent"], "learning rate"),
        (["train", "--optimizer", "nope"], "unknown optimizer"),
        (["bench", "--preset", "llama-nope"], "unknown preset"),
        (["bench", "--batch", "0"], "batch must be positive"),
        (["eval", "--checkpoint", "/nonexistent/ckpt", "--data", "/nonexistent"], "checkpoint"),
        (["sample", "--checkpoint", "/nonexistent/ckpt"], "checkpoint"),
        (["tokenizer", "encode", "--tokenizer", "/nonexistent.json", "--input", "x", "--out", "y.bin"], "nonexistent"),
        (["train", "--resume", "/nonexistent/run"], "cannot read"),
    ])
    func userErrorsAreOneLine(args: [String], fragment: String) throws {
        guard Self.binary != nil else { return }
        let r = try run(args)
        #expect(r.status == 1, "\(args): status \(r.status), stderr \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("error: "), "\(args): \(r.stderr)")
        #expect(r.stderr.contains(fragment), "\(args): \(r.stderr)")
    }

    @Test func corruptCheckpointAndNonUTF8Data() throws {
        guard Self.binary != nil else { return }
        let d = tmp("corrupt")
        defer { try? FileManager.default.removeItem(at: d) }
        let ck = d.appendingPathComponent("ckpt")
        try FileManager.default.createDirectory(at: ck, withIntermediateDirectories: true)
        try Data("{\"model_type\": \"llama\", \"hidden_size\": 32".utf8).write(to: ck.appendingPathComponent("config.json"))
        try Data([1, 2, 3]).write(to: ck.appendingPathComponent("model.safetensors"))
        let text = d.appendingPathComponent("bad.txt")
        try Data([0xC3, 0x28, 0xFF]).write(to: text)
        let r1 = try run(["eval", "--checkpoint", ck.path, "--data", text.path])
        #expect(r1.status == 1 && r1.stderr.hasPrefix("error: ") && r1.stderr.split(separator: "\n").count == 1, "\(r1.stderr)")
        let r2 = try run(["train", "--data", text.path, "--out", d.appendingPathComponent("run").path])
        #expect(r2.status == 1 && r2.stderr.contains("not valid UTF-8"), "\(r2.stderr)")
    }
}

/// The memory planner's total, runtime included, against the peak resident set of a real
/// `bench` run of the same binary (issue: within 10% on `tiny`), at the suite's batch 8 x 256.
/// The runtime line is about 8% of the total there, so leaving it out fails. (At batch 4 x 64
/// the per-layer case sat at the 10% edge: the transients of a step weigh more.)
@Suite struct MemoryPlanAgainstRSSTests {
    struct Numbers: Decodable {
        var total_bytes: Int?; var runtime_bytes: Int?; var peak_rss_bytes: Int?; var optimizer_state_bytes: Int?; var resident_file_bytes: Int?
    }

    func json(_ args: [String]) throws -> Numbers {
        let p = Process()
        p.executableURL = try #require(CLITests.binary)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(args)")
        return try JSONDecoder().decode(Numbers.self, from: data)
    }

    @Test(arguments: [["--optimizer", "adamw"], ["--optimizer", "galore", "--rank", "64"],
                      ["--optimizer", "galore", "--rank", "64", "--per-layer-update"]])
    func plannedTotalIsWithinTenPercentOfPeakRSS(flags: [String]) throws {
        guard CLITests.binary != nil else { return }
        let shape = ["--batch", "8", "--seq", "256"]
        let plan = try json(["memory", "--model", "tiny", "--json"] + shape + flags)
        let run = try json(["bench", "--preset", "tiny", "--steps", "2", "--warmup", "1", "--json"] + shape + flags)
        let total = Double(try #require(plan.total_bytes)), rss = Double(try #require(run.peak_rss_bytes))
        #expect(try #require(plan.runtime_bytes) > 0)
        #expect(abs(total / rss - 1) <= 0.10, "\(flags): planned \(total), peak RSS \(rss)")
    }

    /// Issue 4: with per-layer updates, GaLore's peak resident set is below AdamW's by the
    /// optimizer-state bytes it saves (gradients and activations are the same), less what a
    /// GaLore step holds (R and N of one matrix, 352 KB at rank 64, and LAPACK's workspace and
    /// stack; measured 0.3 MB in all) with slack for page granularity: 1 MiB.
    /// Code pages count apart: the SVD refresh pages in about 2 MB of the shared library's
    /// LAPACK code (`resident_file_bytes`), which is not the method's memory. Without the
    /// 32 KiB mmap threshold (`Tensor`) GaLore's 64 KiB state tensors shared the heap with a
    /// step's temporaries and the holes cost 4 MB: the test fails.
    @Test func perLayerGaLoreSavesItsStateBytesOfPeakRSS() throws {
        guard CLITests.binary != nil else { return }
        let common = ["bench", "--preset", "tiny", "--steps", "3", "--warmup", "1", "--json", "--per-layer-update"]
        let adamw = try json(common + ["--optimizer", "adamw"])
        let galore = try json(common + ["--optimizer", "galore", "--rank", "64"])
        let saved = try #require(adamw.optimizer_state_bytes) - (try #require(galore.optimizer_state_bytes))
        let lower = try #require(adamw.peak_rss_bytes) - (try #require(galore.peak_rss_bytes))
        let code = (galore.resident_file_bytes ?? 0) - (adamw.resident_file_bytes ?? 0)
        let working = 1 << 20
        #expect(saved > 0)
        #expect(lower + max(code, 0) + working >= saved,
                "peak RSS lower by \(lower) bytes (code pages \(code)) for \(saved) bytes less state")
    }
}

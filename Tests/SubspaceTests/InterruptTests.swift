import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT and SIGTERM through real signals (children start with the default disposition; see
/// `Child.spawn`): the run finishes its step, writes a checkpoint, prints
/// `interrupted at step N; continue with: subspace train --resume DIR` and exits 130 / 143;
/// `--resume DIR` then ends with the losses of an uninterrupted run, bit for bit. A second
/// SIGINT during the interrupt's save exits at once (130) and leaves the last published
/// checkpoint as it was.
extension Reliability {
@Suite struct InterruptTests {
    static let steps = 200

    @Test(arguments: [(SIGINT, Int32(130)), (SIGTERM, Int32(143))])
    func interruptSavesThenResumeMatchesAnUninterruptedRun(signal: Int32, status: Int32) throws {
        let m = try Micro.shared()
        let reference = try m.referenceLosses(steps: Self.steps)
        let d = try m.scratch("interrupt-\(signal)")
        defer { Files.remove(d) }
        let run = d.appendingPathComponent("run")
        let metrics = run.appendingPathComponent("metrics.jsonl")
        let ck = run.appendingPathComponent("checkpoint")

        // Interrupt a fresh run, then the resumed run, then finish.
        for (round, args) in [m.trainArgs(out: run, steps: Self.steps),
                              ["train", "--resume", run.path, "--steps", "\(Self.steps)", "--sample-tokens", "0"]].enumerated() {
            let doneBefore = Files.checkpointStep(ck) ?? 0
            let child = try Child.spawn(args)
            // Lines of the previous attempt beyond its checkpoint are truncated on resume;
            // wait for a step past them.
            let target = doneBefore + 6
            let reached = child.waitUntil(timeout: 30, interval: 300) { (Files.losses(metrics).keys.max() ?? 0) >= target }
            try #require(reached && child.isRunning, "round \(round): the run did not reach step \(target): \(child.stderrSoFar)")
            child.signal(signal)
            let r = child.wait(timeout: 30)
            try #require(!r.timedOut, "HANG after signal \(signal) — \(r)")
            try #require(r.signal == nil, "round \(round): killed by signal \(r.signal ?? 0) instead of saving and exiting \(status) — \(r)")
            #expect(r.exitStatus == status, "round \(round): \(r)")
            #expect(r.crashText == nil, "\(r)")
            let re = try NSRegularExpression(pattern: "^interrupted at step ([0-9]+); continue with: subspace train --resume (.+)$", options: .anchorsMatchLines)
            let lines = r.stderrLines.filter { $0.hasPrefix("interrupted at step") }
            #expect(lines.count == 1, "round \(round): \(lines.count) 'interrupted at step' lines — \(r)")
            guard let line = lines.first,
                  let match = re.firstMatch(in: line, range: NSRange(location: 0, length: (line as NSString).length)) else {
                Issue.record("round \(round): no line 'interrupted at step N; continue with: subspace train --resume DIR' — \(r)")
                return
            }
            let n = Int((line as NSString).substring(with: match.range(at: 1)))!
            let dir = (line as NSString).substring(with: match.range(at: 2))
            #expect(dir == run.path || URL(fileURLWithPath: dir).standardizedFileURL.path == run.standardizedFileURL.path,
                    "the line names '\(dir)', not the run directory \(run.path)")
            #expect(n >= target, "interrupted at step \(n), before the step \(target) already logged")
            #expect(Files.checkpointStep(ck) == n, "the checkpoint holds step \(Files.checkpointStep(ck) ?? -1), the message says \(n)")
            #expect(Files.losses(metrics).keys.max() == n, "metrics.jsonl ends at step \(Files.losses(metrics).keys.max() ?? -1), not \(n)")
        }
        let final = try CLI.run(["train", "--resume", run.path, "--steps", "\(Self.steps)", "--sample-tokens", "0"])
        try #require(Promise.expectSuccess(final))
        Micro.expectSameLosses(Files.losses(metrics), reference, "interrupted twice by signal \(signal), resumed")
    }

    /// A second SIGINT while the first one's checkpoint is being written exits at once with
    /// 130 and leaves the last published checkpoint (step 3) as it was. A wider model (hidden
    /// 256, 20 MB of weights and state) makes the save long enough to hit.
    @Test func secondSIGINTExitsAtOnceWithoutTouchingTheCheckpoint() throws {
        let m = try Micro.shared()
        let d = try m.scratch("second-sigint")
        defer { Files.remove(d) }
        let cfg = d.appendingPathComponent("medium.json")
        try Files.write(Micro.configJSON(hidden: 256, ffn: 688), cfg)
        let run = d.appendingPathComponent("run")
        let ck = run.appendingPathComponent("checkpoint")
        var args = m.trainArgs(out: run, steps: 100_000, extra: ["--stop-after", "3"])
        args[args.firstIndex(of: "--config")! + 1] = cfg.path
        try #require(Promise.expectSuccess(try CLI.run(args)))
        try #require(Files.checkpointStep(ck) == 3)
        let before = Files.snapshot(ck)

        let child = try Child.spawn(["train", "--resume", run.path, "--steps", "100000", "--sample-tokens", "0"])
        let metrics = run.appendingPathComponent("metrics.jsonl")
        try #require(child.waitUntil(timeout: 30) { (Files.losses(metrics).keys.max() ?? 0) >= 6 } && child.isRunning,
                     "the resumed run did not start: \(child.stderrSoFar)")
        let entries = Set((try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? [])
        child.signal(SIGINT)
        // The interrupt's save begins: a new checkpoint.* entry (its temporary directory).
        let saving = child.waitUntil(timeout: 20, interval: 50) {
            let now = Set((try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? [])
            return now.subtracting(entries).contains { $0.hasPrefix("checkpoint.") }
        }
        let stillRunning = child.isRunning
        let secondAt = Date()
        child.signal(SIGINT)
        let r = child.wait(timeout: 30)
        try #require(!r.timedOut, "HANG after the second SIGINT — \(r)")
        try #require(r.signal == nil, "killed by signal \(r.signal ?? 0) instead of exiting 130 — \(r)")
        try #require(saving && stillRunning, "the interrupt's save was not seen in progress (it ended first?) — \(r)")
        #expect(r.exitStatus == 130, "\(r)")
        #expect(r.crashText == nil, "\(r)")
        #expect(Date().timeIntervalSince(secondAt) < 5, "took \(Date().timeIntervalSince(secondAt)) s to exit after the second SIGINT")
        let after = Files.snapshot(ck)
        #expect(after == before, "the second SIGINT changed the published checkpoint: \(Files.diff(before, after))")
        // It still resumes.
        Promise.expectSuccess(try CLI.run(["train", "--resume", run.path, "--steps", "5", "--sample-tokens", "0"]))
    }
}
}

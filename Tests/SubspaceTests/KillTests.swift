import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `kill -9` at seeded random moments of a micro run that checkpoints every step: after a
/// fixed step plus a random delay, inside a save (its temporary directory exists), during the
/// swap (`checkpoint.old` exists), in the window after the swap before everything of the
/// checkpoint is in place, and between a step's metrics line and its save. Each of 8 chains
/// kills 6 times (48 kills, reproducible from the chain's seed); after every kill:
///
/// - `checkpoint/`, when it exists, is one complete unit: weights, config.json,
///   tokenizer.json, optimizer and trainer state (else `checkpoint.old` is, the fallback);
/// - the published checkpoint exists, its step never goes back, and it evaluates
///   (`subspace eval`, finite loss) and samples (`subspace sample`);
/// - `train --resume` continues (no stale lock, no leftover of the dead process in the way);
///
/// and the chain's last resume ends with the per-step losses of an uninterrupted run, bit for
/// bit. About 1-3 s per chain in release on 2 cores.
extension Reliability {
@Suite struct KillTests {
    static let steps = 40
    static let killsPerChain = 6
    static let checkpointFiles = ["model.safetensors", "config.json", "tokenizer.json", "optimizer.safetensors", "trainer_state.json"]

    enum Moment: CaseIterable {
        /// A random delay (0-15 ms) after a save finished: mostly inside the next save.
        case delay
        /// As soon as the save's temporary directory appears.
        case insideSave
        /// As soon as `checkpoint.old` appears (between the renames, or before its removal).
        case duringSwap
        /// As soon as `checkpoint/` exists without its tokenizer.json.
        case incompleteCheckpoint
        /// As soon as the next metrics line appears (step done, save not begun).
        case afterMetricsLine
    }

    struct KillRecord: CustomStringConvertible {
        var moment: Moment; var afterStep: Int; var seen: Bool; var published: Int?
        var description: String { "\(moment) after step \(afterStep)\(seen ? "" : " (moment not seen; killed at fallback)") -> checkpoint step \(published.map(String.init) ?? "none")" }
    }

    @Test(arguments: 0..<8) func killChain(chain: Int) throws {
        let m = try Micro.shared()
        let reference = try m.referenceLosses(steps: Self.steps)
        let d = try m.scratch("kill-chain-\(chain)")
        defer { Files.remove(d) }
        let run = d.appendingPathComponent("run")
        let ck = run.appendingPathComponent("checkpoint"), old = run.appendingPathComponent("checkpoint.old")
        let metrics = run.appendingPathComponent("metrics.jsonl")
        var rng = SeededRandom(seed: 0x5EED_0000 + UInt64(chain))
        var records: [KillRecord] = []
        var lastPublished = 0

        for k in 0..<Self.killsPerChain {
            let args = k == 0 ? m.trainArgs(out: run, steps: Self.steps, checkpointEvery: 1)
                              : ["train", "--resume", run.path, "--steps", "\(Self.steps)", "--sample-tokens", "0"]
            let moment = Moment.allCases[Int(rng.next() % UInt64(Moment.allCases.count))]
            let target = lastPublished + 1 + Int(rng.next() % 3)
            let delay = UInt32(rng.next() % 15_000)
            let child = try Child.spawn(args)
            // A save of step `target` has been published (trainer_state.json of checkpoint/).
            func publishedStep(atLeast s: Int) -> Bool { (Files.checkpointStep(ck) ?? 0) >= s }
            let reached = child.waitUntil(timeout: 30, interval: 300) { publishedStep(atLeast: target) }
            guard reached, child.isRunning else {
                let r = child.wait(timeout: 10)
                Issue.record("chain \(chain) kill \(k): the run did not reach step \(target) alive — \(r)")
                return
            }
            let linesAtTrigger = Files.lineCount(metrics)
            var polls = 0
            var seen = false
            func event() -> Bool {
                switch moment {
                case .delay: return false
                case .insideSave:
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []
                    return names.contains { $0.hasPrefix("checkpoint.tmp") }
                case .duringSwap: return Files.exists(old)
                case .incompleteCheckpoint:
                    return Files.exists(ck.appendingPathComponent("config.json")) && !Files.exists(ck.appendingPathComponent("tokenizer.json"))
                case .afterMetricsLine: return Files.lineCount(metrics) > linesAtTrigger
                }
            }
            if moment == .delay {
                usleep(delay); seen = true
            } else {
                seen = child.waitUntil(timeout: 20, interval: 50) {
                    if event() { return true }
                    polls += 1
                    return polls % 20 == 0 && publishedStep(atLeast: target + 2)
                } && event()
            }
            child.signal(SIGKILL)
            let r = child.wait(timeout: 10)
            guard r.signal == SIGKILL else {
                Issue.record("chain \(chain) kill \(k) (\(moment)): the run was not killed but ended first — \(r)")
                return
            }

            // The published checkpoint: complete, not older than before, usable.
            let publishedDir = Files.isDirectory(ck) ? ck : Files.isDirectory(old) ? old : nil
            var record = KillRecord(moment: moment, afterStep: target, seen: seen, published: nil)
            guard let pub = publishedDir else {
                Issue.record("chain \(chain) kill \(k) (\(moment)): DATA LOSS: no checkpoint after a kill past step \(target); run dir: \(Files.snapshot(run).keys.sorted())")
                return
            }
            let missing = Self.checkpointFiles.filter { !Files.exists(pub.appendingPathComponent($0)) }
            #expect(missing.isEmpty, "chain \(chain) kill \(k) (\(moment)): \(pub.lastPathComponent)/ exists without \(missing) (not one atomic unit)")
            let step = Files.checkpointStep(pub)
            record.published = step
            records.append(record)
            #expect((step ?? -1) >= lastPublished, "chain \(chain) kill \(k) (\(moment)): published step went back from \(lastPublished) to \(step ?? -1)")
            lastPublished = max(lastPublished, step ?? 0)

            let e = try CLI.run(["eval", "--checkpoint", ck.path, "--data", m.corpus.path, "--batch", "2", "--json"])
            if Promise.expectSuccess(e) {
                let loss = (try? JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])?["loss"] as? Double
                #expect(loss?.isFinite == true, "chain \(chain) kill \(k): eval loss \(String(describing: loss)) — \(e)")
            } else {
                Issue.record("chain \(chain) kill \(k) (\(moment)): the published checkpoint does not evaluate (\(records.last!))")
            }
            let s = try CLI.run(["sample", "--checkpoint", ck.path, "--prompt", "the ", "--tokens", "8"])
            if !Promise.expectSuccess(s) {
                Issue.record("chain \(chain) kill \(k) (\(moment)): the published checkpoint does not sample (\(records.last!))")
            }
        }

        print("RELIABILITY\tkill chain \(chain)\t\(records.map(\.description).joined(separator: "; "))")
        #expect(records.count == Self.killsPerChain, "chain \(chain): \(records.count) kills")
        let final = try CLI.run(["train", "--resume", run.path, "--steps", "\(Self.steps)", "--sample-tokens", "0"])
        guard Promise.expectSuccess(final) else {
            Issue.record("chain \(chain): the last resume failed after kills \(records)")
            return
        }
        #expect(Files.checkpointStep(ck) == Self.steps)
        Micro.expectSameLosses(Files.losses(metrics), reference, "chain \(chain) after kills \(records)")
    }
}
}

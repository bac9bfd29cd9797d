import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// Runs a `SuitePlan`: each job as a separate `subspace` process (so each peak RSS is its
/// own), skipping finished ones, and, with peers, the PyTorch peer of each training cell right
/// after it (alternating, so both see the same machine load). After every job the results,
/// report and figures are rewritten, so an interrupted suite (Ctrl-C) leaves a report of what
/// finished; finished cells are never touched, and an unfinished cell's directory is cleared
/// and the cell run again on the next invocation.
///
/// Reports progress through `events`; it never prints.
public final class SuiteRunner {
    public enum Event: Sendable {
        case status(String)
        case started(SuiteJob, index: Int, total: Int)
        case skipped(SuiteJob)
        case finished(SuiteJob, Suite.Result)
        case failed(SuiteJob, status: Int32)
        case peerStarted(SuiteJob)
        case peerFinished(SuiteJob, Suite.Result)
        case peerUnavailable(SuiteJob, reason: String)
        case peerFailed(SuiteJob, status: Int32)
    }

    /// How to run the PyTorch peer (`bench/peers/suite_peer.py`).
    public struct Peer: Sendable {
        public var python: String
        public var script: String
        public var threads: Int
        public init(python: String, script: String, threads: Int = Parallel.workers) {
            self.python = python; self.script = script; self.threads = threads
        }
    }

    public struct Outcome: Sendable {
        public var results: [Suite.Result]
        public var peers: [Suite.Result]
        public var failed: [String]
    }

    /// The suite stopped because a child was interrupted (SIGINT or SIGTERM).
    public struct Interrupted: Error, CustomStringConvertible {
        public var description: String { "interrupted; finished cells are kept, re-run the same command to continue" }
    }

    public let plan: SuitePlan
    public let executable: URL
    public let peer: Peer?
    /// The corpus `train` uses without `--data` (the peers need its token streams).
    public let defaultData: String

    public init(plan: SuitePlan, executable: URL, peer: Peer? = nil, defaultData: String) {
        self.plan = plan; self.executable = executable; self.peer = peer; self.defaultData = defaultData
    }

    /// Runs every unfinished job (none with `reportOnly`) and writes the report.
    @discardableResult
    public func run(reportOnly: Bool = false, events: (Event) -> Void = { _ in }) throws -> Outcome {
        let fm = FileManager.default
        try fm.createDirectory(at: plan.outURL, withIntermediateDirectories: true)
        if !reportOnly {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try AtomicFile.write(try enc.encode(plan.spec), to: plan.outURL.appendingPathComponent("suite.json"))
        }
        let jobs = plan.jobs()
        var outcome = Outcome(results: [], peers: [], failed: [])
        var failedBase: Set<String> = []
        var preparedPeers: Set<String> = []
        for (i, job) in jobs.enumerated() {
            if job.kind != .base, failedBase.contains(job.preset) { continue }
            var ran = false
            if plan.isFinished(job) {
                events(.skipped(job))
            } else if reportOnly {
                // Unfinished, or run with other flags (the suite's definition changed since):
                // not this cell's result until it runs again.
                continue
            } else {
                ran = true
                // Peers: the Subspace cell starts from the peer's initial weights too.
                if peer != nil, job.kind == .train, !preparedPeers.contains(job.preset) {
                    try preparePeerInputs(preset: job.preset, events: events)
                    preparedPeers.insert(job.preset)
                }
                events(.started(job, index: i + 1, total: jobs.count))
                let status = try launch(job)
                if status != 0 || !plan.isFinished(job) {
                    events(.failed(job, status: status))
                    outcome.failed.append(job.cell)
                    if job.kind == .base { failedBase.insert(job.preset) }
                    continue
                }
            }
            guard job.kind != .base, let r = plan.result(of: job) else { continue }
            outcome.results.append(r)
            if ran { events(.finished(job, r)) }
            if job.kind == .train, plan.spec.peers || reportOnly {
                if let p = plan.peerResult(of: job) {
                    outcome.peers.append(p)
                } else if let reason = plan.peerUnavailable(job) {
                    if !reportOnly { events(.peerUnavailable(job, reason: reason)) }
                } else if !reportOnly, let peer {
                    if !preparedPeers.contains(job.preset) {
                        try preparePeerInputs(preset: job.preset, events: events)
                        preparedPeers.insert(job.preset)
                    }
                    events(.peerStarted(job))
                    let status = try launchPeer(job, peer: peer)
                    if let p = plan.peerResult(of: job) {
                        outcome.peers.append(p)
                        events(.peerFinished(job, p))
                    } else if let reason = plan.peerUnavailable(job) {
                        events(.peerUnavailable(job, reason: reason))
                    } else {
                        events(.peerFailed(job, status: status))
                    }
                }
            }
            try SuiteReport.write(plan: plan, results: outcome.results, peers: outcome.peers)
        }
        try SuiteReport.write(plan: plan, results: outcome.results, peers: outcome.peers)
        return outcome
    }

    // MARK: Processes

    /// Runs a job's process; a `bench` job's JSON line becomes `bench.json`. Returns the exit
    /// status; throws `Interrupted` when the child died of SIGINT or SIGTERM.
    func launch(_ job: SuiteJob) throws -> Int32 {
        let fm = FileManager.default
        try? fm.removeItem(at: job.directory)
        try fm.createDirectory(at: job.directory, withIntermediateDirectories: true)
        try AtomicFile.write(try JSONEncoder().encode(job.signature), to: job.directory.appendingPathComponent(SuiteJob.commandFile))
        let p = Process()
        p.executableURL = executable
        p.arguments = job.arguments
        let pipe = Pipe()
        p.standardOutput = job.kind == .bench ? pipe : FileHandle.nullDevice
        try p.run()
        let out = job.kind == .bench ? pipe.fileHandleForReading.readDataToEndOfFile() : Data()
        p.waitUntilExit()
        try checkInterrupted(p)
        if p.terminationStatus == 0, job.kind == .bench {
            let line = String(decoding: out, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            guard (try? JSONDecoder().decode(BenchmarkResult.self, from: Data(line.utf8))) != nil else { return 1 }
            try AtomicFile.write(line + "\n", to: job.directory.appendingPathComponent(job.marker))
        }
        return p.terminationStatus
    }

    func checkInterrupted(_ p: Process) throws {
        if p.terminationReason == .uncaughtSignal, p.terminationStatus == SIGINT || p.terminationStatus == SIGTERM {
            throw Interrupted()
        }
    }

    /// The peer's arguments: where its inputs are, where its outputs go, then the Subspace
    /// cell's own `train` arguments, which it reads for the budget, schedule and optimizer.
    public func peerArguments(_ job: SuiteJob, peer: Peer) -> [String] {
        let data = plan.peerData(preset: job.preset)
        return [peer.script, "--init", plan.peerInit(preset: job.preset).path,
                "--train-tokens", data.appendingPathComponent("train.bin").path,
                "--val-tokens", data.appendingPathComponent("validation.bin").path,
                "--out", job.directory.path, "--cell", job.cell, "--suite", plan.spec.suite, "--preset", job.preset,
                "--threads", "\(peer.threads)", "--"] + job.arguments.dropFirst()
    }

    func launchPeer(_ job: SuiteJob, peer: Peer) throws -> Int32 {
        for f in [SuitePlan.peerResultFile, SuitePlan.peerMetricsFile, SuitePlan.peerNoneFile] {
            try? FileManager.default.removeItem(at: job.directory.appendingPathComponent(f))
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [peer.python] + peerArguments(job, peer: peer)
        p.standardOutput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = "\(peer.threads)"
        p.environment = env
        try p.run()
        p.waitUntilExit()
        try checkInterrupted(p)
        return p.terminationStatus
    }

    /// The peer's inputs for a preset: the initial weights (`pretrain`: the seed-0
    /// initialisation `train` would make, saved as safetensors; `finetune`: the base
    /// checkpoint) and the token streams Subspace trains and evaluates on (the same prepared,
    /// cached data), as uint16 (`.bin`) files.
    func preparePeerInputs(preset: String, events: (Event) -> Void) throws {
        let config = try LlamaConfig.preset(preset)
        let initDir = plan.peerInit(preset: preset)
        let fm = FileManager.default
        if plan.spec.suite == "pretrain", !fm.fileExists(atPath: initDir.appendingPathComponent(Checkpoint.modelFile).path) {
            events(.status("peer: initial weights of \(preset) in \(initDir.path)"))
            try Checkpoint.save(to: initDir, model: try LlamaModel(config: config, seed: 0))
        }
        let dir = plan.peerData(preset: preset)
        let train = dir.appendingPathComponent("train.bin"), val = dir.appendingPathComponent("validation.bin")
        if fm.fileExists(atPath: train.path), fm.fileExists(atPath: val.path) { return }
        guard config.vocab <= 65536 else { throw ConfigurationError("peers need a vocabulary of at most 65,536 tokens") }
        let prepared: PreparedData
        if plan.spec.suite == "finetune" {
            let tok = plan.baseCheckpoint(preset: preset).appendingPathComponent("tokenizer.json").path
            prepared = try PreparedData.prepare(data: plan.spec.finetuneData, tokenizer: tok, vocab: config.vocab)
        } else {
            prepared = try PreparedData.prepare(data: plan.spec.data ?? defaultData, tokenizer: nil, vocab: config.vocab,
                                                status: { events(.status("peer data: " + $0)) })
        }
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        try TokenFile.write(prepared.train, path: train.path)
        try TokenFile.write(prepared.validation, path: val.path)
    }
}

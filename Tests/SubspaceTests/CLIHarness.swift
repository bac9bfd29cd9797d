import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The reliability suites (`HostileInputTests`, `KillTests`, `InterruptTests`) run the built
/// `subspace` binary as a user would and check the README's promise: every user error ends
/// with exactly one `error:` line and exit status 1 (64 for argument parsing), never a trap or
/// a hang, and never damages the last good checkpoint. They are nested in this serialized
/// suite so that at most one child process runs at a time on a shared 2-core machine, and so
/// that the timing of signals and kills is not disturbed by sibling tests.
/// `swift test --filter Reliability` runs them all.
@Suite("Reliability", .serialized) enum Reliability {}

// MARK: - Results

/// What a child process did.
struct CLIResult: CustomStringConvertible {
    var args: [String]
    /// Exit status when the process exited, nil when a signal killed it.
    var exitStatus: Int32?
    /// The signal that killed the process (including our own SIGKILL after a timeout).
    var signal: Int32?
    /// The process ran past its time limit and was killed by the harness.
    var timedOut: Bool
    var stdout: String
    var stderr: String
    var seconds: Double

    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    var errorLines: [String] { stderrLines.filter { $0.hasPrefix("error:") } }

    /// Text that only a crash (trap, signal, runtime failure) prints.
    static let crashMarkers = ["Fatal error", "Stack dump", "Illegal instruction", "Segmentation fault",
                               "Trace/breakpoint", "Current stack trace", "Program crashed", "Bus error"]
    /// Foundation's error text, which must never reach the user.
    static let foundationMarkers = ["NSCocoaErrorDomain", "NSPOSIXErrorDomain", "Error Domain=", "NSUnderlyingError", "NSFilePath",
                                    "The operation could not be completed"]

    /// The line that says why the process trapped, or what stderr ended with.
    var headline: String {
        var line = stderrLines.first { $0.contains("Fatal error") || $0.contains("runtime failure") }
            ?? stderrLines.first { l in Self.crashMarkers.contains { l.contains($0) } } ?? stderrLines.last ?? "(no stderr)"
        if line.count > 200 { line = String(line.prefix(200)) + "..." }
        // Where a trap happened: the first frame in the project's sources.
        if signal != nil, let frame = stderrLines.first(where: { $0.contains("/Sources/") }),
           let at = frame.range(of: "/Sources/") {
            line += " @ " + String(frame[at.upperBound...]).prefix(90)
        }
        return line
    }

    var crashText: String? {
        let all = stdout + "\n" + stderr
        return Self.crashMarkers.first { all.contains($0) }
    }

    /// One line, for failure messages: the command, how it ended and the end of stderr.
    var outcome: String {
        if timedOut { return "HANG (killed after \(Int(seconds)) s)" }
        if let s = signal { return "CRASH (killed by signal \(s)\(s == SIGKILL ? " SIGKILL" : s == SIGTRAP ? " SIGTRAP" : s == SIGILL ? " SIGILL" : s == SIGSEGV ? " SIGSEGV" : s == SIGABRT ? " SIGABRT" : s == SIGINT ? " SIGINT" : s == SIGTERM ? " SIGTERM" : ""))" }
        return "exit \(exitStatus ?? -1)"
    }

    /// Long temporary paths in messages are shown relative to this prefix (the fixture root).
    nonisolated(unsafe) static var shortenPrefix: String?
    static func short(_ s: String) -> String {
        guard let p = shortenPrefix else { return s }
        return s.replacingOccurrences(of: p, with: "$TMP")
    }

    var description: String {
        let tail = stderrLines.suffix(4).map { $0.count > 300 ? String($0.prefix(300)) + "..." : $0 }.joined(separator: " | ")
        return Self.short("`subspace \(args.joined(separator: " "))` -> \(outcome); stderr: \(tail.isEmpty ? "(empty)" : tail)")
    }
}

// MARK: - Launching

/// Launches the `subspace` binary built next to the test bundle.
///
/// Children are started with `posix_spawn`, with SIGINT and SIGTERM reset to their default
/// disposition (`POSIX_SPAWN_SETSIGDEF`) and an empty signal mask: a background job of a
/// non-interactive shell (as in CI) starts with SIGINT ignored, children inherit that, and a
/// test of interrupt handling would otherwise test nothing. Each child runs under
/// `ulimit -v` (`CLI.addressSpaceLimitKiB`, 8 GiB) so that an input that makes the tool
/// allocate without checking fails in that child instead of swapping the shared machine, and
/// with `SUBSPACE_THREADS=1`. stdout and stderr go to files, so a chatty child never blocks on
/// a full pipe.
enum CLI {
    static let addressSpaceLimitKiB = 8 * 1024 * 1024
    static let defaultTimeout: Double = 60

    static var binary: URL? {
        let dir = Bundle.module.bundleURL.deletingLastPathComponent()
        let url = dir.appendingPathComponent("subspace")
        return FileManager.default.isExecutableFile(atPath: url.path) ? url : nil
    }

    /// Runs `subspace args...` to completion (or until `timeout`, then SIGKILL).
    static func run(_ args: [String], cwd: URL? = nil, timeout: Double = defaultTimeout, env: [String: String] = [:], launcher: [String] = []) throws -> CLIResult {
        try Child.spawn(args, cwd: cwd, env: env, launcher: launcher).wait(timeout: timeout)
    }
}

/// One running `subspace` process.
final class Child {
    let pid: pid_t
    let args: [String]
    let started = Date()
    private let outURL: URL, errURL: URL
    private var rawStatus: Int32?

    private init(pid: pid_t, args: [String], out: URL, err: URL) {
        self.pid = pid; self.args = args; self.outURL = out; self.errURL = err
    }

    struct SpawnError: Error, CustomStringConvertible { let description: String }

    /// `launcher` runs before the binary (`mpirun -np 2`): the binary becomes its argument.
    static func spawn(_ args: [String], cwd: URL? = nil, env: [String: String] = [:], launcher: [String] = []) throws -> Child {
        guard let bin = CLI.binary else {
            throw SpawnError(description: "the subspace binary is not next to the test bundle (build with --build-tests)")
        }
        let io = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-child-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: io, withIntermediateDirectories: true)
        let out = io.appendingPathComponent("stdout"), err = io.appendingPathComponent("stderr")

        // sh lowers the address-space limit, changes directory and execs the binary (same pid).
        let script = "ulimit -v \(CLI.addressSpaceLimitKiB) 2>/dev/null; cd \"$0\" || exit 121; exec \"$@\""
        let argv = ["/bin/sh", "-c", script, (cwd ?? io).path] + launcher + [bin.path] + args
        var environment = ProcessInfo.processInfo.environment
        environment["SUBSPACE_THREADS"] = "1"
        environment["OPENBLAS_NUM_THREADS"] = "1"
        for (k, v) in env { environment[k] = v }
        let envp = environment.map { "\($0.key)=\($0.value)" }

        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, out.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&fa, 2, err.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = envp.map { strdup($0) } + [nil]
        defer { cArgv.forEach { free($0) }; cEnv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, cArgv, cEnv)
        guard rc == 0 else { throw SpawnError(description: "posix_spawn failed: \(String(cString: strerror(rc)))") }
        return Child(pid: pid, args: args, out: out, err: err)
    }

    /// Whether the process still runs (reaps it when it has ended).
    var isRunning: Bool {
        if rawStatus != nil { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid { rawStatus = st; return false }
        return r == 0
    }

    func signal(_ s: Int32) { if rawStatus == nil { _ = kill(pid, s) } }

    var stderrSoFar: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }

    /// Waits for the process to end; after `timeout` seconds it is killed (SIGKILL) and the
    /// result says `timedOut`.
    func wait(timeout: Double = CLI.defaultTimeout) -> CLIResult {
        var timedOut = false
        while isRunning {
            if Date().timeIntervalSince(started) > timeout {
                timedOut = true
                _ = kill(pid, SIGKILL)
                var st: Int32 = 0
                while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
                rawStatus = st
                break
            }
            usleep(2_000)
        }
        let st = rawStatus ?? 0
        let low = st & 0x7f
        let exited = low == 0
        let result = CLIResult(
            args: args,
            exitStatus: exited ? (st >> 8) & 0xff : nil,
            signal: exited ? nil : low,
            timedOut: timedOut,
            stdout: String(decoding: (try? Data(contentsOf: outURL)) ?? Data(), as: UTF8.self),
            stderr: String(decoding: (try? Data(contentsOf: errURL)) ?? Data(), as: UTF8.self),
            seconds: Date().timeIntervalSince(started))
        try? FileManager.default.removeItem(at: outURL.deletingLastPathComponent())
        return result
    }

    /// Polls `condition` every `interval` microseconds until it holds (true), the process ends
    /// or `timeout` passes (false).
    @discardableResult
    func waitUntil(timeout: Double = 30, interval: UInt32 = 200, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            if !isRunning { return condition() }
            usleep(interval)
        }
        return false
    }

    deinit {
        if rawStatus == nil {
            _ = kill(pid, SIGKILL)
            var st: Int32 = 0
            _ = waitpid(pid, &st, 0)
        }
    }
}

// MARK: - The promise

enum Promise {
    /// Asserts the README's promise for a user error: exit status 1 (or 64 when `allowUsage`,
    /// for argument-parsing errors), exactly one `error:` line and it is the last line of
    /// stderr, no crash text, no Foundation error text, no hang. Returns whether all held.
    @discardableResult
    static func expectUserError(
        _ r: CLIResult, allowUsage: Bool = false, fragments: [String] = [], memoryError: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        userErrorProblems(r, allowUsage: allowUsage, fragments: fragments, memoryError: memoryError, sourceLocation: sourceLocation).isEmpty
    }

    /// As `expectUserError`, returning the broken parts of the promise (empty when it held).
    static func userErrorProblems(
        _ r: CLIResult, allowUsage: Bool = false, fragments: [String] = [], memoryError: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> [String] {
        var problems: [String] = []
        var ok: Bool { problems.isEmpty }
        func check(_ c: Bool, _ why: @autoclosure () -> String) {
            if !c { let w = why(); problems.append(w); Issue.record("\(w) — \(r)", sourceLocation: sourceLocation) }
        }
        check(!r.timedOut, "HANG")
        check(r.timedOut || r.signal == nil, "CRASH: killed by signal \(r.signal ?? 0)")
        check(r.crashText == nil, "CRASH text '\(r.crashText ?? "")' in output")
        if !r.timedOut && r.signal == nil {
            let okStatus: Set<Int32> = allowUsage ? [1, 64] : [1]
            check(okStatus.contains(r.exitStatus ?? -1), "exit status \(r.exitStatus ?? -1), expected \(allowUsage ? "1 or 64" : "1")")
        }
        check(r.errorLines.count == 1, "\(r.errorLines.count) `error:` lines, expected exactly 1")
        if let last = r.stderrLines.last, r.errorLines.count == 1 {
            check(last.hasPrefix("error:"), "the `error:` line is not the last line of stderr")
        }
        let all = r.stdout + r.stderr
        if let m = CLIResult.foundationMarkers.first(where: { all.contains($0) }) { check(false, "Foundation error text '\(m)' in output") }
        let line = r.errorLines.first ?? ""
        for f in fragments { check(line.contains(f), "the error line does not contain '\(f)'") }
        if memoryError {
            check(line.lowercased().contains("memory"), "the error line does not mention memory")
            let numbers = line.split(whereSeparator: { !$0.isNumber && $0 != "." }).filter { $0.contains(where: \.isNumber) }
            check(numbers.count >= 2, "the error line does not name both the needed and the available memory")
        }
        return problems
    }

    /// Asserts a successful run: exit 0, no `error:` line, no crash, no hang.
    @discardableResult
    static func expectSuccess(_ r: CLIResult, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let ok = !r.timedOut && r.signal == nil && r.exitStatus == 0 && r.errorLines.isEmpty && r.crashText == nil
        if !ok { Issue.record("expected success — \(r)", sourceLocation: sourceLocation) }
        return ok
    }
}

// MARK: - Files

enum Files {
    /// Every file under `url` (or `url` itself when it is a file) by relative path, as
    /// "size:FNV-1a-64" (regular files), "dir", "link:<target>" or "other". Empty when absent.
    static func snapshot(_ url: URL) -> [String: String] {
        var out: [String: String] = [:]
        func visit(_ u: URL, _ rel: String) {
            var st = stat()
            guard lstat(u.path, &st) == 0 else { return }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                out[rel.isEmpty ? "." : rel] = "dir"
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: u.path)) ?? []).sorted()
                // The run lock is the engine's own bookkeeping (a pid), not the user's data.
                for n in names where n != ".subspace.lock" { visit(u.appendingPathComponent(n), rel.isEmpty ? n : rel + "/" + n) }
            case S_IFREG:
                let d = (try? Data(contentsOf: u)) ?? Data()
                out[rel.isEmpty ? "." : rel] = "\(d.count):\(String(fnv1a(d), radix: 16))"
            case S_IFLNK:
                out[rel.isEmpty ? "." : rel] = "link:" + ((try? FileManager.default.destinationOfSymbolicLink(atPath: u.path)) ?? "?")
            default:
                out[rel.isEmpty ? "." : rel] = "other"
            }
        }
        visit(url, "")
        return out
    }

    static func fnv1a(_ d: Data) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        d.withUnsafeBytes { for b in $0 { h = (h ^ UInt64(b)) &* 0x100000001b3 } }
        return h
    }

    /// Describes how two snapshots differ ("" when equal).
    static func diff(_ a: [String: String], _ b: [String: String]) -> String {
        var parts: [String] = []
        for k in Set(a.keys).union(b.keys).sorted() where a[k] != b[k] {
            parts.append("\(k): \(a[k] ?? "absent") -> \(b[k] ?? "absent")")
        }
        return parts.prefix(8).joined(separator: "; ")
    }

    static func write(_ s: String, _ url: URL) throws { try write(Data(s.utf8), url) }
    static func write(_ d: Data, _ url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try d.write(to: url)
    }
    static func remove(_ url: URL) { try? FileManager.default.removeItem(at: url) }
    static func exists(_ url: URL) -> Bool { var st = stat(); return lstat(url.path, &st) == 0 }
    static func isDirectory(_ url: URL) -> Bool { var st = stat(); return stat(url.path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR }

    /// Number of complete lines in a file (0 when absent).
    static func lineCount(_ url: URL) -> Int {
        guard let d = FileManager.default.contents(atPath: url.path) else { return 0 }
        return d.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    }

    /// The `loss` of each step in a metrics.jsonl, by step (unparsable lines skipped).
    static func losses(_ metrics: URL) -> [Int: Double] {
        guard let d = FileManager.default.contents(atPath: metrics.path) else { return [:] }
        var out: [Int: Double] = [:]
        for line in String(decoding: d, as: UTF8.self).split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = (o["step"] as? NSNumber)?.intValue, let l = (o["loss"] as? NSNumber)?.doubleValue else { continue }
            out[s] = l
        }
        return out
    }

    /// `step` from a checkpoint's trainer_state.json.
    static func checkpointStep(_ checkpoint: URL) -> Int? {
        guard let d = FileManager.default.contents(atPath: checkpoint.appendingPathComponent("trainer_state.json").path),
              let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return nil }
        return (o["step"] as? NSNumber)?.intValue
    }

    /// Overwrites every float of the data section of a safetensors file with `bits`.
    static func poisonSafeTensors(_ url: URL, bits: UInt32) throws {
        var d = try Data(contentsOf: url)
        let n = d.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        var i = 8 + n
        while i + 4 <= d.count {
            withUnsafeBytes(of: bits.littleEndian) { d.replaceSubrange(i..<i + 4, with: $0) }
            i += 4
        }
        try d.write(to: url)
    }

    /// The JSON header of a safetensors file and the offset where its data starts.
    static func safeTensorsHeader(_ url: URL) throws -> (header: String, dataStart: Int) {
        let d = try Data(contentsOf: url)
        let n = d.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        return (String(decoding: d[8..<8 + n], as: UTF8.self), 8 + n)
    }

    /// Rewrites a safetensors file with a new header (same data section).
    static func replaceSafeTensorsHeader(_ url: URL, _ transform: (String) -> String) throws {
        let d = try Data(contentsOf: url)
        let (h, start) = try safeTensorsHeader(url)
        let newHeader = Data(transform(h).utf8)
        var out = Data()
        withUnsafeBytes(of: UInt64(newHeader.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(newHeader)
        out.append(d[start...])
        try out.write(to: url)
    }
}

/// A seeded generator (SplitMix64), so that "random" kill moments are reproducible.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}

// MARK: - A training setup that runs in about a second

/// A micro LLaMA (hidden 32, 2 layers, 4 heads / 2 KV heads, MLP 64, vocabulary 320, context
/// 32: 40 K parameters) on a synthetic 33 KB corpus with a 320-token BPE tokenizer, all
/// written by the tests under the temporary directory: no `../shared`, no network. A step of
/// 4 x 32 tokens takes about a millisecond; a checkpoint save (fsync'd) tens of milliseconds.
final class Micro: @unchecked Sendable {
    let root: URL
    let corpus: URL
    let tokenizer: URL
    /// Another tokenizer (vocabulary 300): different content, for resume mismatches.
    let otherTokenizer: URL
    let config: URL
    /// The same architecture with a 1,024-token context (for batch/memory cases).
    let wideConfig: URL
    /// A finished 6-step run (run_config.json, metrics.jsonl, tokenizer.json, checkpoint/);
    /// tests copy it, never change it.
    let baseRun: URL
    static let baseSteps = 6

    private static let made: Result<Micro, Error> = Result { try Micro() }
    static func shared() throws -> Micro { try made.get() }

    private let lock = NSLock()
    private var references: [Int: [Int: Double]] = [:]

    private init() throws {
        let fm = FileManager.default
        root = fm.temporaryDirectory.appendingPathComponent("subspace-reliability-\(getpid())-\(UUID().uuidString.prefix(8))")
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        CLIResult.shortenPrefix = root.path
        let data = root.appendingPathComponent("data")
        corpus = data.appendingPathComponent("corpus.txt")
        try Files.write(Self.syntheticText(lines: 800, seed: 1), corpus)
        config = root.appendingPathComponent("micro.json")
        try Files.write(Self.configJSON(), config)
        wideConfig = root.appendingPathComponent("micro-wide.json")
        try Files.write(Self.configJSON(maxSeq: 1024), wideConfig)
        tokenizer = root.appendingPathComponent("tokenizer.json")
        otherTokenizer = root.appendingPathComponent("tokenizer-300.json")
        for (url, vocab) in [(tokenizer, 320), (otherTokenizer, 300)] {
            let r = try CLI.run(["tokenizer", "train", "--data", corpus.path, "--vocab", "\(vocab)", "--out", url.path])
            guard r.exitStatus == 0 else { throw Child.SpawnError(description: "fixture tokenizer: \(r)") }
        }
        baseRun = root.appendingPathComponent("base-run")
        let r = try CLI.run(trainArgs(out: baseRun, steps: Self.baseSteps))
        guard r.exitStatus == 0, Files.exists(baseRun.appendingPathComponent("checkpoint/trainer_state.json")) else {
            throw Child.SpawnError(description: "fixture run: \(r)")
        }
    }

    static func configJSON(hidden: Int = 32, ffn: Int = 64, layers: Int = 2, heads: Int = 4, kvHeads: Int = 2, vocab: Int = 320, maxSeq: Int = 32) -> String {
        """
        {"model_type": "llama", "hidden_size": \(hidden), "intermediate_size": \(ffn), "num_hidden_layers": \(layers),
         "num_attention_heads": \(heads), "num_key_value_heads": \(kvHeads), "vocab_size": \(vocab),
         "max_position_embeddings": \(maxSeq), "rms_norm_eps": 1e-5, "initializer_range": 0.05}
        """
    }

    /// Sentences of common English words from a seeded generator.
    static func syntheticText(lines: Int, seed: UInt64) -> String {
        let words = ("the a of and to in is was that he she it with as for his her on be at by had not are but from or have an "
            + "they which one you were all we when there can who been has more if no out so said what up its about into than "
            + "them only other new some could time these two may then do first any my now such like our over man me even most "
            + "made after also did many before must through back years where much your way well down should because each just "
            + "those people how too little state good very make world still own see men work long get here between both life").split(separator: " ")
        var r = SeededRandom(seed: seed)
        var out = ""
        for _ in 0..<lines {
            let n = 5 + Int(r.next() % 8)
            out += (0..<n).map { _ in String(words[Int(r.next() % UInt64(words.count))]) }.joined(separator: " ") + ".\n"
        }
        return out
    }

    /// `train` of the micro model: batch 4 x 32, 2 warmup steps, evaluation only at the end
    /// (2 batches periodically, the whole split at the end), no sample.
    func trainArgs(out: URL, steps: Int, checkpointEvery: Int = 0, extra: [String] = []) -> [String] {
        ["train", "--config", config.path, "--data", corpus.path, "--tokenizer", tokenizer.path,
         "--steps", "\(steps)", "--batch", "4", "--seq", "32", "--warmup", "2", "--eval-every", "0",
         "--eval-batches", "2", "--checkpoint-every", "\(checkpointEvery)", "--sample-tokens", "0", "--seed", "0",
         "--out", out.path] + extra
    }

    /// A fresh, empty directory for one test.
    func scratch(_ name: String) throws -> URL {
        let safe = name.map { $0.isLetter || $0.isNumber ? $0 : "-" }
        let d = root.appendingPathComponent("t-\(String(safe).prefix(60))-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// A copy of the finished base run inside `dir`.
    func copyBaseRun(into dir: URL, name: String = "run") throws -> URL {
        let run = dir.appendingPathComponent(name)
        try FileManager.default.copyItem(at: baseRun, to: run)
        return run
    }

    /// Per-step losses of an uninterrupted run of `steps` steps (computed once per length).
    func referenceLosses(steps: Int) throws -> [Int: Double] {
        lock.lock(); defer { lock.unlock() }
        if let r = references[steps] { return r }
        let dir = try scratch("reference-\(steps)")
        let r = try CLI.run(trainArgs(out: dir.appendingPathComponent("run"), steps: steps))
        guard r.exitStatus == 0 else { throw Child.SpawnError(description: "reference run: \(r)") }
        let losses = Files.losses(dir.appendingPathComponent("run/metrics.jsonl"))
        guard losses.count == steps else { throw Child.SpawnError(description: "reference run logged \(losses.count) of \(steps) steps") }
        references[steps] = losses
        return losses
    }

    /// Records an issue for every step whose loss differs (bit for bit) from `reference`.
    static func expectSameLosses(_ got: [Int: Double], _ reference: [Int: Double], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        var bad: [String] = []
        for s in reference.keys.sorted() {
            guard let g = got[s] else { bad.append("step \(s) missing"); continue }
            if g.bitPattern != reference[s]!.bitPattern { bad.append("step \(s): \(g) vs \(reference[s]!)") }
        }
        for s in got.keys.sorted() where reference[s] == nil { bad.append("extra step \(s)") }
        if !bad.isEmpty {
            Issue.record("\(what): losses differ from the uninterrupted run: \(bad.prefix(6).joined(separator: "; "))", sourceLocation: sourceLocation)
        }
    }
}

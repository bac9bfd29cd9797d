import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceOptim
@testable import SubspaceTraining

/// `mpirun` as the tests start it: as root (CI) with Open MPI's consent variables, shared
/// memory between the ranks on this machine (`vader`, no kernel-assisted copy, which
/// containers often forbid), more ranks than cores allowed, no pinning to cores.
enum MPIRun {
    static let path: String? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map(String.init) + ["/usr/bin"]
        return dirs.map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
    static var available: Bool { path != nil }
    static func launcher(ranks: Int) -> [String] {
        [path ?? "mpirun", "-q", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"]
    }
    static let env = [
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_btl": "self,vader", "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
    ]
    static func run(ranks: Int, _ args: [String], timeout: Double = 120) throws -> CLIResult {
        try CLI.run(args, timeout: timeout, env: env, launcher: launcher(ranks: ranks))
    }
}

/// Data parallelism proved on the built binary: `mpirun -np 2 subspace train --batch B`
/// takes the same steps as `subspace train --batch 2B` (losses and final weights), for
/// full-gradient and SVD-projected methods, the per-layer update with gradient accumulation
/// included; its checkpoint resumes under one process; a dying rank or a bad flag ends the
/// job at once with an error. Skipped, saying so, when `mpirun` is not installed.
@Suite(.serialized, .enabled(if: MPIRun.available, "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"))
struct DataParallelTests {
    /// Single-process and two-rank runs of `steps` steps with `extra` flags; the two ranks
    /// get half the batch each.
    func pair(_ name: String, steps: Int = 20, _ extra: [String]) throws -> (one: URL, two: URL) {
        let m = try Micro.shared()
        let d = try m.scratch("dp-\(name)")
        let one = d.appendingPathComponent("one"), two = d.appendingPathComponent("two")
        let r1 = try CLI.run(m.trainArgs(out: one, steps: steps, extra: extra + ["--batch", "8"]))
        #expect(r1.exitStatus == 0, "\(r1)")
        let r2 = try MPIRun.run(ranks: 2, m.trainArgs(out: two, steps: steps, extra: extra + ["--batch", "4"]))
        #expect(r2.exitStatus == 0, "\(r2)")
        return (one, two)
    }

    /// Per-step losses equal within `tolerance` relative; final weights within
    /// `weightTolerance` (default `tolerance`; absolute below 1, relative above).
    func expectSameRun(_ one: URL, _ two: URL, steps: Int = 20, tolerance: Double, weightTolerance: Double? = nil) throws {
        let a = try MetricsLog.read(url: one.appendingPathComponent("metrics.jsonl"))
        let b = try MetricsLog.read(url: two.appendingPathComponent("metrics.jsonl"))
        try #require(a.count == steps && b.count == steps, "steps logged: \(a.count) and \(b.count)")
        for (x, y) in zip(a, b) {
            #expect(x.tokens == y.tokens, "step \(x.step): tokens \(x.tokens) vs \(y.tokens)")
            #expect(abs(x.loss - y.loss) <= tolerance * abs(x.loss), "step \(x.step): loss \(x.loss) vs \(y.loss)")
        }
        let ma = try Checkpoint.loadModel(from: one.appendingPathComponent("checkpoint"))
        let mb = try Checkpoint.loadModel(from: two.appendingPathComponent("checkpoint"))
        var worst = 0.0
        for (p, q) in zip(ma.parameters, mb.parameters) {
            for i in 0..<p.count {
                let u = Double(p.value.data[i]), v = Double(q.value.data[i])
                worst = max(worst, abs(u - v) / max(1, abs(u)))
            }
        }
        #expect(worst <= weightTolerance ?? tolerance, "final weights differ by \(worst)")
    }

    /// Tolerances: float AdamW 1e-5. GaLore and Fira take their projector from an SVD of the
    /// gradient, which amplifies the reduction's rounding: 2e-4. 8-bit AdamW's losses hold to
    /// 1e-5, but its weights amplify rounding too: a last-bit change in a moment flips its
    /// 8-bit code, which moves that weight by up to lr x a quantization step; on this setup
    /// a change of BLAS kernel alone (OPENBLAS_CORETYPE SkylakeX against Haswell, one
    /// process) moves the final weights by 5.3e-4, so they are held to 2e-3.
    @Test("2 ranks at batch 4 = 1 process at batch 8", arguments: [
        ("adamw", [] as [String], 1e-5, 1e-5),
        ("adamw8bit", ["--min-8bit-size", "256"], 1e-5, 2e-3),
        ("galore", ["--rank", "8", "--update-gap", "5"], 2e-4, 2e-4),
        ("fira", ["--rank", "8", "--update-gap", "5"], 2e-4, 2e-4),
    ])
    func twoRanksEqualOneProcess(_ method: String, _ flags: [String], _ tolerance: Double, _ weightTolerance: Double) throws {
        let (one, two) = try pair(method, ["--optimizer", method, "--lr", "3e-3", "--clip", "1"] + flags)
        try expectSameRun(one, two, tolerance: tolerance, weightTolerance: weightTolerance)
        // Every step all-reduced each trainable gradient once: the plan's payload.
        let config = try LlamaConfig(huggingFaceJSON: Data(contentsOf: try Micro.shared().config))
        let plan = CommunicationPlan(specs: config.parameterSpecs.filter(\.trainable), bytesPerElement: 4, ranks: 2)
        let logged = try MetricsLog.read(url: two.appendingPathComponent("metrics.jsonl")).map(\.comm_bytes)
        #expect(logged.allSatisfy { $0 == plan.allreduceBytes }, "comm_bytes \(Set(logged)) against \(plan.allreduceBytes)")
        #expect(try MetricsLog.read(url: one.appendingPathComponent("metrics.jsonl")).allSatisfy { $0.comm_bytes == nil })
    }

    @Test("communication plan: payload, ring traffic and the projected payloads in closed form")
    func communicationPlan() throws {
        let specs = [ParameterSpec(name: "model.layers.0.mlp.up_proj.weight", role: .mlp, shape: [64, 32]),
                     ParameterSpec(name: "model.norm.weight", role: .norm, shape: [32])]
        var o = OptimizerOptions(); o.rank = 8; o.updateGap = 4
        let p = CommunicationPlan(specs: specs, bytesPerElement: 4, ranks: 4, optimizer: try OptimizerRegistry.make("galore", options: o))
        let whole: Int = 64 * 32 + 32, r: Int = 64 * 8, basis: Int = 8 * 32
        #expect(p.allreduceBytes == whole * 4)
        #expect(p.ringBytesPerRank == 2 * 3 * whole)
        // up: R = 64 x 8 (the shorter side, 32, is projected); on a refresh step the whole
        // gradient and its 8 x 32 projector; the norm's gradient whole every step.
        let between: Int = r + 32, refresh: Int = whole + basis
        #expect(p.projectedBytes == between * 4)
        #expect(p.projectedRefreshBytes == refresh * 4)
        #expect(p.projectedMeanBytes == 3 * between + refresh)  // (3 between + 1 refresh) / 4 steps, x 4 bytes
        // A seeded projection (ProjFactor) sends R on refresh steps too; AdamW projects nothing.
        let seeded = CommunicationPlan(specs: specs, bytesPerElement: 4, ranks: 4, optimizer: try OptimizerRegistry.make("projfactor", options: o))
        #expect(seeded.projectedBytes == seeded.projectedRefreshBytes && seeded.projectedBytes == (64 * 8 + 32) * 4)
        #expect(CommunicationPlan(specs: specs, bytesPerElement: 4, ranks: 4, optimizer: try OptimizerRegistry.make("adamw", options: OptimizerOptions())).projectedBytes == nil)
        #expect(CommunicationPlan(specs: specs, bytesPerElement: 2, ranks: 1).ringBytesPerRank == 0)
    }

    /// `--dp-communication projected` (no clipping): GaLore all-reduces R between refreshes,
    /// the whole gradient and a broadcast P on refresh steps (every 5 steps here, so the
    /// broadcasts run on 4 steps, each step's SVDs split between rank 0 and rank 1);
    /// ProjFactor R on every step (seeded P, no broadcast); GaLore-Adafactor as GaLore;
    /// per-layer GaLore with accumulation hands each parameter its mean R as its all-reduce
    /// completes. Losses and weights as one process at the global batch (the SVD amplifies
    /// the summation order's rounding: held to 2e-4; on this setup the losses agree to 1e-7),
    /// and each step's measured bytes exactly the plan's.
    @Test("projected all-reduce: 2 ranks at batch 4 = 1 process at batch 8, bytes as planned", arguments: [
        ("galore", [] as [String], 2e-4),
        ("projfactor", [], 1e-5),
        ("galore-adafactor", [], 2e-4),
        ("galore", ["--per-layer-update", "--grad-accum", "2"], 2e-4),
    ])
    func projectedAllReduce(_ method: String, _ flags: [String], _ tolerance: Double) throws {
        let (one, two) = try pair("projected-\(method)\(flags.count)", ["--optimizer", method, "--lr", "3e-3", "--clip", "0",
            "--rank", "8", "--update-gap", "5", "--dp-communication", "projected"] + flags)
        try expectSameRun(one, two, tolerance: tolerance)
        let config = try LlamaConfig(huggingFaceJSON: Data(contentsOf: try Micro.shared().config))
        var o = OptimizerOptions(); o.rank = 8; o.updateGap = 5
        let plan = CommunicationPlan(specs: config.parameterSpecs.filter(\.trainable), bytesPerElement: 4, ranks: 2,
                                     optimizer: try OptimizerRegistry.make(method, options: o))
        let logged = try MetricsLog.read(url: two.appendingPathComponent("metrics.jsonl")).map(\.comm_bytes)
        let planned = (0..<20).map { $0 % 5 == 0 ? plan.projectedRefreshBytes : plan.projectedBytes }
        #expect(logged == planned, "measured \(logged), planned \(planned)")
        #expect(try #require(plan.projectedMeanBytes) < plan.allreduceBytes)
        let recorded = try String(contentsOf: two.appendingPathComponent("run_config.json"), encoding: .utf8)
        #expect(recorded.contains("\"dpCommunication\" : \"projected\"") && recorded.contains("2 ranks, projected all-reduce"), "\(recorded)")
    }

    @Test("launch environment: mpirun's variables, and threads so that ranks x threads = cores")
    func launchEnvironment() {
        let plain = LaunchEnvironment(environment: [:])
        #expect(plain == LaunchEnvironment(size: 1, rank: 0, localSize: 1) && !plain.isDistributed)
        let e = LaunchEnvironment(environment: ["OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"])
        #expect(e == LaunchEnvironment(size: 4, rank: 3, localSize: 2) && e.isDistributed)
        #expect(e.threadsPerRank(cores: 16) == 8)
        #expect(e.threadsPerRank(cores: 1) == 1)
    }

    /// The per-layer update steps each parameter once its all-reduce has run alongside the
    /// next parameter's backward; ProjFactor's earlier micro-batches go through its compressed
    /// accumulator, each gradient all-reduced (blocking) before it is handed over.
    @Test("per-layer updates with gradient accumulation over 2 ranks", arguments: [
        ("galore", ["--rank", "8", "--update-gap", "5"], 2e-4),
        ("adamw", ["--clip", "1"], 1e-5),
        ("projfactor", ["--rank", "8", "--update-gap", "5"], 1e-5),
    ])
    func perLayerWithAccumulation(_ method: String, _ flags: [String], _ tolerance: Double) throws {
        let (one, two) = try pair("per-layer-\(method)", ["--optimizer", method, "--per-layer-update", "--grad-accum", "2", "--lr", "3e-3"] + flags)
        try expectSameRun(one, two, tolerance: tolerance)
    }

    @Test("a 2-rank checkpoint resumes in one process")
    func resumeUnderOtherRankCount() throws {
        let m = try Micro.shared()
        let d = try m.scratch("dp-resume")
        let one = d.appendingPathComponent("one"), two = d.appendingPathComponent("two")
        let r1 = try CLI.run(m.trainArgs(out: one, steps: 20, extra: ["--batch", "8"]))
        #expect(r1.exitStatus == 0, "\(r1)")
        let r2 = try MPIRun.run(ranks: 2, m.trainArgs(out: two, steps: 20, extra: ["--batch", "4", "--stop-after", "10"]))
        #expect(r2.exitStatus == 0, "\(r2)")
        let r3 = try CLI.run(["train", "--resume", two.path, "--steps", "20", "--sample-tokens", "0"])
        #expect(r3.exitStatus == 0, "\(r3)")
        try expectSameRun(one, two, tolerance: 1e-5)
    }

    @Test("a rank killed mid-run ends the job")
    func killedRankEndsJob() throws {
        let m = try Micro.shared()
        let d = try m.scratch("dp-kill")
        let out = d.appendingPathComponent("run")
        let job = try Child.spawn(m.trainArgs(out: out, steps: 100_000, extra: ["--batch", "4"]), env: MPIRun.env, launcher: MPIRun.launcher(ranks: 2))
        let metrics = out.appendingPathComponent("metrics.jsonl")
        let start = Date()
        while (try? String(contentsOf: metrics, encoding: .utf8))?.count ?? 0 < 2000, Date().timeIntervalSince(start) < 60, job.isRunning {
            usleep(50_000)
        }
        let ranks = Self.children(of: job.pid)
        try #require(ranks.count == 2, "ranks of mpirun: \(ranks)")
        kill(ranks[1], SIGKILL)
        let r = job.wait(timeout: 30)
        #expect(!r.timedOut, "the job outlived its killed rank: \(r)")
        #expect(r.exitStatus != 0, "\(r)")
    }

    @Test("a run that cannot be split is one error line under mpirun")
    func refusedUnderMPI() throws {
        let m = try Micro.shared()
        let d = try m.scratch("dp-refuse")
        let r = try MPIRun.run(ranks: 2, m.trainArgs(out: d.appendingPathComponent("run"), steps: 4, extra: ["--trainer", "mezo"]), timeout: 60)
        #expect(r.exitStatus != 0 && !r.timedOut, "\(r)")
        #expect(r.errorLines.count == 1, "\(r)")
        #expect(r.errorLines.first?.contains("cannot run data-parallel") == true, "\(r)")
    }

    @Test("batch shards tile the global batch in order")
    func shards() throws {
        let b = TokenBatch(tokens: (0..<24).map(Int32.init), targets: (1..<25).map(Int32.init), batch: 6, seq: 4)
        let parts = (0..<3).map { DataParallel.shard(b, rank: $0, of: 3) }
        #expect(parts.map(\.batch) == [2, 2, 2])
        #expect(parts.flatMap(\.tokens) == b.tokens)
        #expect(parts.flatMap(\.targets) == b.targets)
    }

    /// The processes whose parent is `pid` (read from /proc).
    static func children(of pid: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { p in
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }.sorted()
    }
}

import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time training steps on random tokens and report speed and memory; with --suite, run a method comparison.")

    @Option(help: "Model preset: \(LlamaConfig.presetNames.joined(separator: ", ")).")
    var preset: String = "tiny"
    @Option(help: "Timed steps (default 20; with --suite, steps per cell, default: pretrain 2000, finetune 300, speed 10).")
    var steps: Int?
    @Option(help: "Run a suite: \(Suite.names.joined(separator: ", ")) (each cell a separate process; see --out).")
    var suite: String?
    @Option(help: "--suite: output directory (default runs/suite-<suite>); finished cells are skipped on a re-run.")
    var out: String?
    @OptionGroup(title: "Suite options") var suiteOptions: SuiteOptions
    @Option(help: "Untimed warmup steps.") var warmup: Int = 2
    @Option(help: "Sequences per micro-batch.") var batch: Int = 8
    @Option(help: "Sequence length (default: min(256, the preset's maximum)).") var seq: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Matrix products of the linear layers: fp32 or bf16 (needs AVX512-BF16 or AMX).") var precision: String = "fp32"
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var opt: OptimizerFlags
    @OptionGroup(title: "Adapters") var adapterFlags: AdapterFlags

    func run() throws {
        if LaunchEnvironment.current.isDistributed {
            fail("bench runs one process; time data-parallel training with mpirun ... subspace train (bench/mpi_throughput.sh)")
        }
        if let suite {
            let spec = guarded { try suiteOptions.spec(suite: suite, out: out ?? "runs/suite-\(suite)", steps: self.steps) }
            suiteOptions.run(spec: spec)
            return
        }
        if out != nil { fail("--out applies to --suite") }
        let timed = steps ?? 20
        let result: BenchmarkResult = guarded {
            let config = try LlamaConfig.preset(preset)
            let seqLen = seq ?? min(256, config.maxSeq)
            return try Benchmark.run(
                preset: preset, config: config, optimizerName: opt.optimizer ?? OptimizerRegistry.defaultName, options: try opt.options(),
                stepOptions: opt.stepOptions(), batch: batch, seq: seqLen, steps: timed, warmup: warmup, seed: seed,
                adapter: try adapterFlags.adapterSettings(existing: nil), precision: try MatmulPrecision(parsing: precision))
        }
        if let w = BLAS.backend.warning { warn(w) }
        if json {
            print(jsonLine(result))
        } else {
            print(String(format: "%@ %@: %.0f tokens/s, step %.1f ms (median %.1f): forward %.1f, backward %.1f, optimizer %.1f ms; peak RSS %.1f MiB, optimizer state %.1f MiB, loss %.4f",
                         result.preset, result.optimizer + (result.adapter.map { " + \($0)" } ?? "") + (precision == "fp32" ? "" : " \(precision)"), result.tokens_per_s, result.step_ms_mean, result.step_ms_median,
                         result.forward_ms, result.backward_ms, result.optimizer_ms, Double(result.peak_rss_bytes) / 1048576,
                         Double(result.optimizer_state_bytes) / 1048576, result.loss))
        }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Parameter counts and memory of a preset; the CPU, BLAS, kernel and measured GEMM rates.")
    @Option(help: "Model preset.") var preset: String = "tiny"
    @Option(help: "Sequences per batch (for activation memory).") var batch: Int = 8
    @Option(help: "Sequence length (default: min(256, the preset's maximum)).") var seq: Int?
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let c: LlamaConfig = guarded { try LlamaConfig.preset(preset) }
        let t = seq ?? min(256, c.maxSeq)
        guarded { try c.validate(batch: batch, seq: t) }
        let p = c.parameterCount
        let act = LlamaActivations.bytes(config: c, batch: batch, seq: t)
        let hw = HardwareInfo.measure()
        if json {
            print(jsonLine(InfoJSON(preset: preset, parameters: p, activation_bytes: act, batch: batch, seq: t, hardware: hw)))
            return
        }
        func gib(_ b: Int) -> String { String(format: "%.3f GiB", Double(b) / 1073741824) }
        print("preset \(preset): dim \(c.dim), layers \(c.layers), heads \(c.heads) (kv \(c.kvHeads)), ffn \(c.ffnDim), vocab \(c.vocab), max seq \(c.maxSeq)")
        print("parameters: \(p)")
        print("weights fp32: \(p * 4) bytes (\(gib(p * 4)))")
        print("gradients fp32: \(p * 4) bytes (\(gib(p * 4)))")
        print("AdamW state: \(p * 8) bytes (\(gib(p * 8)))")
        print("activations (batch \(batch), seq \(t)): \(act) bytes (\(gib(act)))")
        let cpu = CPU.current, blas = BLAS.backend
        print("cpu: \(cpu.summary), \(hw.cores) cores")
        print("vector extensions: \(hw.vector_extensions.isEmpty ? "none" : hw.vector_extensions.joined(separator: " "))")
        print("matrix extensions: \(hw.matrix_extensions.isEmpty ? "none" : hw.matrix_extensions.joined(separator: " "))")
        if !cpu.disabledExtensions.isEmpty {
            print("present but not enabled by the OS: \(cpu.disabledExtensions.joined(separator: " "))")
        }
        print("blas: \(blas.library)")
        print("kernel: \(blas.kernelDescription)")
        func rates(_ r: [BLAS.Rate]) -> String {
            r.map { String(format: "%d^3 %.1f GFLOP/s", $0.n, $0.gflops) }.joined(separator: ", ")
        }
        print("gemm fp32: \(rates(hw.gemm_fp32)) (\(Parallel.workers) workers)")
        if let bf = hw.gemm_bf16 {
            print("gemm bf16: \(rates(bf)) (\(Parallel.workers) workers, bf16 x bf16 -> fp32, oneDNN \(hw.bf16_kernel ?? "?"))")
        } else {
            print("gemm bf16: not available (\(BLAS.bf16Unavailable ?? "unknown"))")
        }
        if let w = blas.warning { warn(w) }
    }
}

/// `info --json`: the preset figures and `HardwareInfo`.
struct InfoJSON: Encodable {
    var preset: String
    var parameters: Int
    var activation_bytes: Int
    var batch: Int
    var seq: Int
    var hardware: HardwareInfo
}

/// The CPU, the BLAS and kernel in use, and measured product rates (`info`).
struct HardwareInfo: Encodable {
    var cpu: String
    var vendor: String
    var family: Int
    var model: Int
    var cores: Int
    var cpu_level: String
    var vector_extensions: [String]
    var matrix_extensions: [String]
    var blas: String
    var kernel: String?
    var kernel_level: String?
    /// "autodetected", "retargeted", "environment" or "fixed".
    var kernel_choice: String
    var retargeted_from: String?
    var simulated_generic: Bool
    var generic: Bool
    var warning: String?
    var gemm_fp32: [BLAS.Rate]
    /// nil where bf16 products do not run natively (`BLAS.hasBF16`).
    var gemm_bf16: [BLAS.Rate]?
    /// oneDNN's kernel for them ("brg:avx512_core_bf16", "brg:avx512_core_amx", ...).
    var bf16_kernel: String?

    /// Reads the CPU and BLAS and times fp32 (and bf16) products at 1024^3 and 2048^3 (about
    /// two seconds in all).
    static func measure() -> HardwareInfo {
        let cpu = CPU.current, b = BLAS.backend
        var choice = "autodetected", from: String?
        switch b.choice {
        case .autodetected: break
        case .retargeted(let f): choice = "retargeted"; from = f
        case .environment: choice = "environment"
        case .fixed: choice = "fixed"
        }
        let sizes = [1024, 2048]
        let fp32 = sizes.map { BLAS.measureSGEMM(n: $0, seconds: 0.4) }
        let bf16 = BLAS.hasBF16 ? sizes.compactMap { BLAS.measureBF16GEMM(n: $0, seconds: 0.4) } : nil
        return HardwareInfo(
            cpu: cpu.brand, vendor: cpu.vendor, family: cpu.family, model: cpu.model,
            cores: ProcessInfo.processInfo.activeProcessorCount, cpu_level: "\(cpu.level)",
            vector_extensions: cpu.vectorExtensions, matrix_extensions: cpu.matrixExtensions,
            blas: b.library, kernel: b.kernel, kernel_level: b.kernelLevel.map { "\($0)" }, kernel_choice: choice,
            retargeted_from: from, simulated_generic: b.simulated, generic: b.isGeneric, warning: b.warning,
            gemm_fp32: fp32, gemm_bf16: bf16, bf16_kernel: bf16 == nil ? nil : BLAS.bf16Implementation)
    }
}

import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// The products run the widest kernel the CPU has: CPU features decode correctly from cpuid,
/// the BLAS never runs a generic kernel on a CPU with AVX2, and the switch away from a generic
/// kernel works and still computes correct products.
@Suite struct KernelTests {
    /// cpuid leaves as a table; leaves not listed read as zeros, as on a CPU without them.
    func cpu(_ leaves: [UInt64: [UInt32]], xcr0: UInt64) -> CPU {
        CPU(cpuid: { leaf, sub in leaves[UInt64(leaf) << 32 | UInt64(sub)] ?? [0, 0, 0, 0] }, xcr0: xcr0)
    }
    func key(_ leaf: UInt32, _ sub: UInt32 = 0) -> UInt64 { UInt64(leaf) << 32 | UInt64(sub) }
    /// Brand-string leaves 0x8000_0002...4 holding `s` (48 bytes, NUL padded).
    func brand(_ s: String) -> [UInt64: [UInt32]] {
        var bytes = Array(s.utf8) + [UInt8](repeating: 0, count: 48)
        bytes = Array(bytes.prefix(48))
        var out: [UInt64: [UInt32]] = [key(0x8000_0000): [0x8000_0004, 0, 0, 0]]
        for l in 0..<3 {
            out[key(0x8000_0002 + UInt32(l))] = (0..<4).map { r in
                (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[l * 16 + r * 4 + $1]) << (8 * UInt32($1)) }
            }
        }
        return out
    }

    // Intel Xeon, family 6 model 207 (the machine where OpenBLAS 0.3.21 fell back to Prescott):
    // AVX-512 F/DQ/BW/VL, AVX512-BF16, AMX tile/bf16/int8.
    var emeraldRapids: [UInt64: [UInt32]] {
        var l: [UInt64: [UInt32]] = [
            key(0): [0x1F, 0x756E_6547, 0x6C65_746E, 0x4965_6E69],  // "Genu" "ntel" "ineI"
            key(1): [0x000C_06F2, 0, 1 << 12 | 1 << 27 | 1 << 28, 0],  // FMA, OSXSAVE, AVX
            key(7): [1, 1 << 5 | 1 << 16 | 1 << 17 | 1 << 30 | 1 << 31, 0, 1 << 22 | 1 << 24 | 1 << 25],
            key(7, 1): [1 << 5, 0, 0, 0],
        ]
        l.merge(brand("  INTEL(R) XEON(R) PLATINUM 8581C CPU @ 2.10GHz")) { a, _ in a }
        return l
    }

    @Test func decodesIntelFeaturesAndOSState() {
        let full = cpu(emeraldRapids, xcr0: 0x602E7)  // x87 SSE AVX opmask ZMM PKRU XTILECFG XTILEDATA
        #expect(full.vendor == "GenuineIntel" && full.isIntel && !full.isAMD)
        #expect(full.family == 6 && full.model == 207 && full.stepping == 2)
        #expect(full.brand == "INTEL(R) XEON(R) PLATINUM 8581C CPU @ 2.10GHz")
        #expect(full.level == .avx512)
        #expect(full.vectorExtensions == ["AVX", "FMA", "AVX2", "AVX-512F", "AVX-512BW", "AVX-512VL", "AVX-512DQ", "AVX512-BF16"])
        #expect(full.matrixExtensions == ["AMX-TILE", "AMX-BF16", "AMX-INT8"])
        #expect(full.disabledExtensions.isEmpty)

        // The OS saves YMM but not ZMM or tile state (a hypervisor hiding AVX-512): AVX2 only.
        let noZMM = cpu(emeraldRapids, xcr0: 0x7)
        #expect(noZMM.level == .avx2)
        #expect(noZMM.matrixExtensions.isEmpty)
        #expect(noZMM.disabledExtensions.contains("AVX-512F") && noZMM.disabledExtensions.contains("AMX-TILE"))

        // No XSAVE at all: nothing beyond SSE is usable.
        var noXSAVE = emeraldRapids
        noXSAVE[key(1)] = [0x000C_06F2, 0, 1 << 12 | 1 << 28, 0]
        #expect(cpu(noXSAVE, xcr0: 0x602E7).level == .generic)
    }

    @Test func decodesAMDFamilyAndModel() {
        // AMD EPYC, Zen 5: base family 0xF + extended 0xB = 26, model 2, stepping 1.
        var l: [UInt64: [UInt32]] = [
            key(0): [0x10, 0x6874_7541, 0x444D_4163, 0x6974_6E65],  // "Auth" "cAMD" "enti"
            key(1): [0x00B0_0F21, 0, 1 << 12 | 1 << 27 | 1 << 28, 0],
            key(7): [1, 1 << 5 | 1 << 16 | 1 << 17 | 1 << 30 | 1 << 31, 0, 0],
            key(7, 1): [1 << 5, 0, 0, 0],
        ]
        l.merge(brand("AMD EPYC")) { a, _ in a }
        let zen5 = cpu(l, xcr0: 0x2E7)
        #expect(zen5.isAMD && zen5.family == 26 && zen5.model == 2 && zen5.stepping == 1 && zen5.brand == "AMD EPYC")
        #expect(zen5.level == .avx512 && zen5.matrixExtensions.isEmpty)
        #expect(zen5.vectorExtensions.last == "AVX512-BF16")
        // Kernel candidates by features: AVX-512 first; Cooperlake only where the BLAS has sbgemm.
        #expect(BLASBackend.candidates(for: zen5, bf16GEMM: false) == ["SkylakeX", "Zen", "Haswell", "Sandybridge"])
        #expect(BLASBackend.candidates(for: zen5, bf16GEMM: true).first == "Cooperlake")
        // A Zen 2 style CPU (AVX2 + FMA, no AVX-512): the AVX2 kernels, Zen first on AMD.
        l[key(7)] = [0, 1 << 5, 0, 0]
        let zen2 = cpu(l, xcr0: 0x7)
        #expect(zen2.level == .avx2 && BLASBackend.candidates(for: zen2, bf16GEMM: true) == ["Zen", "Haswell", "Sandybridge"])
        // No cpuid (another architecture): nothing claimed.
        let none = cpu([:], xcr0: 0)
        #expect(none.vendor.isEmpty && none.brand.isEmpty && none.level == .generic && none.vectorExtensions.isEmpty)
    }

    @Test func kernelNamesByInstructionSet() {
        #expect(BLASBackend.level(ofKernel: "Prescott") == .generic)
        #expect(BLASBackend.level(ofKernel: "Nehalem") == .generic)
        #expect(BLASBackend.level(ofKernel: "Sandybridge") == .avx)
        #expect(BLASBackend.level(ofKernel: "Haswell") == .avx2 && BLASBackend.level(ofKernel: "ZEN") == .avx2)
        #expect(BLASBackend.level(ofKernel: "SkylakeX") == .avx512 && BLASBackend.level(ofKernel: "cooperlake") == .avx512)
        #expect(BLASBackend.level(ofKernel: "NeoverseN1") == nil)
    }

    /// On Linux, what cpuid says agrees with the kernel's own reading in /proc/cpuinfo.
    @Test func currentCPUAgreesWithProcCpuinfo() throws {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
        let flags = Set(flagsLine.split(separator: ":")[1].split(separator: " ").map(String.init))
        func field(_ name: String) -> Int? {
            text.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
        }
        let c = CPU.current
        #expect(c.family == field("cpu family") && c.model == field("model"))
        for (flag, feature) in [("avx2", CPU.Features.avx2), ("fma", .fma), ("avx512f", .avx512f), ("avx512bw", .avx512bw),
                                ("avx512vl", .avx512vl), ("avx512dq", .avx512dq), ("avx512_bf16", .avx512bf16),
                                ("amx_tile", .amxTile), ("amx_bf16", .amxBF16)] {
            #expect(flags.contains(flag) == c.usable.contains(feature), "\(flag)")
        }
    }

    /// The proof: on a CPU with AVX2 the kernel the BLAS reports (asked now, not our record of
    /// it) has AVX2 at least. Fails on an OpenBLAS left on its generic fallback (Prescott).
    @Test func avx2CPUNeverRunsGenericKernel() {
        BLAS.configure()
        let backend = BLAS.backend
        guard CPU.current.level >= .avx2, let corename = BLASBackend.Symbols.corename else { return }
        let reported = String(cString: corename())
        let level = BLASBackend.level(ofKernel: reported)
        #expect(level.map { $0 >= .avx2 } ?? true, "the BLAS reports \(reported) (\(backend.kernelDescription)) on a CPU with \(CPU.current.level)")
        #expect(!backend.isGeneric, "\(backend.warning ?? "")")
        // No warning unless OPENBLAS_CORETYPE holds the products below the CPU's best.
        if case .environment = backend.choice {} else { #expect(backend.warning == nil, "\(backend.warning ?? "")") }
        #expect(backend.kernel == reported)
    }

    /// Starting from the generic Prescott kernel on purpose (`SUBSPACE_BLAS_SIMULATE_GENERIC=1`,
    /// in a child process: the switch must happen before any product, so never in this one),
    /// `info` reports the switch to an AVX2 or AVX-512 kernel, and its products, checked against
    /// double-precision dot products, are right.
    @Test func simulatedGenericKernelIsReplaced() throws {
        guard let binary = CLITests.binary, CPU.current.level >= .avx2 else { return }
        let p = Process()
        p.executableURL = binary
        p.arguments = ["info", "--json"]
        var env = ProcessInfo.processInfo.environment
        env["SUBSPACE_BLAS_SIMULATE_GENERIC"] = "1"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && e.isEmpty, "\(String(decoding: e, as: UTF8.self))")
        let info = try #require(try JSONSerialization.jsonObject(with: o) as? [String: Any])
        let hw = try #require(info["hardware"] as? [String: Any])
        guard hw["kernel_choice"] as? String != "fixed" else { return }  // a BLAS that cannot switch
        #expect(hw["simulated_generic"] as? Bool == true)
        #expect(hw["kernel_choice"] as? String == "retargeted" && hw["retargeted_from"] as? String == "Prescott", "\(hw)")
        let kernel = try #require(hw["kernel"] as? String)
        #expect(BLASBackend.level(ofKernel: kernel).map { $0 >= .avx2 } == true, "\(kernel)")
        #expect(hw["generic"] as? Bool == false && hw["warning"] == nil)
        let rates = try #require(hw["gemm_fp32"] as? [[String: Any]])
        #expect(rates.count == 2)
        for r in rates {
            let err = try #require(r["maxRelativeError"] as? Double), rate = try #require(r["gflops"] as? Double)
            #expect(err < 1e-6 && rate > 0, "\(r)")
        }
    }
}

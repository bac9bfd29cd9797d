// What the processor can do, read from `cpuid` and XCR0 (through the CSupport target), so that
// the BLAS kernel is chosen by features rather than by model numbers (see `BLAS.backend`).
import CSupport

/// The processor this process runs on: vendor, family and model, brand string, and the vector
/// and matrix extensions that are both present (cpuid) and enabled by the operating system
/// (XCR0). On a processor without `cpuid` (Apple silicon, other architectures) every field is
/// empty and `level` is `.generic`: nothing here claims what it cannot see.
public struct CPU: Sendable, Equatable {
    /// The extensions that matter for matrix products, each as cpuid reports it.
    public struct Features: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let avx = Features(rawValue: 1 << 0)
        public static let fma = Features(rawValue: 1 << 1)
        public static let avx2 = Features(rawValue: 1 << 2)
        public static let avx512f = Features(rawValue: 1 << 3)
        public static let avx512bw = Features(rawValue: 1 << 4)
        public static let avx512vl = Features(rawValue: 1 << 5)
        public static let avx512dq = Features(rawValue: 1 << 6)
        public static let avx512bf16 = Features(rawValue: 1 << 7)
        public static let amxTile = Features(rawValue: 1 << 8)
        public static let amxBF16 = Features(rawValue: 1 << 9)
        public static let amxInt8 = Features(rawValue: 1 << 10)

        /// Display names in a fixed order (`info`).
        static let names: [(Features, String)] = [
            (.avx, "AVX"), (.fma, "FMA"), (.avx2, "AVX2"), (.avx512f, "AVX-512F"), (.avx512bw, "AVX-512BW"),
            (.avx512vl, "AVX-512VL"), (.avx512dq, "AVX-512DQ"), (.avx512bf16, "AVX512-BF16"),
            (.amxTile, "AMX-TILE"), (.amxBF16, "AMX-BF16"), (.amxInt8, "AMX-INT8"),
        ]
        static let matrix: Features = [.amxTile, .amxBF16, .amxInt8]
    }

    /// The widest vector instruction set the products can use, as ordered kernel families.
    public enum Level: Int, Comparable, Sendable, CustomStringConvertible {
        /// SSE2/SSE3 only (what OpenBLAS's Prescott, Core2, Nehalem, ... kernels use).
        case generic
        /// 256-bit AVX without FMA (Sandy Bridge, AMD Bulldozer family kernels).
        case avx
        /// AVX2 + FMA3 (Haswell, Zen kernels).
        case avx2
        /// AVX-512 F/BW/VL/DQ with ZMM state enabled (SkylakeX, Cooperlake kernels).
        case avx512

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        public var description: String { ["generic (SSE)", "AVX", "AVX2", "AVX-512"][rawValue] }
    }

    /// "GenuineIntel", "AuthenticAMD", ...; empty without cpuid.
    public var vendor: String
    /// The marketing name (cpuid 0x8000_0002...4), trimmed; empty if the CPU has none.
    public var brand: String
    /// Display family and model (base + extended fields, as Linux's /proc/cpuinfo shows them).
    public var family: Int
    public var model: Int
    public var stepping: Int
    /// Extensions the processor reports.
    public var present: Features
    /// Extensions that are present and whose register state the OS saves (usable).
    public var usable: Features

    public var isIntel: Bool { vendor == "GenuineIntel" }
    public var isAMD: Bool { vendor == "AuthenticAMD" || vendor == "HygonGenuine" }

    /// The best kernel family for this CPU's usable features.
    public var level: Level {
        if usable.isSuperset(of: [.avx512f, .avx512bw, .avx512vl, .avx512dq, .avx2, .fma]) { return .avx512 }
        if usable.isSuperset(of: [.avx2, .fma]) { return .avx2 }
        if usable.contains(.avx) { return .avx }
        return .generic
    }

    /// Usable vector extensions by name (AVX ... AVX512-BF16).
    public var vectorExtensions: [String] {
        Features.names.filter { usable.contains($0.0) && !Features.matrix.contains($0.0) }.map(\.1)
    }

    /// Usable matrix extensions by name (AMX-TILE, AMX-BF16, AMX-INT8); empty if none.
    public var matrixExtensions: [String] {
        Features.names.filter { usable.contains($0.0) && Features.matrix.contains($0.0) }.map(\.1)
    }

    /// Extensions the processor has but the OS has not enabled (e.g. AVX-512 under a
    /// hypervisor that hides ZMM state); they cannot be used.
    public var disabledExtensions: [String] {
        Features.names.filter { present.contains($0.0) && !usable.contains($0.0) }.map(\.1)
    }

    /// Decodes the processor from its cpuid leaves and XCR0.
    ///
    /// - Parameters:
    ///   - cpuid: `(leaf, subleaf) -> [EAX, EBX, ECX, EDX]`, all zeros for a leaf the CPU
    ///     does not have.
    ///   - xcr0: the OS-enabled state mask (0 when XSAVE is not enabled).
    public init(cpuid: (UInt32, UInt32) -> [UInt32], xcr0: UInt64) {
        func bit(_ r: UInt32, _ i: UInt32) -> Bool { r & (1 << i) != 0 }
        func chars(_ regs: [UInt32]) -> [UInt8] { regs.flatMap { r in (0..<4).map { UInt8(truncatingIfNeeded: r >> (8 * $0)) } } }

        let l0 = cpuid(0, 0)
        let maxLeaf = l0[0]
        vendor = String(decoding: chars([l0[1], l0[3], l0[2]]).filter { $0 != 0 }, as: UTF8.self)

        let l1 = maxLeaf >= 1 ? cpuid(1, 0) : [0, 0, 0, 0]
        let baseFamily = Int((l1[0] >> 8) & 0xF), baseModel = Int((l1[0] >> 4) & 0xF)
        family = baseFamily == 0xF ? baseFamily + Int((l1[0] >> 20) & 0xFF) : baseFamily
        model = baseFamily == 0x6 || baseFamily == 0xF ? baseModel | Int((l1[0] >> 16) & 0xF) << 4 : baseModel
        stepping = Int(l1[0] & 0xF)

        let l7 = maxLeaf >= 7 ? cpuid(7, 0) : [0, 0, 0, 0]
        let l71 = maxLeaf >= 7 && l7[0] >= 1 ? cpuid(7, 1) : [0, 0, 0, 0]
        var f: Features = []
        if bit(l1[2], 28) { f.insert(.avx) }
        if bit(l1[2], 12) { f.insert(.fma) }
        if bit(l7[1], 5) { f.insert(.avx2) }
        if bit(l7[1], 16) { f.insert(.avx512f) }
        if bit(l7[1], 17) { f.insert(.avx512dq) }
        if bit(l7[1], 30) { f.insert(.avx512bw) }
        if bit(l7[1], 31) { f.insert(.avx512vl) }
        if bit(l71[0], 5) { f.insert(.avx512bf16) }
        if bit(l7[3], 22) { f.insert(.amxBF16) }
        if bit(l7[3], 24) { f.insert(.amxTile) }
        if bit(l7[3], 25) { f.insert(.amxInt8) }
        present = f

        // XCR0: bits 1-2 SSE/AVX (YMM) state, 5-7 opmask/ZMM state, 17-18 AMX tile config/data.
        let osxsave = bit(l1[2], 27)
        let ymm = osxsave && xcr0 & 0b110 == 0b110
        let zmm = ymm && xcr0 & 0b1110_0000 == 0b1110_0000
        let tiles = osxsave && xcr0 & (0b11 << 17) == 0b11 << 17
        var u = f
        if !ymm { u.subtract([.avx, .fma, .avx2]) }
        if !zmm { u.subtract([.avx512f, .avx512bw, .avx512vl, .avx512dq, .avx512bf16]) }
        if !tiles { u.subtract(Features.matrix) }
        usable = u

        let maxExt = cpuid(0x8000_0000, 0)[0]
        if maxExt >= 0x8000_0004 {
            let bytes = chars((0x8000_0002...0x8000_0004).flatMap { cpuid(UInt32($0), 0) })
            let s = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            brand = s.split(separator: " ").joined(separator: " ")
        } else {
            brand = ""
        }
    }

    /// This machine's processor (read once).
    public static let current = CPU(
        cpuid: { leaf, sub in
            var r: [UInt32] = [0, 0, 0, 0]
            _ = r.withUnsafeMutableBufferPointer { subspace_cpuid(leaf, sub, $0.baseAddress) }
            return r
        },
        xcr0: subspace_xgetbv(0))

    /// One line: brand, vendor, family and model.
    public var summary: String {
        if vendor.isEmpty { return "unknown (no cpuid on this architecture)" }
        return "\(brand.isEmpty ? "unnamed" : brand) (\(vendor), family \(family) model \(model) stepping \(stepping))"
    }

    /// Asks the OS for AMX tile-data permission for this process (Linux 5.16+; required
    /// before the first AMX instruction). Returns nil on success, else the errno (-1 where
    /// the platform has no such request).
    public static func requestAMXPermission() -> Int32? {
        let r = subspace_request_amx_permission()
        return r == 0 ? nil : r
    }
}

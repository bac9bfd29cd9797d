import ArgumentParser
import Foundation
import Subspace
import SubspaceBench

/// `subspace tt-bench`: CoMERA's contraction orders against the dense GEMM, per slot shape
/// and row count (`ContractionBench`).
struct TTBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tt-bench",
        abstract: "Time CoMERA's two TT contraction orders (forward + backward) against the dense GEMM of each slot shape; show which order the FLOP rule picks and whether it was the faster.")

    @Option(help: "Comma-separated presets whose slot shapes are timed.") var presets: String = "tiny"
    @Option(help: "Comma-separated token rows per call (1: a sampled token; batch x seq: a training step).") var rows: String = "1,256,2048"
    @Option(help: "Timed passes per case; the best is kept (after one untimed).") var repeats: Int = 3
    @Option(help: "Random seed of the cores and inputs.") var seed: UInt64 = 0
    @Option(name: .customLong("tsv"), help: "Also write the table to this file (tab-separated, with a header).") var tsv: String?
    @OptionGroup(title: "CoMERA shape (--tt-rank, --tt-modes)") var comera: ComeraFlags

    func run() throws {
        // Everything is checked before the first line is printed.
        let (settings, counts, configs): (ComeraSettings, [Int], [(String, LlamaConfig)]) = guarded {
            var a = AdapterSettings(method: .comera)
            try comera.apply(to: &a)
            try a.comeraSettings.validate()
            let counts = try rows.split(separator: ",").map { s -> Int in
                guard let n = Int(s.trimmingCharacters(in: .whitespaces)), n >= 1 else {
                    throw ConfigurationError("--rows takes comma-separated row counts of at least 1 (got '\(rows)')")
                }
                return n
            }
            guard repeats >= 1 else { throw ConfigurationError("--repeats must be at least 1 (got \(repeats))") }
            return (a.comeraSettings, counts, try presets.split(separator: ",").map { (String($0), try LlamaConfig.preset(String($0))) })
        }
        var lines = [ContractionBench.tsvHeader]
        print(ContractionBench.tsvHeader)
        for (name, config) in configs {
            let rs: [ContractionBench.Row] = guarded {
                try ContractionBench.measure(preset: name, config: config, settings: settings, rows: counts, repeats: repeats, seed: seed) {
                    print(ContractionBench.tsvLine($0))
                }
            }
            lines += rs.map(ContractionBench.tsvLine)
        }
        if let tsv { guarded { try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: URL(fileURLWithPath: tsv)) } }
    }
}

import ArgumentParser
import Foundation
import Subspace
import SubspaceExperimental

/// `subspace nano-egg`: int8 EGGROLL pre-training of the EGG byte-level model
/// (`NanoEggTrainer`, experimental), with bits per byte against unigram and bigram
/// baselines on the same validation bytes.
struct NanoEggCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nano-egg",
        abstract: "Experimental: int8 EGGROLL pre-training of nano-egg's EGG byte-level model; bits per byte vs unigram and bigram.")

    @Option(help: "Text file or directory of .txt works (default: the Shakespeare corpus).") var data: String?
    @Option(help: "Generations (default 300).") var steps: Int?
    @Option(help: "Members per generation, even (default 128).") var population: Int?
    @Option(help: "Model width (default 64, at most 256).") var width: Int?
    @Option(help: "Layers (default 2).") var layers: Int?
    @Option(help: "Bytes per window (default 64).") var seq: Int?
    @Option(name: .customLong("sigma-shift"), help: "Perturbation shift: sigma = 2^-sigma-shift (default 4).") var sigmaShift: Int?
    @Option(help: "Threshold schedule exponent alpha (default 4).") var alpha: Double?
    @Option(help: "Threshold schedule horizon in steps (default 1000).") var horizon: Int?
    @Option(help: "Random seed (default 0).") var seed: UInt64?
    @Option(name: .customLong("eval-every"), help: "Evaluate every N generations (default: at the end only).") var evalEvery: Int?
    @Option(name: .customLong("eval-windows"), help: "Validation windows evaluated (default 128).") var evalWindows: Int?
    @Option(help: "Write the curve (step, seconds, train and validation bits per byte) as TSV here.") var out: String?

    func run() throws {
        var s = NanoEggSettings()
        if let steps { s.steps = steps }
        if let population { s.population = population }
        if let width { s.width = width }
        if let layers { s.layers = layers }
        if let seq { s.seq = seq }
        if let sigmaShift { s.sigmaShift = sigmaShift }
        if let alpha { s.alpha = alpha }
        if let horizon { s.horizon = horizon }
        if let seed { s.seed = seed }
        if let evalWindows { s.evalWindows = evalWindows }
        let settings = s
        if let evalEvery, evalEvery < 1 { fail("--eval-every must be at least 1, got \(evalEvery)") }
        let trainer: NanoEggTrainer = guarded {
            try settings.validate()
            let (train, validation) = try TextCorpus.load(path: data ?? defaultData()).split()
            return try NanoEggTrainer(settings: settings, train: Array(train.utf8), validation: Array(validation.utf8))
        }
        let base = trainer.baselines()
        print(String(format: "nano-egg: %d parameters (width %d, %d layers), population %d, %d bytes per window; validation baselines: unigram %.3f, bigram %.3f bits/byte",
                     trainer.model.parameterCount, s.width, s.layers, s.population, s.seq, base.unigram, base.bigram))
        var rows = ["step\tseconds\ttrain_bits_per_byte\tval_bits_per_byte\tthreshold\tmoved"]
        let start = Date()
        func record(_ step: Int, _ g: NanoEggTrainer.Generation?) {
            let v = trainer.evaluate(), t = Date().timeIntervalSince(start)
            rows.append("\(step)\t\(String(format: "%.1f", t))\t\(g.map { String(format: "%.4f", $0.trainBits) } ?? "")\t\(String(format: "%.4f", v))\t\(g?.threshold ?? 0)\t\(g?.moved ?? 0)")
            print(String(format: "step %d (%.0f s): validation %.3f bits/byte%@", step, t, v, g.map { String(format: ", population %.3f on its windows, %d weights moved", $0.trainBits, $0.moved) } ?? ""))
        }
        record(0, nil)
        for i in 1...max(1, s.steps) where s.steps > 0 {
            let g = trainer.generation()
            if i == s.steps || (evalEvery.map { i % $0 == 0 } ?? false) { record(i, g) }
        }
        if let out {
            guarded { try (rows.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8) }
        }
    }
}

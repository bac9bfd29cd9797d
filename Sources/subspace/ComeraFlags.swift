import Foundation
import ArgumentParser
import Subspace

/// `--parametrization comera`'s flags; they fill `AdapterSettings.comera`
/// (`ComeraSettings`, where the defaults live and are justified).
struct ComeraFlags: ParsableArguments {
    private static let d = ComeraSettings()

    @Option(name: .customLong("tt-rank"), help: "CoMERA: largest internal tensor-train rank (default \(d.rank)).") var rank: Int?
    @Option(name: .customLong("tt-modes"), help: "CoMERA: modes per side of each TT-matrix (default 3 when a slot's smaller side is >= 512, else 2).") var modes: Int?
    @Option(name: .customLong("gate-threshold"), help: "CoMERA: rank gates with |g| below this are pruned (default \(SettingText.number(d.threshold))).") var threshold: Float?
    @Option(name: .customLong("comera-lambda"), help: "CoMERA: weight of the gates' L1 penalty in the early stage (default \(SettingText.number(d.lambda))).") var lambda: Float?
    @Option(name: .customLong("comera-penalty"), help: "CoMERA: mean (the reference's rank_loss) or sum (the paper's L1 norm) over the active gates (default mean).") var penalty: String?
    @Option(name: .customLong("comera-late-start"), help: "CoMERA: steps of the early stage before the late stage's size/loss switch (default two thirds of --steps, fixed at the first run: a resume keeps it).") var lateStart: Int?
    @Option(name: .customLong("target-compression"), help: "CoMERA late stage: target size as dense slot parameters / X (default: \(SettingText.number(Float(d.targetRatio))) x the size at the switch).") var targetCompression: Double?
    @Option(name: .customLong("target-loss"), help: "CoMERA late stage: target training loss (default: the training loss's moving average at the switch).") var targetLoss: Double?
    @Option(name: .customLong("gate-lr-scale"), help: "CoMERA: the gates' learning rate over --lr (default \(SettingText.number(ComeraSettings.defaultGateLearningRateScale)), the reference's 1e-3 against 1e-4).") var gateScale: Float?
    @Flag(name: .customLong("tt-embedding"), help: "CoMERA: the token embedding as a TT-matrix with gated ranks, pruned for good (the paper's TTM embedding; default off, a dense table).") var ttEmbedding = false
    @Option(name: .customLong("tt-embedding-rank"), help: "CoMERA: largest internal rank of the TT embedding (default \(ComeraSettings.Embedding().rank), the reference's).") var embeddingRank: Int?
    @Option(name: .customLong("tt-embedding-modes"), help: "CoMERA: the TT embedding's vocabulary and dimension modes, e.g. 8,8,8,8/4,4,4,4 (default \(ComeraSettings.Embedding.order) balanced modes per side, the vocabulary padded up to a product).") var embeddingModes: String?
    @Option(name: .customLong("tt-contraction"), help: "CoMERA: sequential, dense, or auto (the fewer FLOPs for each shape and batch) (default auto).") var contraction: String?

    var anyGiven: Bool {
        rank != nil || modes != nil || threshold != nil || lambda != nil || penalty != nil || lateStart != nil
            || targetCompression != nil || targetLoss != nil || contraction != nil || gateScale != nil
            || ttEmbedding || embeddingRank != nil || embeddingModes != nil
    }

    /// Lays the given flags over `a`'s CoMERA settings.
    func apply(to a: inout AdapterSettings) throws {
        guard anyGiven else { return }
        guard a.method == .comera else { throw ConfigurationError("--tt-rank, --target-compression and the other CoMERA flags need --parametrization comera") }
        var s = a.comeraSettings
        if let rank { s.rank = rank }
        if let modes { s.modes = modes }
        if let threshold { s.threshold = threshold }
        if let lambda { s.lambda = lambda }
        if let penalty { s.penalty = try ZerothOrderFlags.choice(ComeraSettings.Penalty.self, "--comera-penalty", penalty) }
        if let lateStart { s.lateStart = lateStart }
        if let targetCompression { s.targetCompression = targetCompression }
        if let targetLoss { s.targetLoss = targetLoss }
        if let gateScale { s.gateLearningRateScale = gateScale }
        if let contraction { s.contraction = contraction == "auto" ? nil : try ZerothOrderFlags.choice(TensorTrainContraction.self, "--tt-contraction", contraction) }
        if embeddingRank != nil || embeddingModes != nil, !ttEmbedding {
            throw ConfigurationError("--tt-embedding-rank and --tt-embedding-modes need --tt-embedding")
        }
        if ttEmbedding {
            var e = s.embedding ?? ComeraSettings.Embedding()
            if let embeddingRank { e.rank = embeddingRank }
            if let embeddingModes { (e.vocabModes, e.dimModes) = try Self.modes(embeddingModes) }
            s.embedding = e
        }
        a.comera = s
    }

    /// "8,8,8,8/4,4,4,4": the vocabulary's modes, then the dimension's.
    static func modes(_ text: String) throws -> ([Int], [Int]) {
        let sides = text.split(separator: "/", omittingEmptySubsequences: false)
        let parsed = sides.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) } }
        guard parsed.count == 2, parsed.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 != nil } }) else {
            throw ConfigurationError("--tt-embedding-modes takes the vocabulary's modes, '/', then the dimension's, e.g. 8,8,8,8/4,4,4,4 (got '\(text)')")
        }
        return (parsed[0].map { $0! }, parsed[1].map { $0! })
    }
}

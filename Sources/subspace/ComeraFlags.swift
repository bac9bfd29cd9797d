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
    @Option(name: .customLong("comera-late-start"), help: "CoMERA: steps of the early stage before the late stage's size/loss switch (default two thirds of --steps).") var lateStart: Int?
    @Option(name: .customLong("target-compression"), help: "CoMERA late stage: target size as dense slot parameters / X (default: \(SettingText.number(Float(d.targetRatio))) x the size at the switch).") var targetCompression: Double?
    @Option(name: .customLong("target-loss"), help: "CoMERA late stage: target training loss (default: the training loss's moving average at the switch).") var targetLoss: Double?
    @Option(name: .customLong("gate-lr-scale"), help: "CoMERA: the gates' learning rate over --lr (default \(SettingText.number(ComeraSettings.defaultGateLearningRateScale)), the reference's 1e-3 against 1e-4).") var gateScale: Float?
    @Option(name: .customLong("tt-contraction"), help: "CoMERA: sequential, dense, or auto (the fewer FLOPs for each shape and batch) (default auto).") var contraction: String?

    var anyGiven: Bool {
        rank != nil || modes != nil || threshold != nil || lambda != nil || penalty != nil || lateStart != nil
            || targetCompression != nil || targetLoss != nil || contraction != nil || gateScale != nil
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
        a.comera = s
    }
}

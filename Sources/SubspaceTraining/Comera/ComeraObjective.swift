import Foundation
import SubspaceCore
import SubspaceModels

/// A term of the training objective besides the cross-entropy that acts on gradients: the
/// backprop step tells it the step's loss once every forward pass of the step has run (before
/// the last backward pass), then hands it each parameter's complete gradient before clipping
/// and the update, in normal and per-layer mode alike.
public protocol GradientObjective: AnyObject {
    /// `step` is the number of steps done before this one; `loss` the step's mean cross-entropy.
    func begin(step: Int, loss: Float)
    /// Turns dCE/dp into dL/dp in place.
    func adjust(_ parameter: Parameter)
    /// A factor on the learning rate of `parameter` (1 for most; CoMERA's gates train faster).
    func learningRateMultiplier(for parameter: Parameter) -> Float
}

/// CoMERA's two-stage objective (`ComeraSettings`), as gradients:
///
///     early:  dL = dCE + lambda dR
///     late:   dL = (a + 1 - l) dCE + (b + l) dR,  l = 1[(CE - L*) / CE < (S - S*) / S]
///
/// with R over the active gates of every TT slot and of the TTM embedding (`--tt-embedding`), dR/dg = sign(g) (divided by the number of
/// active gates for the `mean` penalty) on active gates and 0 on pruned ones; the count, S and
/// l are taken once per step, before any parameter moves. At the first late step it fixes S*
/// (`targetCompression`, else `targetRatio` times the size then) and L* (`targetLoss`, else
/// the debiased moving average of the training loss, decay `lossDecay`). That average, S* and
/// L* are its state (`exportState`), so a resumed run continues bit for bit.
public final class ComeraObjective: GradientObjective {
    public let settings: ComeraSettings
    /// The first late step (steps done before it). Resolved once, at a run's first step
    /// (`ComeraSettings.lateStart(steps:)`), and kept in the checkpoint: a run resumed with
    /// another `--steps` keeps it, and a different `--comera-late-start` is refused.
    public private(set) var lateStart: Int
    /// The TT slots and the TTM embedding.
    let operators: [any TensorTrainGated]
    /// Each gate tensor's train and cut.
    let gateOwners: [String: (op: any TensorTrainGated, cut: Int)]
    let denseSize: Int

    /// Decay of the training-loss average that sets the default target loss (about the last
    /// 20 steps).
    public static let lossDecay: Float = 0.95

    // State.
    var lossAverage: Float = 0
    var lossSteps: Float = 0
    var sizeAtSwitch: Float = .nan
    var switchLoss: Float = .nan

    // This step's coefficients.
    private(set) var crossEntropyScale: Float = 1
    private(set) var penaltyWeight: Float = 0
    private var perGate: Float = 0
    /// l of the last late step, nil in the early stage.
    public private(set) var lateIndicator: Float?

    public init(model: LlamaModel, settings: ComeraSettings, steps: Int) throws {
        try settings.validate()
        operators = model.tensorTrains
        guard !model.tensorTrainOperators.isEmpty else { throw ConfigurationError("CoMERA's objective needs tensor-train slots (--parametrization comera)") }
        self.settings = settings
        lateStart = settings.lateStart(steps: steps)
        var owners: [String: (op: any TensorTrainGated, cut: Int)] = [:]
        for op in operators { for (k, g) in op.gates.enumerated() { owners[g.name] = (op, k) } }
        gateOwners = owners
        denseSize = operators.reduce(0) { $0 + $1.denseParameterCount }
        penaltyWeight = settings.lambda
    }

    /// S: core parameters over the surviving ranks.
    public var size: Int { operators.reduce(0) { $0 + $1.activeParameterCount } }

    /// Gates above the threshold, over every slot.
    var activeGates: Int { operators.reduce(0) { $0 + $1.activeRanks.reduce(0, +) } }

    /// The late stage's targets (S*, L*), once it has begun.
    public var targets: (size: Float, loss: Float)? {
        guard !sizeAtSwitch.isNaN else { return nil }
        let s = settings.targetCompression.map { Float(Double(denseSize) / $0) } ?? Float(settings.targetRatio) * sizeAtSwitch
        return (s, switchLoss)
    }

    public func begin(step: Int, loss: Float) {
        lossSteps += 1
        lossAverage = Self.lossDecay * lossAverage + (1 - Self.lossDecay) * loss
        let count = activeGates
        if step >= lateStart {
            if sizeAtSwitch.isNaN {
                sizeAtSwitch = Float(size)
                switchLoss = settings.targetLoss.map { Float($0) } ?? lossAverage / (1 - pow(Self.lossDecay, lossSteps))
            }
            let (targetSize, targetLoss) = targets!
            let s = Float(size)
            let l: Float = s > 0 && (loss - targetLoss) / loss < (s - targetSize) / s ? 1 : 0
            lateIndicator = l
            crossEntropyScale = ComeraSettings.lateLossWeight + 1 - l
            penaltyWeight = ComeraSettings.lateRankWeight + l
        } else {
            lateIndicator = nil
            crossEntropyScale = 1
            penaltyWeight = settings.lambda
        }
        perGate = count == 0 ? 0 : penaltyWeight / (settings.penalty == .mean ? Float(count) : 1)
    }

    /// `ComeraSettings.gateLearningRateScale` for the gates, 1 for everything else.
    public func learningRateMultiplier(for p: Parameter) -> Float {
        gateOwners[p.name] != nil ? settings.gateLearningRateScale : 1
    }

    public func adjust(_ p: Parameter) {
        guard let g = p.grad else { return }
        if crossEntropyScale != 1 { for i in 0..<g.count { g.data[i] *= crossEntropyScale } }
        guard perGate != 0, let (op, k) = gateOwners[p.name] else { return }
        let v = p.value.data
        for i in 0..<p.count where op.isActive(gate: k, rank: i) {
            g.data[i] += v[i] > 0 ? perGate : -perGate
        }
    }

    // MARK: - State

    static let averageKey = "comera/loss_average", switchKey = "comera/switch", lateStartKey = "comera/late_start"

    /// (average, steps), (size, loss) at the switch (NaN before it) and the late stage's
    /// first step (a float: exact up to 2^24 steps).
    public func exportState() -> [String: Tensor] {
        [Self.averageKey: Tensor(shape: [2], values: [lossAverage, lossSteps]),
         Self.switchKey: Tensor(shape: [2], values: [sizeAtSwitch, switchLoss]),
         Self.lateStartKey: Tensor(shape: [1], values: [Float(lateStart)])]
    }

    /// - Throws: `ConfigurationError` when the state is incomplete, or when
    ///   `--comera-late-start` asks for another late-stage start than the run's. A checkpoint
    ///   from before the start was recorded keeps the start the settings give.
    public func importState(_ state: [String: Tensor]) throws {
        let a = try StepRuleState.tensor(state, Self.averageKey, shape: [2])
        let s = try StepRuleState.tensor(state, Self.switchKey, shape: [2])
        try StepRuleState.noExtra(state, known: [Self.averageKey, Self.switchKey, Self.lateStartKey])
        if state[Self.lateStartKey] != nil {
            let saved = Int(try StepRuleState.tensor(state, Self.lateStartKey, shape: [1]).data[0])
            if let asked = settings.lateStart, asked != saved {
                throw ConfigurationError("--comera-late-start \(asked) differs from this run's late-stage start, step \(saved) (fixed at its first run)")
            }
            lateStart = saved
        }
        lossAverage = a.data[0]; lossSteps = a.data[1]
        sizeAtSwitch = s.data[0]; switchLoss = s.data[1]
    }
}

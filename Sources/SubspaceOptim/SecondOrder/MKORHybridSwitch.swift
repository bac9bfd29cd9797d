import SubspaceCore
import SubspaceModels

/// MKOR-H's switch from MKOR to its first-order inner rule (Mozaffari et al., NeurIPS 2023:
/// MKOR-H "falls back to a first-order optimizer when the second-order updates stop
/// accelerating convergence"). The paper gives no formula and the reference code has none, so
/// the rule here is this project's, stated in full:
///
/// The step losses are averaged over consecutive windows of `window` steps, M_1, M_2, ...;
/// at the end of window k >= 2 the relative decrease rate is r_k = (M_{k-1} - M_k) / M_{k-1}.
/// The first time r_k < `threshold`, the optimizer switches for the rest of the run: factors
/// are dropped (their memory freed), no statistics are gathered, and the inner rule steps the
/// raw gradient (Adam inner: AdamW with the moments MKOR built, so there is no restart).
///
/// Defaults: a window of 50 steps (long enough that batch-to-batch noise, about 0.1 nats on
/// `tiny`, averages out to under 0.02) and a threshold of 0.02, a 2% loss decrease per window:
/// second-order preconditioning pays off early, when the loss falls fast; once the
/// decrease per 50 steps drops below 2% the cheaper first-order steps take over.
///
/// The switch state is part of the checkpoint (`encode`), so a resumed run switches at the
/// same step.
public struct MKORHybridSwitch: Equatable, Sendable {
    public var window: Int
    public var threshold: Float
    /// Whether the switch has happened.
    public private(set) var switched = false
    /// Losses seen when it switched (the step it switched after), -1 before.
    public private(set) var switchStep = -1
    /// Losses seen.
    public private(set) var seen = 0
    private var count = 0
    private var sum: Float = 0
    private var previousMean: Float = .nan

    public static let defaultWindow = 50
    public static let defaultThreshold: Float = 0.02

    public init(window: Int = defaultWindow, threshold: Float = defaultThreshold) {
        self.window = window; self.threshold = threshold
    }

    /// The relative decrease of two consecutive window means: (previous - current) / previous.
    public static func rate(previous: Float, current: Float) -> Float { (previous - current) / previous }

    /// Takes one step's loss; switches when a window ends with a decrease rate under the
    /// threshold.
    public mutating func observe(_ loss: Float) {
        seen += 1
        guard !switched else { return }
        sum += loss
        count += 1
        guard count == window else { return }
        let mean = sum / Float(window)
        if previousMean.isFinite, MKORHybridSwitch.rate(previous: previousMean, current: mean) < threshold {
            switched = true
            switchStep = seen
        }
        previousMean = mean
        sum = 0
        count = 0
    }

    /// Checkpoint key of the state.
    public static let key = "mkor_h_switch"

    /// [switched, switchStep, seen, count, sum, previousMean] (counts exact below 2^24).
    public func encode() -> Tensor {
        Tensor(shape: [6], values: [switched ? 1 : 0, Float(switchStep), Float(seen), Float(count), sum, previousMean])
    }

    /// The inverse of `encode`, keeping `window` and `threshold` (the run's settings).
    public func decoded(_ t: Tensor, parameter: Parameter) throws -> MKORHybridSwitch {
        let v = t.array
        func count(_ x: Float, _ what: String) throws -> Int {
            guard x >= -1, x <= 16_777_216, x == x.rounded() else {
                throw OptimizerStateError.invalidValue(parameter: parameter.name, key: Self.key, reason: "\(what) \(x) is not a count")
            }
            return Int(x)
        }
        guard v.count == 6, v[0] == 0 || v[0] == 1 else {
            throw OptimizerStateError.invalidValue(parameter: parameter.name, key: Self.key, reason: "not a switch state")
        }
        var s = self
        s.switched = v[0] == 1
        s.switchStep = try count(v[1], "switch step")
        s.seen = try count(v[2], "steps seen")
        s.count = try count(v[3], "window count")
        guard s.count >= 0, s.count < window else {
            throw OptimizerStateError.invalidValue(parameter: parameter.name, key: Self.key, reason: "window count \(s.count) does not fit a window of \(window)")
        }
        s.sum = v[4]
        s.previousMean = v[5]
        return s
    }
}

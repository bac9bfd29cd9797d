import SubspaceCore

/// The settings of the int8 nano-egg experiment (`NanoEgg`), one place for every default.
///
/// Defaults and where they come from (`ESHyperscale/nano-egg`, `run.py`, `Args`):
/// - `sigmaShift` 4: the reference's; perturbations are `(x B) A^T >> (4 + sigmaShift)`,
///   so sigma = 2^-4 in the weights' fixed point.
/// - `alpha` 4 and `horizon` 1000: the threshold schedule
///   `alpha_t = 1 / ((2^alpha - 1) t / horizon + 1)`, the reference's `alpha` and
///   `num_epochs` (its schedule runs over the whole run, 1,000 epochs by default).
/// - `rank` 1: the reference's (its update is marked "TODO: fix for rank > 1").
/// - `width` 64, `layers` 2, `population` 128, `seq` 64: scaled down from the reference's
///   256, 6, 1,024 per GPU and 100 tokens per update so that a generation takes well under
///   a second on two CPU cores (the research notes' "smallest test": 2 layers, d = 128).
/// - `steps` 300, `seed` 0, `evalWindows` 128 windows of `seq` bytes of the validation
///   split: enough for a bits-per-byte figure within about 0.05 bits.
public struct NanoEggSettings: Codable, Equatable, Sendable {
    public var width = 64
    public var layers = 2
    public var population = 128
    public var seq = 64
    public var steps = 300
    public var sigmaShift = 4
    public var alpha: Double = 4
    public var horizon = 1000
    public var rank = 1
    public var seed: UInt64 = 0
    public var evalWindows = 128

    public init() {}

    /// Refuses impossible values in one line naming the flag.
    public func validate() throws {
        guard width >= 1, width <= 256 else {
            // 4 width inputs of 127 x 127 must sum exactly in float32 (below 2^24).
            throw ConfigurationError("--width must be between 1 and 256, got \(width)")
        }
        guard layers >= 1 else { throw ConfigurationError("--layers must be at least 1, got \(layers)") }
        guard population >= 2, population % 2 == 0 else {
            throw ConfigurationError("--population must be a positive even number (antithetic pairs), got \(population)")
        }
        guard seq >= 1 else { throw ConfigurationError("--seq must be at least 1, got \(seq)") }
        guard steps >= 0 else { throw ConfigurationError("--steps must be non-negative, got \(steps)") }
        guard sigmaShift >= 0, sigmaShift <= 16 else { throw ConfigurationError("--sigma-shift must be between 0 and 16, got \(sigmaShift)") }
        guard alpha > 0, alpha.isFinite else { throw ConfigurationError("--alpha must be positive, got \(alpha)") }
        guard horizon >= 1 else { throw ConfigurationError("--horizon must be at least 1, got \(horizon)") }
        guard rank >= 1 else { throw ConfigurationError("--rank must be at least 1, got \(rank)") }
        guard evalWindows >= 1 else { throw ConfigurationError("--eval-windows must be at least 1, got \(evalWindows)") }
    }
}

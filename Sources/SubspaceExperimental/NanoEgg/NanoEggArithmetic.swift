import Foundation

/// The fixed-point arithmetic of nano-egg's int8 EGG model (`ESHyperscale/nano-egg`,
/// `run.py`): values are int8 in [-127, 127] with 4 fractional bits (2^4 = 16 is 1.0),
/// sums are int32 (here Int, exact), and every rounding is a floor (`>>`, `//`). Tensors
/// hold these integers as Float, which is exact (|v| <= 127) and lets a matrix product run
/// through float32 BLAS exactly while its sums stay below 2^24 (`NanoEggSettings.validate`).
public enum NanoEggMath {
    /// Fractional bits of the fixed point (`FIXED_POINT`).
    public static let fixedPoint = 4
    public static let maxValue = 127

    @inline(__always) public static func clip(_ v: Int) -> Int { max(-maxValue, min(maxValue, v)) }

    /// Python's `//`: the floor of a / b (b > 0).
    @inline(__always) public static func floorDiv(_ a: Int, _ b: Int) -> Int {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// A matrix product's output from its int32 sum `base` and, when perturbed, its
    /// low-rank term `pert = (x B) A^T`: `clip((base + pert >> (4 + sigmaShift)) //
    /// (16 floor(sqrt(in))))` (`do_mm`; the division keeps the output's scale at 2^4 for
    /// N(0, 16^2) weights).
    @inline(__always) public static func matmulOutput(base: Int, pert: Int, sigmaShift: Int, divisor: Int) -> Int {
        clip(floorDiv(base + (pert >> (fixedPoint + sigmaShift)), divisor))
    }

    /// `16 * floor(sqrt(in))`, the product's divisor.
    public static func divisor(inFeatures: Int) -> Int { (1 << fixedPoint) * Int(Double(inFeatures).squareRoot()) }

    /// EGG's layer norm: `clip((x_j w_j) // a)` with `a = max(1, sum |x|) // n` (`EGG_LN`,
    /// through its division table).
    /// When sum |x| < n the reference divides by 0 (its table's row 0); here by 1.
    public static func layerNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) {
        var s = 0
        for j in 0..<n { s += abs(Int(x[j])) }
        let d = max(1, max(1, s) / n)
        for j in 0..<n { out[j] = Float(clip(floorDiv(Int(x[j]) * Int(w[j]), d))) }
    }

    /// `EXP2TABLE[l] = int(2^(l / 16) 16)` for l in 0...255.
    public static let exp2Table: [Int] = (0..<256).map { Int(Foundation.exp2(Double($0) / 16) * 16) }

    /// `LOG2TABLE[s - 1] = int(log2(s / 16) 16)`.
    @inline(__always) public static func log2Fixed(_ s: Int) -> Int { Int(Foundation.log2(Double(s) / 16) * 16) }

    /// The integer log-likelihood (`get_int_ll`), in 1/16 bits: with l = logits + 128,
    /// `l[target] - LOG2TABLE[sum_j EXP2TABLE[l_j] - 1]`.
    public static func intLogLikelihood(_ logits: UnsafePointer<Float>, count: Int, target: Int) -> Int {
        var s = 0
        for j in 0..<count { s += exp2Table[Int(logits[j]) + 128] }
        return Int(logits[target]) + 128 - log2Fixed(s)
    }

    /// The exact cross-entropy in bits of the base-2 softmax the logits define,
    /// `log2 sum_j 2^(l_j / 16) - l_target / 16` (the evaluation's bits per byte).
    public static func bits(_ logits: UnsafePointer<Float>, count: Int, target: Int) -> Double {
        var m = -Float.infinity
        for j in 0..<count { m = max(m, logits[j]) }
        var s = 0.0
        for j in 0..<count { s += Foundation.exp2(Double(logits[j] - m) / 16) }
        return Foundation.log2(s) - Double(logits[target] - m) / 16
    }

    /// The standard normal quantile Phi^-1(p), by bisection on `erfc` (to 1e-12).
    public static func normalQuantile(_ p: Double) -> Double {
        precondition(p > 0 && p < 1, "a quantile needs 0 < p < 1")
        var lo = -40.0, hi = 40.0
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if 0.5 * erfc(-mid / 2.0.squareRoot()) < p { lo = mid } else { hi = mid }
        }
        return (lo + hi) / 2
    }

    /// The update threshold of step t, in fixed point: `int(Phi^-1(1 - alpha_t / 2) 16)`
    /// with `alpha_t = 1 / ((2^alpha - 1) t / horizon + 1)` (the reference's
    /// `all_thresholds`): 0 at t = 0 (every parameter with a non-zero vote moves),
    /// rising to `int(Phi^-1(1 - 2^-alpha / 2) 16)` (29 for alpha 4) at t = horizon.
    public static func threshold(step t: Int, alpha: Double, horizon: Int) -> Int {
        let a = 1 / ((Foundation.exp2(alpha) - 1) * Double(t) / Double(horizon) + 1)
        return Int(normalQuantile(1 - a / 2) * Double(1 << fixedPoint))
    }

    /// The sign update of one parameter from its vote Z (`_simple_lora_update` with
    /// `use_clt` and `fast_fitness`): it moves by sign(Z), clipped to +-127, only where
    /// `|Z| 2^4 >= threshold sqrt(pairs) 4^4`.
    @inline(__always) public static func signUpdate(_ w: Int, vote z: Int, threshold: Int, pairs: Int) -> Int {
        let bar = Double(threshold) * Double(pairs).squareRoot() * Double(1 << (2 * fixedPoint))
        guard Double(abs(z) << fixedPoint) >= bar, z != 0 else { return w }
        return clip(w + (z > 0 ? 1 : -1))
    }
}

import SubspaceCore

/// The inverse of one Kronecker factor, kept up to date by Sherman–Morrison rank-1 updates and
/// never inverted explicitly (MKOR, Mozaffari et al., NeurIPS 2023, "MKOR: Momentum-Enabled
/// Kronecker-Factor-Based Optimizer Using Rank-1 Updates", Sec. 3).
///
/// **Paper rule** (`Rule.paper`, default). The factor is an exponential running average of
/// rank-1 statistics, F_t = gamma F_{t-1} + (1 - gamma) v vᵀ with F_0 = I, and its inverse is
/// updated exactly with the Sherman–Morrison formula (c = (1 - gamma) / gamma):
///
///     F_t⁻¹ = (1/gamma) [ F⁻¹ - c (F⁻¹ v)(vᵀ F⁻¹) / (1 + c vᵀ F⁻¹ v) ]
///
/// O(d²) per update against the O(d³) of an inversion (K-FAC's). gamma is the statistics
/// decay, 0.95 (the reference's `stat_decay`). Directions the statistics do not visit grow
/// as gamma^-k in F⁻¹; the paper's stabilisation bounds them: when an entry of F⁻¹ exceeds
/// `resetThreshold` (2, the reference's), the next update of both factors of that layer is a
/// reset instead, F⁻¹ <- (1 - zeta) F⁻¹ + zeta I with zeta = 0.1 (the paper's and the
/// reference's `stabilization_factor`). A reset is itself a running factor
/// ((1 - zeta) F⁻¹ + zeta I)⁻¹, so F⁻¹ stays the exact inverse of a symmetric positive
/// definite matrix throughout.
///
/// **Reference rule** (`Rule.reference`, `Mohammad-Mozaffari/mkor`, `mkor.py` and
/// `utils/factors.py`): the inverse is damped towards the identity, P = 0.95 F⁻¹ + 0.05 I
/// (decay hard-coded), then given an undamped rank-1 update, F⁻¹ <- P - (P v)(vᵀ P) /
/// (1 + vᵀ P v); its blend-on-reset branch is unreachable (a membership test on a list that is
/// always false), so every reset sets F⁻¹ = I.
///
/// The preconditioned gradient is rescaled to the gradient's norm afterwards (`MKOR`), so
/// only the shape of F⁻¹ matters, not its overall scale.
public struct InverseFactor: Equatable, Sendable {
    /// The paper's rule or the reference code's (see the type's notes).
    public enum Rule: String, CaseIterable, Codable, Sendable {
        case paper, reference
    }

    public var rule: Rule
    /// gamma, the running average's decay (paper rule; the reference hard-codes 0.95).
    public var decay: Float
    /// zeta, the identity's weight in a reset (paper rule; the reference resets to I).
    public var stabilization: Float
    /// Largest |entry| of F⁻¹ before the next update becomes a reset.
    public var resetThreshold: Float

    public init(rule: Rule = .paper, decay: Float = 0.95, stabilization: Float = 0.1, resetThreshold: Float = 2) {
        self.rule = rule; self.decay = decay; self.stabilization = stabilization; self.resetThreshold = resetThreshold
    }

    /// One Sherman–Morrison update of the symmetric `inverse` ([d, d], in place) with the
    /// statistic `v` (d floats).
    public func update(_ inverse: Tensor, with v: UnsafePointer<Float>) {
        let d = inverse.shape[0]
        precondition(inverse.shape == [d, d], "inverse factor must be square, got \(inverse.shape)")
        if rule == .reference {
            // P = 0.95 F⁻¹ + 0.05 I, then the unit-weight update of P.
            FastMath.scale(inverse.data, inverse.count, 0.95)
            for i in 0..<d { inverse.data[i * d + i] += 0.05 }
        }
        let c: Float = rule == .paper ? (1 - decay) / decay : 1
        let outer: Float = rule == .paper ? 1 / decay : 1
        let u = Tensor(uninitialized: [d])
        BLAS.gemv(m: d, n: d, a: inverse.data, lda: d, x: v, y: u.data, parallel: false)
        let quadratic = BLAS.dot(d, v, u.data)
        let coefficient = c / (1 + c * quadratic)
        // F⁻¹ <- outer (F⁻¹ - coefficient u uᵀ), one GEMM with k = 1.
        BLAS.gemm(
            m: d, n: d, k: 1, alpha: -outer * coefficient, a: u.data, lda: 1, b: u.data, ldb: d,
            beta: outer, c: inverse.data, ldc: d)
    }

    /// The reset: (1 - zeta) F⁻¹ + zeta I (paper) or I (reference), in place.
    public func reset(_ inverse: Tensor) {
        let d = inverse.shape[0]
        if rule == .reference {
            inverse.zero()
            for i in 0..<d { inverse.data[i * d + i] = 1 }
            return
        }
        FastMath.scale(inverse.data, inverse.count, 1 - stabilization)
        for i in 0..<d { inverse.data[i * d + i] += stabilization }
    }

    /// Whether an entry of `inverse` exceeds the threshold (the next update is then a reset).
    public func needsReset(_ inverse: Tensor) -> Bool {
        let d = inverse.data
        for i in 0..<inverse.count where !(abs(d[i]) <= resetThreshold) { return true }
        return false
    }

    /// The identity, F_0⁻¹.
    public static func identity(_ d: Int) -> Tensor {
        let t = Tensor(zeros: [d, d])
        for i in 0..<d { t.data[i * d + i] = 1 }
        return t
    }
}

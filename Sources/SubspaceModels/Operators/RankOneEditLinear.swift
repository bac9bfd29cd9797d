import Foundation
import SubspaceCore

/// Perfusion's key-locked, gated rank-one edit of a frozen linear slot (Tewel, Gal, Chechik,
/// Atzmon, "Key-Locked Rank One Editing for Text-to-Image Personalization", SIGGRAPH 2023,
/// eq. 3; `lucidrains/perfusion-pytorch`). For a frozen W `[out, in]`, a locked key i* (the
/// slot's input encoding of the concept), the input covariance C of the slot and a target
/// output o*:
///
///     sim(e) = eᵀ C⁻¹ i*,    E = i*ᵀ C⁻¹ i*,    s(e) = sim(e) / E
///     out(e) = W e - s(e) W i* + sigmoid((s(e) - beta) / tau) o*
///
/// The first two terms remove from e its component along i* in the C⁻¹ metric (what the
/// frozen W would make of the key); the gate writes o* instead, fully when e is the key
/// (s = 1) and not at all for an input unrelated to it (s near 0): with the default
/// beta 0.75, tau 0.1, sigmoid(-7.5) = 5.5e-4. Inputs with s(e) = 0 exactly are mapped as W
/// maps them, up to that gate times o*. beta and tau default to the paper's training values
/// (inference: 0.70 / 0.15; local key-lock uses beta in 0.6-0.75).
///
/// Only o* trains (`<path>.edit.output`, role of the slot); W (`<path>.weight`, the dense
/// slot's name so weights load unchanged), i* (`<path>.edit.key`) and C⁻¹ i*
/// (`<path>.edit.metric_key`) are frozen. A training forward keeps s(e) per row (`rows`
/// floats) for the input gradient:
///
///     dx = Wᵀ dy + C⁻¹ i* · ( -(dy · W i*) + sigmoid'(z) / tau · (dy · o*) ) / E,  z = (s - beta)/tau
///     do* = Σ_rows sigmoid(z) dy
public final class RankOneEditLinear: LinearOperator {
    public let weight: Parameter
    public let key: Parameter
    public let metricKey: Parameter
    public let output: Parameter
    public let beta: Float
    public let tau: Float
    /// E = i*ᵀ C⁻¹ i*.
    public let energy: Float
    private var savedScores: Tensor?

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }
    public var parameters: [Parameter] { [weight, key, metricKey, output] }
    public var activationBytes: Int { savedScores?.byteCount ?? 0 }

    /// - Parameters: `metricKey` is C⁻¹ i*; `output` o* (trainable). W, i* and C⁻¹ i* are frozen.
    /// - Throws: `ConfigurationError` when shapes disagree, E is not positive or tau is not.
    public init(weight: Parameter, key: Parameter, metricKey: Parameter, output: Parameter, beta: Float = 0.75, tau: Float = 0.1) throws {
        let (o, i) = (weight.shape[0], weight.shape[1])
        guard key.shape == [i], metricKey.shape == [i], output.shape == [o] else {
            throw ConfigurationError("rank-one edit of \(weight.name): key \(key.shape), metric key \(metricKey.shape) and output \(output.shape) do not fit a [\(o), \(i)] weight")
        }
        guard tau > 0, tau.isFinite, beta.isFinite else { throw ConfigurationError("rank-one edit: tau must be positive and beta finite, got tau \(tau), beta \(beta)") }
        let e = BLAS.dot(i, key.value.data, metricKey.value.data)
        guard e > 0, e.isFinite else { throw ConfigurationError("rank-one edit of \(weight.name): i*ᵀ C⁻¹ i* is \(e), not positive (is C positive definite?)") }
        self.weight = weight; self.key = key; self.metricKey = metricKey; self.output = output
        self.beta = beta; self.tau = tau; energy = e
        weight.requiresGrad = false; key.requiresGrad = false; metricKey.requiresGrad = false
    }

    /// W i* `[out]`, from the current W (computed per call, an `out x in` product: W may be
    /// filled after construction, as `loadDense(from:)` fills a slot's base).
    public func keyImage() -> Tensor {
        let t = Tensor(zeros: [outFeatures])
        BLAS.gemv(m: outFeatures, n: inFeatures, a: weight.value.data, lda: inFeatures, x: key.value.data, y: t.data)
        return t
    }

    @inline(__always) public static func sigmoid(_ z: Float) -> Float { 1 / (1 + Foundation.exp(-z)) }

    /// s(e) for each row.
    private func scores(_ x: UnsafePointer<Float>, rows: Int, into s: UnsafeMutablePointer<Float>) {
        BLAS.gemv(m: rows, n: inFeatures, alpha: 1 / energy, a: x, lda: inFeatures, x: metricKey.value.data, y: s)
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode) {
        Linear.forward(x: x, weight: weight.value.data, y: y, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulate: accumulate)
        guard rows > 0 else { return }
        let s: Tensor
        if mode == .training {
            if savedScores?.shape != [rows] { savedScores = Tensor(zeros: [rows]) }
            s = savedScores!
        } else {
            s = Tensor(zeros: [rows])
        }
        scores(x, rows: rows, into: s.data)
        let o = outFeatures, image = keyImage(), wi = image.data, out = output.value.data
        for r in 0..<rows {
            let sr = s.data[r], gate = Self.sigmoid((sr - beta) / tau)
            let yr = y + r * o
            for j in 0..<o { yr[j] += gate * out[j] - sr * wi[j] }
        }
    }

    /// The saved scores, or those recomputed from `x`.
    private func savedOrRecomputed(_ x: UnsafePointer<Float>?, rows: Int) -> Tensor {
        if let s = savedScores, s.shape == [rows] { return s }
        precondition(x != nil, "rank-one edit: input gradient without a training forward")
        let s = Tensor(zeros: [rows])
        scores(x!, rows: rows, into: s.data)
        return s
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        Linear.backwardInput(dy: dy, weight: weight.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulate)
        guard rows > 0 else { return }
        let s = savedOrRecomputed(nil, rows: rows)
        let o = outFeatures, i = inFeatures, image = keyImage()
        for r in 0..<rows {
            let dyr = dy + r * o
            let gate = Self.sigmoid((s.data[r] - beta) / tau)
            let coefficient = (-BLAS.dot(o, dyr, image.data) + gate * (1 - gate) / tau * BLAS.dot(o, dyr, output.value.data)) / energy
            BLAS.axpy(i, coefficient, metricKey.value.data, dx + r * i)
        }
    }

    /// do* += Σ_rows sigmoid(z) dy; nothing for the frozen tensors.
    public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        guard rows > 0, output.requiresGrad else { return }
        let s = savedOrRecomputed(x, rows: rows)
        let g = output.gradient().data
        for r in 0..<rows { BLAS.axpy(outFeatures, Self.sigmoid((s.data[r] - beta) / tau), dy + r * outFeatures, g) }
    }

    public func releaseActivations() { savedScores = nil }
}

extension RankOneEditLinear: DenseBased {
    /// The frozen W, which `loadDense(from:)` fills with the source model's weight.
    public var base: Parameter { weight }
}

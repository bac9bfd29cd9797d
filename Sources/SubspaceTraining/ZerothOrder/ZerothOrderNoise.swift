import SubspaceCore
import SubspaceModels

/// The seeded noise of the zeroth-order rules, regenerated on demand and never stored.
///
/// - The step's stream is a pure function of the run seed and the step number
///   (`stepStream`), so a resumed run draws the same perturbations as an unbroken one with
///   no saved random state (MeZO's seed replay).
/// - A parameter's noise is that stream split by the parameter's name; a dense Gaussian
///   direction is further split into fixed chunks of `chunk` elements, each its own stream,
///   so that the chunks are drawn on all cores and the values do not depend on the number
///   of cores.
/// - Factor streams (LOZO's V, SubZero's U and V) split the run seed by role and refresh
///   index, apart from the step's stream: the reference LOZO draws V from the step's seed
///   before U, so its update (which redraws only U) uses a different U from the one it
///   evaluated on every refresh step (research notes, section 10).
public enum ZerothOrderNoise {
    /// Elements per independently seeded chunk of a dense Gaussian direction.
    public static let chunk = 1 << 16

    /// The stream of step `step` (0-based) of a run seeded `seed`.
    public static func stepStream(seed: UInt64, step: Int) -> RandomStream {
        RandomStream(seed: seed).split("zeroth-order.step", index: UInt64(step))
    }

    /// The stream of a factor (`role`, e.g. `"lozo.V"`) at refresh `index`.
    public static func factorStream(seed: UInt64, role: String, index: Int) -> RandomStream {
        RandomStream(seed: seed).split(role, index: UInt64(index))
    }

    /// Calls `body(z, range)` for consecutive ranges covering `0..<count`, `z` holding the
    /// standard normal deviates of that range of the direction `stream.split(name)`; ranges
    /// run concurrently, so `body` must only touch its own range.
    public static func gaussian(count: Int, stream: RandomStream, name: String, _ body: (UnsafeMutablePointer<Float>, Range<Int>) -> Void) {
        let base = stream.split(name)
        let chunks = (count + chunk - 1) / chunk
        Parallel.perform(chunks) { c in
            let lo = c * chunk, hi = min(count, lo + chunk)
            var r = base.split("chunk", index: UInt64(c))
            let z = UnsafeMutablePointer<Float>.allocate(capacity: hi - lo)
            defer { z.deallocate() }
            FastGaussian.fill(z, count: hi - lo, stream: &r)
            body(z, lo..<hi)
        }
    }

    /// `x += scale * z` for the Gaussian direction z of `name`.
    public static func addGaussian(_ x: Tensor, scale: Float, stream: RandomStream, name: String) {
        let w = x.data
        gaussian(count: x.count, stream: stream, name: name) { z, r in
            for i in r { w[i] += scale * z[i - r.lowerBound] }
        }
    }

    /// The Gaussian direction of `name` as a tensor of `shape`.
    public static func gaussianTensor(_ shape: [Int], stream: RandomStream, name: String) -> Tensor {
        let t = Tensor(zeros: shape)
        addGaussian(t, scale: 1, stream: stream, name: name)
        return t
    }

    /// A `rows x cols` matrix of standard normals from `stream` (small factors: sequential).
    public static func normalMatrix(_ rows: Int, _ cols: Int, stream: RandomStream) -> Tensor {
        var r = stream
        let t = Tensor(uninitialized: [rows, cols])
        r.fillNormal(t)
        return t
    }

    /// `w = beta * w + alpha * a b^T` for `w` m x n, `a` m x k, `b` n x k.
    public static func addProduct(_ w: Tensor, alpha: Float, _ a: Tensor, _ b: Tensor, beta: Float = 1) {
        let m = a.shape[0], k = a.shape[1], n = b.shape[0]
        precondition(w.shape == [m, n] && b.shape[1] == k, "low-rank product shapes")
        BLAS.gemm(transB: true, m: m, n: n, k: k, alpha: alpha, a: a.data, lda: k, b: b.data, ldb: k, beta: beta, c: w.data, ldc: n)
    }

    /// `w *= 1 - lr * wd` for a matrix (weight decay), skipped for 1-D tensors as MeZO's
    /// reference skips biases and norm gains.
    public static func decay(_ p: Parameter, lr: Float, weightDecay wd: Float) {
        guard wd != 0, p.shape.count >= 2 else { return }
        let f = 1 - lr * wd, w = p.value.data
        for i in 0..<p.count { w[i] *= f }
    }
}

import SubspaceCore

/// RMSNorm (Zhang & Sennrich, 2019) as in Hugging Face LLaMA:
/// `y = w * x / sqrt(mean(x^2) + eps)`, computed in float32.
///
/// Activations kept for backward: the input x (N * dim floats) and the reciprocal RMS per row
/// (N floats). The normalised output, which the next linear layer's weight gradient needs,
/// is not kept: `normalize` recomputes it bit for bit from x and rstd (N * dim multiplies,
/// against the N * dim * out multiply-adds of that gradient).
public enum RMSNorm {
    /// y = w * x * rstd; writes rstd[N].
    public static func forward(
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, rows n: Int, dim: Int, eps: Float
    ) {
        Parallel.ranges(n, grain: 64) { r in
            for i in r {
                let xi = x + i * dim, yi = y + i * dim
                var ss: Float = 0
                for j in 0..<dim { ss += xi[j] * xi[j] }
                let rs = 1 / (ss / Float(dim) + eps).squareRoot()
                rstd[i] = rs
                for j in 0..<dim { yi[j] = weight[j] * (xi[j] * rs) }
            }
        }
    }

    /// y = w * x * rstd from a stored rstd: exactly `forward`'s output.
    public static func normalize(
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
        y: UnsafeMutablePointer<Float>, rows n: Int, dim: Int
    ) {
        Parallel.ranges(n, grain: 64) { r in
            for i in r {
                let xi = x + i * dim, yi = y + i * dim, rs = rstd[i]
                for j in 0..<dim { yi[j] = weight[j] * (xi[j] * rs) }
            }
        }
    }

    /// dx (+)= rstd * (g - xhat * mean(g * xhat)) with g = dy * w, and dw += sum(dy * xhat).
    public static func backward(
        dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
        rows n: Int, dim: Int, accumulate: Bool
    ) {
        let workers = min(Parallel.workers, max(1, n / 64))
        let partial = Tensor(zeros: [workers, dim])
        let per = (n + workers - 1) / workers
        Parallel.perform(workers) { w in
            let lo = w * per, hi = min(n, lo + per)
            let dw = partial.data + w * dim
            var i = lo
            while i < hi {
                let xi = x + i * dim, dyi = dy + i * dim, dxi = dx + i * dim
                let rs = rstd[i]
                var dot: Float = 0
                for j in 0..<dim {
                    let xh = xi[j] * rs
                    dot += dyi[j] * weight[j] * xh
                    dw[j] += dyi[j] * xh
                }
                let m = dot / Float(dim)
                if accumulate {
                    for j in 0..<dim { dxi[j] += rs * (dyi[j] * weight[j] - xi[j] * rs * m) }
                } else {
                    for j in 0..<dim { dxi[j] = rs * (dyi[j] * weight[j] - xi[j] * rs * m) }
                }
                i += 1
            }
        }
        if let dWeight {
            for w in 0..<workers { for j in 0..<dim { dWeight[j] += partial.data[w * dim + j] } }
        }
    }
}

import SubspaceCore

/// RMSNorm (Zhang & Sennrich, 2019) as in Hugging Face LLaMA:
/// `y = w * x / sqrt(mean(x^2) + eps)`, computed in float32.
///
/// Activations kept for backward: the input x (N * dim floats) and the reciprocal RMS per row
/// (N floats). The normalised output, which the next linear layer's weight gradient needs,
/// is not kept: `normalize` recomputes it bit for bit from x and rstd (N * dim multiplies,
/// against the N * dim * out multiply-adds of that gradient).
///
/// The per-row reductions (sum of squares; the backward's mean(g * xhat), fused with the
/// weight-gradient sweep in one pass over the row) run on 16 lanes (`SIMD16<Float>`): a
/// scalar float sum cannot be reordered by the compiler, so it ran one element per add.
/// Summation order differs from a sequential sum by float rounding only (lanes, then lanes
/// summed), like PyTorch's own vectorised reductions.
public enum RMSNorm {
    typealias V16 = SIMD16<Float>

    /// sum(x[j]^2) over `n` elements, 16 lanes at a time.
    @inline(__always)
    static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V16(), j = 0
        while j + 16 <= n {
            let v = UnsafeRawPointer(x + j).loadUnaligned(as: V16.self)
            acc += v * v
            j += 16
        }
        var s = acc.sum()
        while j < n { s += x[j] * x[j]; j += 1 }
        return s
    }

    /// One backward sweep over a row: returns sum(dy * w * xhat) and adds dy * xhat into dw,
    /// with xhat = x * rs.
    @inline(__always)
    static func backwardSweep(
        dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rs: Float,
        dw: UnsafeMutablePointer<Float>, _ n: Int
    ) -> Float {
        var acc = V16(), j = 0
        let r = V16(repeating: rs)
        while j + 16 <= n {
            let xh = UnsafeRawPointer(x + j).loadUnaligned(as: V16.self) * r
            let g = UnsafeRawPointer(dy + j).loadUnaligned(as: V16.self)
            acc += g * UnsafeRawPointer(weight + j).loadUnaligned(as: V16.self) * xh
            let dwp = UnsafeMutableRawPointer(dw + j)
            dwp.storeBytes(of: dwp.loadUnaligned(as: V16.self) + g * xh, as: V16.self)
            j += 16
        }
        var dot = acc.sum()
        while j < n {
            let xh = x[j] * rs
            dot += dy[j] * weight[j] * xh
            dw[j] += dy[j] * xh
            j += 1
        }
        return dot
    }

    /// y = w * x * rstd; writes rstd[N].
    public static func forward(
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, rows n: Int, dim: Int, eps: Float
    ) {
        Parallel.ranges(n, grain: 64) { r in
            for i in r {
                let xi = x + i * dim, yi = y + i * dim
                let ss = sumOfSquares(xi, dim)
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
                let dot = backwardSweep(dy: dyi, x: xi, weight: weight, rs: rs, dw: dw, dim)
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

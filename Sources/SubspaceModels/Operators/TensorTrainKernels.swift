import SubspaceCore

/// The index shuffles of the tensor-train contractions (`TensorTrainLinear`): plain copies,
/// no arithmetic, so results do not depend on them.
enum TensorTrainKernels {
    /// dst[c, r] = src[r, c] for a row-major `[rows, cols]` src, in 32 x 32 tiles.
    static func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        let tile = 32
        for r0 in stride(from: 0, to: rows, by: tile) {
            for c0 in stride(from: 0, to: cols, by: tile) {
                for r in r0..<min(r0 + tile, rows) {
                    let s = src + r * cols
                    for c in c0..<min(c0 + tile, cols) {
                        if accumulate { dst[c * rows + r] += s[c] } else { dst[c * rows + r] = s[c] }
                    }
                }
            }
        }
    }

    /// Swaps the two middle axes of a `[outer, a, b, inner]` array into `[outer, b, a, inner]`.
    static func swapMiddle(_ src: UnsafePointer<Float>, outer: Int, a: Int, b: Int, inner: Int, into dst: UnsafeMutablePointer<Float>) {
        for o in 0..<outer {
            for i in 0..<a {
                for j in 0..<b {
                    (dst + ((o * b + j) * a + i) * inner).update(from: src + ((o * a + i) * b + j) * inner, count: inner)
                }
            }
        }
    }

    /// The sequential order's matrix of a core: `A[(a n + j), (i r' + c)] = G[a, i, j, c]` for
    /// a core `G[r, m, n, r']`, so that contracting over (r, n) is one GEMM.
    static func coreMatrix(_ g: UnsafePointer<Float>, shape s: [Int], into t: UnsafeMutablePointer<Float>) {
        forEachRun(s) { core, mat, count in (t + mat).update(from: g + core, count: count) }
    }

    /// The inverse of `coreMatrix`, added: `G[a, i, j, c] += A[(a n + j), (i r' + c)]` (a gradient).
    static func addCoreMatrix(_ t: UnsafePointer<Float>, shape s: [Int], into g: UnsafeMutablePointer<Float>) {
        forEachRun(s) { core, mat, count in for c in 0..<count { g[core + c] += t[mat + c] } }
    }

    /// The runs of r' contiguous floats that `coreMatrix` moves: (core offset, matrix offset, r').
    private static func forEachRun(_ s: [Int], _ body: (Int, Int, Int) -> Void) {
        let (r, m, n, r2) = (s[0], s[1], s[2], s[3])
        for a in 0..<r {
            for i in 0..<m {
                for j in 0..<n { body(((a * m + i) * n + j) * r2, (a * n + j) * (m * r2) + i * r2, r2) }
            }
        }
    }
}

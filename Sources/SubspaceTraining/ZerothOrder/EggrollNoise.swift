import SubspaceCore
import SubspaceModels

/// The noise of an EGGROLL generation, regenerated from the counter-based streams whenever
/// it is needed and never kept beyond its use: pair k of the generation whose stream is
/// `generation` draws, for a matrix W [m, n], A_k ~ N(0,1)^{m x r} and B_k ~ N(0,1)^{n x r}
/// from `pairStream(generation, k).split(W's name)` (`"A"`, `"B"`), E_k = A_k B_k^T / sqrt(r),
/// r = min(rank, m, n); and for a vector the dense direction `ZerothOrderNoise.gaussian`
/// of `pairStream(generation, k)` by name. The in-place evaluation (`EggrollStep.perturb`),
/// the stacked one (`layout`) and the update (`addCombination`) all read these, so the three
/// agree to rounding.
enum EggrollNoise {
    /// The noise stream of pair `k`.
    static func pairStream(_ generation: RandomStream, _ k: Int) -> RandomStream {
        generation.split("eggroll.pair", index: UInt64(k))
    }

    /// The rank of a matrix's noise.
    static func rank(_ p: Parameter, _ rank: Int) -> Int { min(rank, p.shape[0], p.shape[1]) }

    /// Pair `pair`'s factors (A [m, r], B [n, r]) of the matrix `p`.
    static func factors(_ p: Parameter, rank: Int, pair: RandomStream) -> (a: Tensor, b: Tensor) {
        let k = Self.rank(p, rank), s = pair.split(p.name)
        return (ZerothOrderNoise.normalMatrix(p.shape[0], k, stream: s.split("A")), ZerothOrderNoise.normalMatrix(p.shape[1], k, stream: s.split("B")))
    }

    /// Pair `pair`'s dense direction of the vector `p`.
    static func direction(_ p: Parameter, pair: RandomStream) -> Tensor {
        ZerothOrderNoise.gaussianTensor(p.shape, stream: pair, name: p.name)
    }

    /// The stacked forward's deltas for members `members` (member i: pair i / 2, sign +1
    /// for even i, -1 for odd): `s_i sigma / sqrt(r) A B^T` per matrix, `s_i sigma z` per
    /// vector; the two members of a pair share the factors. Pairs draw on all cores.
    static func layout(members: Range<Int>, parameters: [Parameter], generation: RandomStream, rank: Int, sigma: Float) -> PopulationLayout {
        let layout = PopulationLayout(members: members.count)
        let pairs = Array(Set(members.map { $0 / 2 })).sorted()
        let streams = pairs.map { pairStream(generation, $0) }
        func sign(_ i: Int) -> Float { i % 2 == 0 ? 1 : -1 }
        for p in parameters {
            if p.shape.count == 2 {
                var drawn = [(a: Tensor, b: Tensor)?](repeating: nil, count: pairs.count)
                drawn.withUnsafeMutableBufferPointer { out in
                    let base = out.baseAddress!
                    Parallel.perform(pairs.count) { j in base[j] = factors(p, rank: rank, pair: streams[j]) }
                }
                let scale = sigma / Float(Self.rank(p, rank)).squareRoot()
                layout.setLowRank(p.name, members.map { i in
                    let f = drawn[pairs.firstIndex(of: i / 2)!]!
                    return PopulationLayout.LowRank(a: f.a, b: f.b, scale: sign(i) * scale)
                })
            } else {
                let z = streams.map { direction(p, pair: $0) }
                layout.setDense(p.name, members.map { PopulationLayout.Dense(z: z[pairs.firstIndex(of: $0 / 2)!], scale: sign($0) * sigma) })
            }
        }
        return layout
    }

    /// `x += sum_k c_k E_k(p)` over the pairs whose streams are `streams` (x shaped as p):
    /// for a matrix, one GEMM of rank (pairs x r), `[A_1 c_1, ...] [B_1, ...]^T / sqrt(r)`,
    /// rather than one rank-r product per pair; pairs with c_k = 0 are skipped.
    static func addCombination(_ x: Tensor, of p: Parameter, coefficients: [Float], streams: [RandomStream], rank: Int) {
        let used = coefficients.indices.filter { coefficients[$0] != 0 }
        guard !used.isEmpty else { return }
        guard p.shape.count == 2 else {
            for k in used { ZerothOrderNoise.addGaussian(x, scale: coefficients[k], stream: streams[k], name: p.name) }
            return
        }
        let (m, n, r) = (p.shape[0], p.shape[1], Self.rank(p, rank))
        let width = used.count * r, root = Float(r).squareRoot()
        let a = Tensor(uninitialized: [m, width]), b = Tensor(uninitialized: [n, width])
        Parallel.perform(used.count) { j in
            let k = used[j], f = factors(p, rank: rank, pair: streams[k]), c = coefficients[k] / root
            for i in 0..<m { for q in 0..<r { a.data[i * width + j * r + q] = c * f.a.data[i * r + q] } }
            for i in 0..<n { for q in 0..<r { b.data[i * width + j * r + q] = f.b.data[i * r + q] } }
        }
        BLAS.gemm(transB: true, m: m, n: n, k: width, a: a.data, lda: width, b: b.data, ldb: width, beta: 1, c: x.data, ldc: n)
    }
}

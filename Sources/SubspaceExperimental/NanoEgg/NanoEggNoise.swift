import SubspaceCore

/// One generation's int8 perturbations, drawn from counter-based streams: pair k's
/// factors of a matrix or the embedding W [a, b] are A [a, r] and B [b, r], and of a vector
/// two draws u1, u2 whose product is the noise; every draw is `int8(N(0, 1) 16)` (truncated
/// toward zero, as the reference's `astype`, and clipped to +-127). Member 2k runs +A, member
/// 2k + 1 runs -A (antithetic).
///
/// Difference from the reference: it slices A and B out of one table of 2^30 int8 normals
/// at a hashed offset (`BIG_RAND_MATRIX`); here each (generation, pair, tensor) has its own
/// stream, the same distribution without the 1 GiB table.
public final class NanoEggNoise {
    public struct LowRank { public let a: [Int8], b: [Int8], rank: Int; public var sign: Int }
    public struct Dense { public let u: [Int32]; public var sign: Int }

    public let sigmaShift: Int
    public let pairs: Int
    private var lowRankPairs: [ObjectIdentifier: [LowRank]] = [:]
    private var densePairs: [ObjectIdentifier: [Dense]] = [:]

    public init(model: NanoEggModel, pairs: Int, rank: Int, sigmaShift: Int, stream: RandomStream) {
        self.sigmaShift = sigmaShift
        self.pairs = pairs
        for p in model.parameters {
            let id = ObjectIdentifier(p)
            switch p.kind {
            case .matrix, .embedding:
                let r = min(rank, p.shape[0], p.shape[1])
                lowRankPairs[id] = (0..<pairs).map { k in
                    var s = stream.split("pair", index: UInt64(k)).split(p.name)
                    let a = (0..<(p.shape[0] * r)).map { _ in Self.int8Normal(&s) }
                    let b = (0..<(p.shape[1] * r)).map { _ in Self.int8Normal(&s) }
                    return LowRank(a: a, b: b, rank: r, sign: 1)
                }
            case .vector:
                densePairs[id] = (0..<pairs).map { k in
                    var s = stream.split("pair", index: UInt64(k)).split(p.name)
                    return Dense(u: (0..<p.value.count).map { _ in Int32(Self.int8Normal(&s)) * Int32(Self.int8Normal(&s)) }, sign: 1)
                }
            }
        }
    }

    /// `int8(N(0, 1) 16)`, truncated toward zero and clipped.
    static func int8Normal(_ r: inout RandomStream) -> Int8 { Int8(NanoEggMath.clip(Int(r.normal() * 16))) }

    /// Member m's factors of `p` (pair m / 2, sign + for even m).
    func lowRank(_ p: NanoEggModel.Param, member m: Int) -> LowRank? {
        guard var d = lowRankPairs[ObjectIdentifier(p)]?[m / 2] else { return nil }
        d.sign = m % 2 == 0 ? 1 : -1
        return d
    }

    /// Member m's dense noise of `p`.
    func dense(_ p: NanoEggModel.Param, member m: Int) -> Dense? {
        guard var d = densePairs[ObjectIdentifier(p)]?[m / 2] else { return nil }
        d.sign = m % 2 == 0 ? 1 : -1
        return d
    }

    /// The int32 vote `Z = sum_k fit_k A_k B_k^T` (matrices) or `sum_k fit_k u_k` (vectors)
    /// of `p`, shaped as p, from the pairs' fitnesses in {-1, 0, 1}.
    func vote(_ p: NanoEggModel.Param, fitness: [Int]) -> [Int] {
        var z = [Int](repeating: 0, count: p.value.count)
        if let all = lowRankPairs[ObjectIdentifier(p)] {
            let cols = p.shape[1]
            for (k, d) in all.enumerated() where fitness[k] != 0 {
                for j in 0..<p.shape[0] {
                    for q in 0..<d.rank {
                        let fa = fitness[k] * Int(d.a[j * d.rank + q])
                        if fa == 0 { continue }
                        for i in 0..<cols { z[j * cols + i] += fa * Int(d.b[i * d.rank + q]) }
                    }
                }
            }
        } else if let all = densePairs[ObjectIdentifier(p)] {
            for (k, d) in all.enumerated() where fitness[k] != 0 {
                for j in 0..<z.count { z[j] += fitness[k] * Int(d.u[j]) }
            }
        }
        return z
    }
}

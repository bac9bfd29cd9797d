import SubspaceCore

/// EGG, nano-egg's int8 language model (`ESHyperscale/nano-egg`, `run.py`, class `EGG`): a
/// byte-level minGRU-style recurrent network with no activation functions (its sigmoid and
/// tanh are the identity) but the MLP's ReLU, every value int8 in fixed point 2^4
/// (`NanoEggMath`):
///
///     x = emb[token]
///     per layer:  h = LN1(x);  f = [Wf h + Uf s + bf];  g = ((f + 127) s) >> 8
///                 c = [Wh h + Uh g + bh];  s' = s + (((f + 127)(c - s)) >> 8)
///                 x = [s' + x];  x = [W2 relu(W1 LN2(x)) + x]
///     logits = head LN_out(x)
///
/// where [.] is a clipped int32 sum, each product `W v` is `do_mm`
/// (`NanoEggMath.matmulOutput`), and s is the layer's recurrent state. A step runs a whole
/// population at once: row m of every activation is member m, with its own perturbation
/// (`NanoEggNoise`) or none (evaluation).
public final class NanoEggModel {
    /// How a parameter is perturbed: matrices and the embedding by low-rank factors, vectors
    /// (biases, layer-norm gains) by dense noise.
    public enum Kind: Sendable { case matrix, embedding, vector }

    public final class Param {
        public let name: String
        public let kind: Kind
        /// [rows, columns] (`[out, in]` for a matrix, `[vocab, width]` for the embedding, `[n]`).
        public let shape: [Int]
        public let value: Tensor
        init(_ name: String, _ kind: Kind, _ shape: [Int], _ value: Tensor) {
            self.name = name; self.kind = kind; self.shape = shape; self.value = value
        }
    }

    struct Layer { let ln1, wf, uf, bf, wh, uh, bh, ln2, w1, w2: Param }

    public let width: Int, vocab = 256
    public let parameters: [Param]
    let emb, lnOut, head: Param
    let layers: [Layer]

    /// Weights from round(N(0, 1) 16) clipped to +-127 (the reference's `MM.rand_init`),
    /// layer-norm gains 16 (1.0), biases 0; each tensor from its own stream.
    public init(width: Int, layers count: Int, seed: UInt64) {
        self.width = width
        let root = RandomStream(seed: seed).split("nano-egg.init")
        var all: [Param] = []
        func normal(_ name: String, _ kind: Kind, _ rows: Int, _ cols: Int) -> Param {
            var r = root.split(name)
            let t = Tensor(uninitialized: [rows, cols])
            for i in 0..<t.count { t.data[i] = Float(NanoEggMath.clip(Int((r.normal() * 16).rounded()))) }
            let p = Param(name, kind, [rows, cols], t)
            all.append(p)
            return p
        }
        func vector(_ name: String, _ n: Int, _ v: Float) -> Param {
            let p = Param(name, .vector, [n], Tensor(shape: [n], repeating: v))
            all.append(p)
            return p
        }
        let w = width
        emb = normal("emb", .embedding, vocab, w)
        layers = (0..<count).map { l in
            let p = "layers.\(l)."
            return Layer(
                ln1: vector(p + "ln1", w, 16), wf: normal(p + "Wf", .matrix, w, w), uf: normal(p + "Uf", .matrix, w, w),
                bf: vector(p + "bf", w, 0), wh: normal(p + "Wh", .matrix, w, w), uh: normal(p + "Uh", .matrix, w, w),
                bh: vector(p + "bh", w, 0), ln2: vector(p + "ln2", w, 16), w1: normal(p + "W1", .matrix, 4 * w, w),
                w2: normal(p + "W2", .matrix, w, 4 * w))
        }
        lnOut = vector("ln_out", w, 16)
        head = normal("head", .matrix, vocab, w)
        parameters = all
    }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// The recurrent state of `rows` sequences, zero: one [rows, width] tensor per layer.
    public func zeroState(rows: Int) -> [Tensor] { layers.map { _ in Tensor(zeros: [rows, width]) } }

    // MARK: One time step

    /// The logits [rows, 256] of one time step for `tokens` (one per row), advancing
    /// `state`; row m runs member m's perturbation when `noise` is given.
    public func step(_ tokens: [Int], state: [Tensor], noise: NanoEggNoise?) -> Tensor {
        let rows = tokens.count, w = width
        var x = Tensor(uninitialized: [rows, w])
        for (m, t) in tokens.enumerated() {
            for j in 0..<w {
                var v = Int(emb.value.data[t * w + j])
                if let d = noise?.lowRank(emb, member: m) {
                    var pert = 0
                    for q in 0..<d.rank { pert += Int(d.a[t * d.rank + q]) * Int(d.b[j * d.rank + q]) }
                    v += (d.sign * pert) >> (NanoEggMath.fixedPoint + noise!.sigmaShift)
                }
                x.data[m * w + j] = Float(NanoEggMath.clip(v))
            }
        }
        for (l, L) in layers.enumerated() {
            let s = state[l]
            let h = norm(L.ln1, x, noise)
            let f = add([mm(L.wf, h, noise), mm(L.uf, s, noise)], bias: L.bf, noise)
            let g = Tensor(uninitialized: [rows, w])
            for i in 0..<g.count { g.data[i] = Float((Int(f.data[i]) + 127) * Int(s.data[i]) >> 8) }
            let c = add([mm(L.wh, h, noise), mm(L.uh, g, noise)], bias: L.bh, noise)
            for i in 0..<s.count {
                let si = Int(s.data[i])
                s.data[i] = Float(si + ((Int(f.data[i]) + 127) * (Int(c.data[i]) - si) >> 8))
            }
            x = add([s, x], bias: nil, noise)
            let u = mm(L.w1, norm(L.ln2, x, noise), noise)
            for i in 0..<u.count { u.data[i] = max(0, u.data[i]) }
            x = add([mm(L.w2, u, noise), x], bias: nil, noise)
        }
        return mm(head, norm(lnOut, x, noise), noise)
    }

    /// A vector parameter's value for member m: `clip(v + (s u) >> (4 + shift))`.
    func vectorValue(_ p: Param, member m: Int, _ noise: NanoEggNoise?, into out: UnsafeMutablePointer<Float>) {
        guard let noise, let d = noise.dense(p, member: m) else { return out.update(from: p.value.data, count: p.value.count) }
        for j in 0..<p.value.count {
            out[j] = Float(NanoEggMath.clip(Int(p.value.data[j]) + ((d.sign * Int(d.u[j])) >> (NanoEggMath.fixedPoint + noise.sigmaShift))))
        }
    }

    func norm(_ gain: Param, _ x: Tensor, _ noise: NanoEggNoise?) -> Tensor {
        let rows = x.shape[0], w = width
        let out = Tensor(uninitialized: x.shape), g = UnsafeMutablePointer<Float>.allocate(capacity: w)
        defer { g.deallocate() }
        for m in 0..<rows {
            vectorValue(gain, member: m, noise, into: g)
            NanoEggMath.layerNorm(x.data + m * w, g, out.data + m * w, count: w)
        }
        return out
    }

    /// `[sum of terms + bias]`, clipped to +-127.
    func add(_ terms: [Tensor], bias: Param?, _ noise: NanoEggNoise?) -> Tensor {
        let rows = terms[0].shape[0], n = terms[0].shape[1]
        let out = Tensor(uninitialized: [rows, n]), b = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { b.deallocate() }
        if bias == nil { b.update(repeating: 0, count: n) }
        for m in 0..<rows {
            if let bias { vectorValue(bias, member: m, noise, into: b) }
            for j in 0..<n {
                var v = Int(b[j])
                for t in terms { v += Int(t.data[m * n + j]) }
                out.data[m * n + j] = Float(NanoEggMath.clip(v))
            }
        }
        return out
    }

    /// `do_mm`: `X W^T` as one float32 GEMM (exact: integer sums below 2^24), plus each
    /// member's `s (x B) A^T` in Int, shifted, divided and clipped.
    func mm(_ p: Param, _ x: Tensor, _ noise: NanoEggNoise?) -> Tensor {
        let rows = x.shape[0], out = p.shape[0], inF = p.shape[1]
        let y = Tensor(uninitialized: [rows, out])
        BLAS.gemm(transB: true, m: rows, n: out, k: inF, a: x.data, lda: inF, b: p.value.data, ldb: inF, c: y.data, ldc: out)
        let div = NanoEggMath.divisor(inFeatures: inF), shift = noise?.sigmaShift ?? 0
        Parallel.ranges(rows, grain: 8) { range in
            var t = [Int](repeating: 0, count: 8)
            for m in range {
                let d = noise?.lowRank(p, member: m)
                if let d {
                    if t.count < d.rank { t = [Int](repeating: 0, count: d.rank) }
                    for q in 0..<d.rank {
                        var acc = 0
                        for i in 0..<inF { acc += Int(x.data[m * inF + i]) * Int(d.b[i * d.rank + q]) }
                        t[q] = acc
                    }
                }
                for j in 0..<out {
                    var pert = 0
                    if let d { for q in 0..<d.rank { pert += t[q] * Int(d.a[j * d.rank + q]) }; pert *= d.sign }
                    y.data[m * out + j] = Float(NanoEggMath.matmulOutput(base: Int(y.data[m * out + j]), pert: pert, sigmaShift: shift, divisor: div))
                }
            }
        }
        return y
    }
}

import Foundation
import SubspaceCore

/// The keys and values of the positions a model has already read, for autoregressive
/// decoding: the prompt is prefilled in one forward pass, then each new token runs the
/// decoder on its own row and attends to the cached rows (transformers' `DynamicCache`
/// under `generate(use_cache=True)`; a static-size buffer here, like its `StaticCache`).
///
/// Per layer, keys and values are `[capacity, kvHeads * headDim]` row-major, the layout the
/// k and v projections produce, so new rows are written in place by the slot operators and
/// attention reads them with one row stride. Keys are stored after the rotary embedding at
/// their absolute position. Memory: `2 x layers x kvHeads x headDim x capacity` floats
/// (`bytes`), with the capacity the model's context, plus a small forward-only scratch for
/// the rows of one call (`scratchBytes`).
///
/// The cache remembers which tokens it holds (`tokens`), so a caller can keep a shared
/// prefix (`truncate(to:)`) and decode several continuations of one prompt.
public final class KVCache {
    public let layers: Int, kvHeads: Int, headDim: Int
    /// Positions it can hold: the model's context (`maxSeq`).
    public let capacity: Int
    /// `[layers, capacity, kvHeads * headDim]` each.
    let keys: Tensor, values: Tensor
    /// The tokens whose keys and values are held, position by position.
    public private(set) var tokens: [Int32] = []
    var scratch: DecodeScratch?

    init(config c: LlamaConfig) {
        layers = c.layers; kvHeads = c.kvHeads; headDim = c.headDim; capacity = c.maxSeq
        keys = Tensor(zeros: [c.layers, c.maxSeq, c.kvHeads * c.headDim])
        values = Tensor(zeros: [c.layers, c.maxSeq, c.kvHeads * c.headDim])
    }

    /// Positions filled.
    public var count: Int { tokens.count }
    /// Bytes of the key and value buffers: `2 x layers x kvHeads x headDim x capacity x 4`.
    public var bytes: Int { keys.byteCount + values.byteCount }
    /// Bytes of the forward-only scratch (sized for the largest call so far).
    public var scratchBytes: Int { scratch?.bytes ?? 0 }

    /// Forgets every position (the buffers are kept).
    public func reset() { tokens = [] }

    /// Keeps the first `n` positions (a shared prompt prefix) and forgets the rest.
    public func truncate(to n: Int) {
        precondition(n >= 0 && n <= tokens.count, "cannot truncate a cache of \(tokens.count) positions to \(n)")
        tokens.removeLast(tokens.count - n)
    }

    func append(_ t: [Int32]) { tokens += t }

    @inline(__always) func keys(layer l: Int) -> UnsafeMutablePointer<Float> { keys.data + l * capacity * kvHeads * headDim }
    @inline(__always) func values(layer l: Int) -> UnsafeMutablePointer<Float> { values.data + l * capacity * kvHeads * headDim }
}

/// Forward-only buffers for `rows` new positions (a prefill or a single decode step); no
/// gradients, nothing kept between calls but the cache's keys and values.
final class DecodeScratch {
    let rows: Int
    let x, xn, rstd, q, att, g, u, h, scores, logits: Tensor

    init(config c: LlamaConfig, rows n: Int) {
        rows = n
        x = Tensor(zeros: [n, c.dim]); xn = Tensor(zeros: [n, c.dim]); rstd = Tensor(zeros: [n])
        q = Tensor(zeros: [n, c.heads * c.headDim]); att = Tensor(zeros: [n, c.heads * c.headDim])
        g = Tensor(zeros: [n, c.ffnDim]); u = Tensor(zeros: [n, c.ffnDim]); h = Tensor(zeros: [n, c.ffnDim])
        // One head's scores at a time: n rows over at most the whole context.
        scores = Tensor(zeros: [n, c.maxSeq])
        logits = Tensor(zeros: [c.vocab])
    }

    var bytes: Int { [x, xn, rstd, q, att, g, u, h, scores, logits].reduce(0) { $0 + $1.byteCount } }
}

extension LlamaModel {
    /// An empty key/value cache for this model, holding up to `config.maxSeq` positions.
    public func makeKVCache() -> KVCache { KVCache(config: config) }

    /// Runs `tokens` at positions `cache.count ..< cache.count + tokens.count`, attending to
    /// the cached positions and to each other causally, appends their keys and values to the
    /// cache, and returns the logits of the last of them (`vocab` floats).
    ///
    /// A prompt is one call (the prefill); each generated token is then a call with one
    /// token. The result equals the last row of `logits` over `cache.tokens + tokens` up to
    /// float32 rounding (the products have other shapes; `KVCacheTests` bounds it). Forward
    /// only: slot operators run in `.inference` mode, no gradient or training arena is
    /// touched, and a pending `backward()` is cancelled as by `logits`.
    /// - Throws: `ConfigurationError` when `tokens` is empty, does not fit in the cache
    ///   (`capacity - count` positions are left), or holds an id outside the vocabulary.
    public func extend(_ tokens: [Int32], cache: KVCache) throws -> [Float] {
        let c = config, n = tokens.count, p0 = cache.count
        guard n > 0 else { throw ConfigurationError("nothing to run: no tokens") }
        guard cache.layers == c.layers, cache.kvHeads == c.kvHeads, cache.headDim == c.headDim, cache.capacity == c.maxSeq else {
            throw ConfigurationError("the key/value cache was made for another model shape")
        }
        guard p0 + n <= cache.capacity else {
            throw ConfigurationError("\(p0) cached plus \(n) new positions exceed the model's context of \(cache.capacity)")
        }
        for t in tokens where t < 0 || Int(t) >= c.vocab {
            throw ConfigurationError("token id \(t) is outside the vocabulary (size \(c.vocab))")
        }
        cancelPendingBackward()
        if (cache.scratch?.rows ?? 0) < n { cache.scratch = DecodeScratch(config: c, rows: n) }
        let s = cache.scratch!
        let d = c.dim, hd = c.headDim, qw = c.heads * hd, kvw = c.kvHeads * hd, group = c.heads / c.kvHeads
        let total = p0 + n
        let scale = 1 / Float(hd).squareRoot()
        tokens.withUnsafeBufferPointer { tp in
            embed(tp.baseAddress!, into: s.x.data, count: n, mode: .inference)
        }
        for (l, blk) in blocks.enumerated() {
            let kc = cache.keys(layer: l), vc = cache.values(layer: l)
            // The residual stream is updated in place (s.x), as in the inference arena.
            RMSNorm.forward(x: s.x.data, weight: blk.inputNorm.value.data, y: s.xn.data, rstd: s.rstd.data, rows: n, dim: d, eps: c.normEps)
            blk.q.forward(s.xn.data, s.q.data, rows: n, mode: .inference)
            blk.k.forward(s.xn.data, kc + p0 * kvw, rows: n, mode: .inference)
            blk.v.forward(s.xn.data, vc + p0 * kvw, rows: n, mode: .inference)
            rope.apply(s.q.data, rows: n, heads: c.heads, seq: n, firstPosition: p0)
            rope.apply(kc + p0 * kvw, rows: n, heads: c.kvHeads, seq: n, firstPosition: p0)
            // Row i (position p0 + i) attends to positions 0 ... p0 + i.
            for h in 0..<c.heads {
                let g = h / group
                BLAS.gemm(
                    transB: true, m: n, n: total, k: hd, alpha: scale, a: s.q.data + h * hd, lda: qw,
                    b: kc + g * hd, ldb: kvw, c: s.scores.data, ldc: total)
                for i in 0..<n {
                    let row = s.scores.data + i * total, valid = p0 + i + 1
                    let m = FastMath.max(row, valid)
                    let z = FastMath.expShiftedSum(row, valid, shift: m)
                    FastMath.scale(row, valid, 1 / z)
                    if valid < total { (row + valid).update(repeating: 0, count: total - valid) }
                }
                BLAS.gemm(
                    m: n, n: hd, k: total, a: s.scores.data, lda: total, b: vc + g * hd, ldb: kvw,
                    c: s.att.data + h * hd, ldc: qw)
            }
            blk.o.forward(s.att.data, s.x.data, rows: n, accumulate: true, mode: .inference)
            RMSNorm.forward(x: s.x.data, weight: blk.postNorm.value.data, y: s.xn.data, rstd: s.rstd.data, rows: n, dim: d, eps: c.normEps)
            blk.gate.forward(s.xn.data, s.g.data, rows: n, mode: .inference)
            blk.up.forward(s.xn.data, s.u.data, rows: n, mode: .inference)
            SwiGLU.forward(g: s.g.data, u: s.u.data, h: s.h.data, count: n * c.ffnDim)
            blk.down.forward(s.h.data, s.x.data, rows: n, accumulate: true, mode: .inference)
        }
        cache.append(tokens)
        // Only the last row needs the final norm and the head.
        let last = s.x.data + (n - 1) * d
        RMSNorm.forward(x: last, weight: finalNorm.value.data, y: s.xn.data, rstd: s.rstd.data, rows: 1, dim: d, eps: c.normEps)
        Linear.forward(x: s.xn.data, weight: head.value.data, y: s.logits.data, rows: 1, inFeatures: d, outFeatures: c.vocab)
        return Array(UnsafeBufferPointer(start: s.logits.data, count: c.vocab))
    }
}

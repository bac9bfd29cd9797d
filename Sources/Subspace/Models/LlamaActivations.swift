/// Every buffer one forward/backward pass of `LlamaModel` needs, for a fixed batch shape.
///
/// Allocated once per (batch, seq) and reused across steps, so a training step touches no
/// fresh pages. What backward needs is kept per layer; scratch is shared by all layers.
///
/// Bytes (N = batch * seq tokens, D = dim, K = kvHeads * headDim, F = ffn, H = heads,
/// T = seq, V = vocab), all float32:
/// - per layer: residual input x, q, attention output, residual after attention (4ND); k, v
///   (2NK); gate and up (2NF); two reciprocal-RMS vectors (2N); attention probabilities
///   (B*H*T^2). The two normalised inputs are not kept: backward recomputes them from the
///   residual and its reciprocal RMS (`RMSNorm.normalize`) into the shared `xn`;
/// - once: final residual and its norm (2ND), final reciprocal RMS (N), one chunk of logits
///   (R x V with R = `logitRows`, at most 2^24 / V rows: the head and the loss run chunk by
///   chunk, so the N x V logits are never held at once);
/// - scratch: the normalised input xn and three N x D gradients (4ND), dk and dv (2NK) and one
///   N x F buffer.
/// `LlamaActivations.bytes(config:batch:seq:)` is that sum; the memory test checks it against
/// the allocations.
public final class LlamaActivations {
    public let batch: Int, seq: Int
    var tokenIds: [Int32]
    var targets: [Int32]

    final class Layer {
        let x, rstd1, q, k, v, probs, att, x2, rstd2, g, u: Tensor
        init(n: Int, d: Int, kv: Int, f: Int, probs p: Int) {
            x = Tensor(zeros: [n, d]); rstd1 = Tensor(zeros: [n])
            q = Tensor(zeros: [n, d]); k = Tensor(zeros: [n, kv]); v = Tensor(zeros: [n, kv])
            probs = Tensor(zeros: [p]); att = Tensor(zeros: [n, d]); x2 = Tensor(zeros: [n, d])
            rstd2 = Tensor(zeros: [n])
            g = Tensor(zeros: [n, f]); u = Tensor(zeros: [n, f])
        }
    }
    let layers: [Layer]
    let xL, xf, rstdf, logits: Tensor
    /// Rows of the logits chunk.
    let logitRows: Int

    /// Rows per logits chunk: at most `logitChunkElements` logits, at least one row.
    static func logitRows(config c: LlamaConfig, tokens n: Int) -> Int { max(1, min(n, logitChunkElements / c.vocab)) }
    /// 2^24 floats (64 MiB). Smaller chunks re-pack the head weight and re-read and re-write
    /// its whole gradient once per chunk: at 2^22 (131 rows of llama60m's 32,000-word
    /// vocabulary) that cost 8% of llama60m's step (`bench/compare.sh --preset llama60m`).
    static let logitChunkElements = 1 << 24
    // scratch
    let xn, dX, dA, dq, dk, dv, hbuf: Tensor
    let attention: CausalAttention

    init(config c: LlamaConfig, batch: Int, seq: Int) {
        self.batch = batch; self.seq = seq
        let n = batch * seq, d = c.dim, kv = c.kvHeads * c.headDim, f = c.ffnDim
        attention = CausalAttention(batch: batch, seq: seq, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
        layers = (0..<c.layers).map { _ in Layer(n: n, d: d, kv: kv, f: f, probs: batch * c.heads * seq * seq) }
        xL = Tensor(zeros: [n, d]); xf = Tensor(zeros: [n, d]); rstdf = Tensor(zeros: [n])
        logitRows = LlamaActivations.logitRows(config: c, tokens: n)
        logits = Tensor(zeros: [logitRows, c.vocab])
        xn = Tensor(zeros: [n, d]); dX = Tensor(zeros: [n, d]); dA = Tensor(zeros: [n, d]); dq = Tensor(zeros: [n, d])
        dk = Tensor(zeros: [n, kv]); dv = Tensor(zeros: [n, kv]); hbuf = Tensor(zeros: [n, f])
        tokenIds = [Int32](repeating: 0, count: n)
        targets = [Int32](repeating: -1, count: n)
    }

    /// Bytes of float32 activations and scratch for a batch shape (see the type's comment).
    public static func bytes(config c: LlamaConfig, batch: Int, seq: Int) -> Int {
        let n = batch * seq, d = c.dim, kv = c.kvHeads * c.headDim, f = c.ffnDim
        let perLayer = 4 * n * d + 2 * n * kv + 2 * n * f + 2 * n + batch * c.heads * seq * seq
        let once = 2 * n * d + n + logitRows(config: c, tokens: n) * c.vocab
        let scratch = 4 * n * d + 2 * n * kv + n * f
        return 4 * (c.layers * perLayer + once + scratch)
    }

    /// Bytes actually allocated by this instance (float buffers only).
    public var allocatedBytes: Int {
        var total = [xL, xf, rstdf, logits, xn, dX, dA, dq, dk, dv, hbuf].reduce(0) { $0 + $1.byteCount }
        for l in layers {
            total += [l.x, l.rstd1, l.q, l.k, l.v, l.probs, l.att, l.x2, l.rstd2, l.g, l.u]
                .reduce(0) { $0 + $1.byteCount }
        }
        return total
    }
}

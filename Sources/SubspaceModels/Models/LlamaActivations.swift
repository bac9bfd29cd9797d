import SubspaceCore

/// Every buffer one pass of `LlamaModel` needs, for a fixed batch shape: an arena allocated
/// once per (batch, seq, mode) and reused across steps, so a step touches no fresh pages.
///
/// The buffers are `LlamaArchitecture.activationBuffers(batch:seq:)`; this type only
/// allocates them, in one of two layouts:
/// - **training**: what backward needs is kept per layer (one set of per-layer buffers for
///   each layer), plus backward scratch shared by all layers;
/// - **inference** (forward only: eval, sampling, forward-only step rules): a single set of
///   per-layer buffers that every layer reuses in turn (the residual stream is updated in
///   place) and no backward scratch, so the arena does not grow with depth.
///
/// `LlamaActivations.bytes(config:batch:seq:)` is the training arena's size and
/// `LlamaArchitecture.arenaBytes(batch:seq:mode:)` either's; the memory tests check them
/// against `allocatedBytes`.
public final class LlamaActivations {
    public let batch: Int, seq: Int
    public let mode: ForwardMode
    var tokenIds: [Int32]
    var targets: [Int32]

    final class Layer {
        let x, rstd1, q, k, v, probs, att, x2, rstd2, g, u: Tensor
        init(_ t: (String) -> Tensor) {
            x = t("x"); rstd1 = t("rstd1"); q = t("q"); k = t("k"); v = t("v"); probs = t("probs")
            att = t("att"); x2 = t("x2"); rstd2 = t("rstd2"); g = t("g"); u = t("u")
        }
        var tensors: [Tensor] { [x, rstd1, q, k, v, probs, att, x2, rstd2, g, u] }
    }

    /// Backward scratch (training layout only).
    final class Scratch {
        let dX, dA, dq, dk, dv: Tensor
        init(_ t: (String) -> Tensor) { dX = t("dX"); dA = t("dA"); dq = t("dq"); dk = t("dk"); dv = t("dv") }
        var tensors: [Tensor] { [dX, dA, dq, dk, dv] }
    }

    /// One per layer when training; one in all in inference.
    let layers: [Layer]
    /// The final residual: its own buffer when training, the single layer's `x` in inference.
    let xL: Tensor
    let xf, rstdf, logits, xn, hbuf: Tensor
    let scratch: Scratch?
    /// Rows of the logits chunk.
    let logitRows: Int
    let attention: CausalAttention

    init(config c: LlamaConfig, batch: Int, seq: Int, mode: ForwardMode, precision: MatmulPrecision = .fp32) {
        self.batch = batch; self.seq = seq; self.mode = mode
        let n = batch * seq
        var shapes: [String: [Int]] = [:]
        for b in LlamaArchitecture(config: c).activationBuffers(batch: batch, seq: seq, precision: precision) { shapes[b.name] = b.shape }
        func t(_ name: String) -> Tensor { Tensor(zeros: shapes[name]!) }
        attention = CausalAttention(batch: batch, seq: seq, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
        layers = (0..<(mode == .training ? c.layers : 1)).map { _ in Layer(t) }
        xL = mode == .training ? t("xL") : layers[0].x
        xf = t("xf"); rstdf = t("rstdf"); logits = t("logits"); xn = t("xn"); hbuf = t("hbuf")
        scratch = mode == .training ? Scratch(t) : nil
        logitRows = shapes["logits"]![0]
        tokenIds = [Int32](repeating: 0, count: n)
        targets = [Int32](repeating: -1, count: n)
    }

    /// The buffers layer `l` works in.
    @inline(__always) func layer(_ l: Int) -> Layer { mode == .training ? layers[l] : layers[0] }

    /// Where layer `l` writes its output residual: the next layer's input (training), or in
    /// place over its own input (inference: `x` is dead once `x2` holds x + attention).
    @inline(__always) func residualOut(_ l: Int, layers count: Int) -> Tensor {
        if mode == .inference { return layers[0].x }
        return l + 1 < count ? layers[l + 1].x : xL
    }

    /// Bytes of the training arena for a batch shape (`LlamaArchitecture.arenaBytes`).
    public static func bytes(config c: LlamaConfig, batch: Int, seq: Int) -> Int {
        LlamaArchitecture(config: c).arenaBytes(batch: batch, seq: seq, mode: .training)
    }

    /// Bytes actually allocated by this instance (float buffers only).
    public var allocatedBytes: Int {
        var all = [xf, rstdf, logits, xn, hbuf] + (scratch?.tensors ?? [])
        if mode == .training { all.append(xL) }
        for l in layers { all += l.tensors }
        return all.reduce(0) { $0 + $1.byteCount }
    }
}

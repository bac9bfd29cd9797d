import SubspaceCore

/// The LM head under `--precision bf16` without whole-tensor bf16 copies.
///
/// The head is the largest operand of a step (llama60m: a 32,000 x 512 weight and 524 x
/// 32,000 logits per chunk). Rounding W and dL/dlogits to bf16 whole, as the other products
/// round theirs, held two 33 MB copies at the step's peak (W for the whole call, dY per
/// product). Here instead:
///
/// - W is rounded one vocabulary block at a time (`headBlockRows` rows, 8 MiB of bf16) into
///   a pooled buffer, just before the products that read it;
/// - dL/dlogits is rounded in place: after the loss, each row's bf16 values are packed into
///   the first half of its own fp32 row (`BF16.compressRows`; bf16 row stride 2V), so the
///   products read it where it lies;
/// - the backward of chunk c and the forward of chunk c+1 share each block's rounding: for
///   each block, in descending vocabulary order, dx_c += dY_c[:, B] W_B, dW_B += dY_c[:, B]^T
///   x_c, then logits_{c+1}[:, B] = x_{c+1} W_B^T. The fp32 logits of block B = [b0, b1)
///   occupy bytes [4 b0, 4 b1) of each row, where the bf16 dY columns [2 b0, 2 b1) lay: for
///   b0 >= B's size those columns are above b1, already consumed in descending order, and
///   the lowest block overwrites only its own (just used) and the next block's columns.
///
/// So W is rounded (chunks + 1) times per step, the same count as whole copies took (once
/// for W and once per chunk for dY), and the bf16 working set is one W block plus two chunks
/// of x. The products and their fp32 accumulation are those of `Linear`'s bf16 path; only
/// the head's input gradient is summed over vocabulary blocks (in fp32, block by block).
extension LlamaModel {
    /// Logits of rows r0 ..< r1 of `a.xf` into `a.logits` (rows 0 ..< r1 - r0), bf16
    /// operands, W rounded block by block.
    func headForwardBF16(_ a: LlamaActivations, rows r0: Int, _ r1: Int) {
        let d = config.dim, v = config.vocab, rows = r1 - r0
        BF16.withCopy(of: a.xf.data + r0 * d, count: rows * d) { x in
            forEachHeadBlock { b0, b1, w in
                BLAS.gemmBF16(transB: true, m: rows, n: b1 - b0, k: d, a: x, lda: d, b: w, ldb: d, beta: 0,
                              c: a.logits.data + b0, ldc: v)
            }
        }
    }

    /// The training head under bf16: logits, `loss(r0, r1)` on each chunk (which turns the
    /// logits into dL/dlogits in place), dL/dxf into `dx` and the weight gradient into
    /// `dHead` (nil when the head is frozen), chunk by chunk with the next chunk's forward
    /// fused into this one's backward (see the type's notes).
    func headTrainBF16(
        _ a: LlamaActivations, dx: UnsafeMutablePointer<Float>, dHead: UnsafeMutablePointer<Float>?,
        loss: (Int, Int) -> Void
    ) {
        let n = a.batch * a.seq, d = config.dim, v = config.vocab, chunk = a.logitRows
        headForwardBF16(a, rows: 0, min(n, chunk))
        BF16.withBuffer(count: 2 * chunk * d) { xs in
            var r0 = 0
            while r0 < n {
                let r1 = min(n, r0 + chunk), next = r1 < n ? (r1, min(n, r1 + chunk)) : nil
                loss(r0, r1)
                BF16.compressRows(a.logits.data, rows: r1 - r0, columns: v)
                let dy = UnsafeRawPointer(a.logits.data).assumingMemoryBound(to: UInt16.self)
                let x = UnsafePointer(xs), xNext = UnsafePointer(xs + chunk * d)
                BF16.convert(a.xf.data + r0 * d, to: xs, count: (r1 - r0) * d)
                if let next { BF16.convert(a.xf.data + next.0 * d, to: xs + chunk * d, count: (next.1 - next.0) * d) }
                var first = true
                forEachHeadBlock(descending: true) { b0, b1, w in
                    BLAS.gemmBF16(m: r1 - r0, n: d, k: b1 - b0, a: dy + b0, lda: 2 * v, b: w, ldb: d, beta: first ? 0 : 1,
                                  c: dx + r0 * d, ldc: d)
                    first = false
                    if let dHead {
                        BLAS.gemmBF16(transA: true, m: b1 - b0, n: d, k: r1 - r0, a: dy + b0, lda: 2 * v, b: x, ldb: d, beta: 1,
                                      c: dHead + b0 * d, ldc: d)
                    }
                    if let next {
                        BLAS.gemmBF16(transB: true, m: next.1 - next.0, n: b1 - b0, k: d, a: xNext, lda: d, b: w, ldb: d,
                                      beta: 0, c: a.logits.data + b0, ldc: v)
                    }
                }
                r0 = r1
            }
        }
    }

    /// Calls `body(b0, b1, w)` for each block of `headBlockRows` rows of the head weight
    /// with `w` its rows b0 ..< b1 rounded to bf16 (a pooled buffer, reused block to block).
    private func forEachHeadBlock(descending: Bool = false, _ body: (Int, Int, UnsafePointer<UInt16>) -> Void) {
        let d = config.dim, v = config.vocab
        let size = max(1, headBlockRowsOverride ?? LlamaArchitecture.headBlockRows(config: config))
        let starts = Array(stride(from: 0, to: v, by: size))
        BF16.withBuffer(count: min(v, size) * d) { w in
            for b0 in descending ? starts.reversed() : starts {
                let b1 = min(v, b0 + size)
                BF16.convert(head.value.data + b0 * d, to: w, count: (b1 - b0) * d)
                body(b0, b1, UnsafePointer(w))
            }
        }
    }
}

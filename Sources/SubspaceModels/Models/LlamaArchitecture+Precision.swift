import SubspaceCore

extension LlamaArchitecture {
    /// Bytes of bf16 operand copies a `--precision bf16` pass holds at once: each product of
    /// a slot (`Linear` under `BLAS.gemmBF16`) rounds its two fp32 operands into a scratch
    /// buffer of 2 bytes per element, freed when the product returns, so over every dense
    /// slot the peak is the largest single product's pair: forward `x W^T` (x and W), input
    /// gradient `dy W` (dy and W) and weight gradient `dy^T x` (dy and x). The LM head
    /// (`Llama+HeadBF16.swift`) holds one block of `headBlockRows` rows of its weight and two
    /// logits chunks of its input; its logits gradient is rounded in place, in the logits
    /// buffer. Zero in fp32. Master weights, gradients and activations stay fp32 (the bf16
    /// logits chunk is smaller: `logitChunkElements`).
    public func mixedPrecisionBytes(batch: Int, seq: Int, precision: MatmulPrecision) -> Int {
        guard precision == .bf16 else { return 0 }
        let n = batch * seq
        func pairs(rows: Int, inF: Int, outF: Int) -> Int {
            let x = rows * inF, y = rows * outF, w = inF * outF
            return max(x + w, y + w, x + y)
        }
        let rows = Self.logitRows(config: config, tokens: n, precision: precision)
        let head = Self.headBlockRows(config: config) * config.dim + 2 * rows * config.dim
        let slotsMax = allSlots.map { pairs(rows: n, inF: $0.inFeatures, outF: $0.outFeatures) }.max() ?? 0
        return 2 * max(head, slotsMax)
    }
}

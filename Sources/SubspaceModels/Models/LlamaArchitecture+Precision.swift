import SubspaceCore

extension LlamaArchitecture {
    /// Bytes of bf16 operand copies a `--precision bf16` pass holds at once: each product
    /// (`Linear` under `BLAS.gemmBF16`) rounds its two fp32 operands into a scratch buffer
    /// of 2 bytes per element, freed when the product returns, so the peak is the largest
    /// single product's pair: over every dense slot, forward `x W^T` (x and W), input
    /// gradient `dy W` (dy and W) and weight gradient `dy^T x` (dy and x). The LM head's
    /// weight is rounded once while its logits chunks run (`headChunks`), so there it is W
    /// plus the larger of its products' other operands (the weight gradient's dy and x).
    /// Zero in fp32. Master weights, gradients and activations stay fp32.
    public func mixedPrecisionBytes(batch: Int, seq: Int, precision: MatmulPrecision) -> Int {
        guard precision == .bf16 else { return 0 }
        let n = batch * seq
        func pairs(rows: Int, inF: Int, outF: Int) -> Int {
            let x = rows * inF, y = rows * outF, w = inF * outF
            return max(x + w, y + w, x + y)
        }
        let rows = Self.logitRows(config: config, tokens: n)
        let head = config.dim * config.vocab + rows * config.dim + rows * config.vocab
        let slotsMax = allSlots.map { pairs(rows: n, inF: $0.inFeatures, outF: $0.outFeatures) }.max() ?? 0
        return 2 * max(head, slotsMax)
    }
}

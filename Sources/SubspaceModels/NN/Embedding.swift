import SubspaceCore

/// Token embedding: row `tokens[i]` of the table `[vocab, dim]` becomes row i of the output.
///
/// Activations kept for backward: only the token ids (N Int32).
public enum Embedding {
    public static func forward(
        tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        count n: Int, dim: Int
    ) {
        Parallel.ranges(n, grain: 256) { r in
            for i in r { (out + i * dim).update(from: table + Int(tokens[i]) * dim, count: dim) }
        }
    }

    /// dTable[tokens[i]] += dOut[i]. Serial: repeated tokens would race.
    public static func backward(
        tokens: UnsafePointer<Int32>, dOut: UnsafePointer<Float>, dTable: UnsafeMutablePointer<Float>,
        count n: Int, dim: Int
    ) {
        for i in 0..<n {
            let dst = dTable + Int(tokens[i]) * dim, src = dOut + i * dim
            for j in 0..<dim { dst[j] += src[j] }
        }
    }
}

import SubspaceCore
import SubspaceModels

/// Cuts a token stream into training batches.
///
/// Sequence k is the T + 1 tokens starting at k * T: inputs are the first T, targets the last
/// T. There are M = (count - 1) / T whole sequences, and sequence indices wrap modulo M.
/// Without shuffling, micro-batch j (counted over the whole run, j = step * gradAccum + i)
/// takes sequences j*B ..< j*B + B, so a run is comparable token for token with any other
/// implementation that reads the file the same way. With shuffling, each pass over the M
/// sequences follows a permutation drawn from `RandomStream(seed).split("epoch", index:)`, so
/// the order is a pure function of (seed, position) and resumes exactly.
public struct SequenceBatches: TrainingBatches {
    public let tokens: [Int32]
    public let batch: Int
    public let seq: Int
    public let shuffle: Bool
    public let seed: UInt64
    /// Micro-batches handed out so far (the resumable data position).
    public var position: Int = 0
    private var order: EpochPermutation

    public init(tokens: [Int32], batch: Int, seq: Int, shuffle: Bool, seed: UInt64) throws {
        guard batch > 0, seq > 0 else { throw DataError("batch and sequence length must be positive") }
        guard tokens.count > seq else {
            throw DataError("the data has \(tokens.count) tokens, fewer than one sequence of \(seq + 1)")
        }
        self.tokens = tokens; self.batch = batch; self.seq = seq; self.shuffle = shuffle; self.seed = seed
        order = EpochPermutation(count: (tokens.count - 1) / seq, seed: seed)
    }

    /// Whole sequences in the stream.
    public var sequenceCount: Int { (tokens.count - 1) / seq }

    /// The sequence at run-wide index `k` (wrapping; permuted per pass when shuffling).
    mutating func sequenceIndex(_ k: Int) -> Int {
        shuffle ? order.item(k) : k % sequenceCount
    }

    /// The next micro-batch.
    public mutating func next() -> TokenBatch {
        var inputs = [Int32](), targets = [Int32]()
        inputs.reserveCapacity(batch * seq); targets.reserveCapacity(batch * seq)
        for b in 0..<batch {
            let start = sequenceIndex(position * batch + b) * seq
            inputs += tokens[start..<(start + seq)]
            targets += tokens[(start + 1)..<(start + seq + 1)]
        }
        position += 1
        return TokenBatch(tokens: inputs, targets: targets, batch: batch, seq: seq)
    }

    /// Every whole sequence once, in order, in batches of `batch` sequences: for evaluation.
    /// A final partial batch is dropped (it would force a second activation shape) unless it
    /// is the only one. `limit` caps the number of batches.
    public func evaluationBatches(limit: Int? = nil) -> [TokenBatch] {
        var out: [TokenBatch] = []
        var k = 0
        while k < sequenceCount, out.count < (limit ?? Int.max) {
            let b = min(batch, sequenceCount - k)
            if b < batch && !out.isEmpty { break }
            var inputs = [Int32](), targets = [Int32]()
            for i in 0..<b {
                let start = (k + i) * seq
                inputs += tokens[start..<(start + seq)]
                targets += tokens[(start + 1)..<(start + seq + 1)]
            }
            out.append(TokenBatch(tokens: inputs, targets: targets, batch: b, seq: seq))
            k += b
        }
        return out
    }
}

import SubspaceCore
import SubspaceModels

/// Cuts prompt-completion examples into micro-batches of `batch` rows of `seq` positions.
///
/// Row layout: the example's tokens x = prompt ++ completion, inputs x[0 ..< n-1], targets
/// x[1 ..< n], where targets inside the prompt are -100 (ignored by the loss, Hugging Face's
/// convention), so only completion tokens are learnt. Rows are right-padded (inputs with
/// `padID`, targets with -100): under the causal mask padding after the last real token
/// changes no real position's output, so no attention mask is needed. An example longer
/// than seq + 1 tokens keeps its last seq + 1 (the prompt loses its start; the completion is
/// kept whole); a completion longer than `seq` is refused.
///
/// Order: pass e over the examples follows `EpochPermutation(seed)` when shuffling, file
/// order otherwise; the position (micro-batches handed out) is the whole resumable state.
/// Tokens per step (the run's counters) count padded positions, `batch * seq`.
public struct ExampleBatches: TrainingBatches {
    public let examples: [PromptCompletionExample]
    public let batch: Int
    public let seq: Int
    public let shuffle: Bool
    public let padID: Int32
    public var position: Int = 0
    private var order: EpochPermutation

    public init(examples: [PromptCompletionExample], batch: Int, seq: Int, shuffle: Bool, seed: UInt64, padID: Int32 = 0) throws {
        guard batch > 0, seq > 0 else { throw DataError("batch and sequence length must be positive") }
        guard !examples.isEmpty else { throw DataError("there are no prompt-completion examples") }
        if let long = examples.firstIndex(where: { $0.completion.count > seq }) {
            throw DataError("example \(long + 1) has a completion of \(examples[long].completion.count) tokens, more than the sequence length \(seq)")
        }
        self.examples = examples; self.batch = batch; self.seq = seq; self.shuffle = shuffle; self.padID = padID
        order = EpochPermutation(count: examples.count, seed: seed)
    }

    /// The row of one example: `seq` inputs and `seq` targets (see the type's comment).
    public static func row(_ e: PromptCompletionExample, seq: Int, padID: Int32) -> (inputs: [Int32], targets: [Int32]) {
        var x = e.prompt + e.completion
        var promptCount = e.prompt.count
        if x.count > seq + 1 {
            let drop = x.count - (seq + 1)
            x.removeFirst(drop); promptCount -= drop
        }
        var inputs = [Int32](repeating: padID, count: seq), targets = [Int32](repeating: -100, count: seq)
        for i in 0..<(x.count - 1) {
            inputs[i] = x[i]
            if i + 1 >= promptCount { targets[i] = x[i + 1] }
        }
        return (inputs, targets)
    }

    func makeBatch(_ indices: [Int]) -> TokenBatch {
        var inputs = [Int32](), targets = [Int32]()
        inputs.reserveCapacity(indices.count * seq); targets.reserveCapacity(indices.count * seq)
        for i in indices {
            let r = Self.row(examples[i], seq: seq, padID: padID)
            inputs += r.inputs; targets += r.targets
        }
        return TokenBatch(tokens: inputs, targets: targets, batch: indices.count, seq: seq)
    }

    public mutating func next() -> TokenBatch {
        let indices = (0..<batch).map { b in
            let k = position * batch + b
            return shuffle ? order.item(k) : k % examples.count
        }
        position += 1
        return makeBatch(indices)
    }

    /// Every example once, in order, in batches of up to `batch` rows (the last may be
    /// smaller: unlike a token stream, every example counts). `limit` caps the batches.
    public func evaluationBatches(limit: Int? = nil) -> [TokenBatch] {
        stride(from: 0, to: examples.count, by: batch).prefix(limit ?? Int.max).map {
            makeBatch(Array($0..<min($0 + batch, examples.count)))
        }
    }
}

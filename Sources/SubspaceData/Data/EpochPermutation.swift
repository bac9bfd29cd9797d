import SubspaceCore
import SubspaceModels

/// The shuffled order of `count` items, one permutation per pass over them (an epoch).
///
/// Pass e follows the Fisher-Yates permutation drawn from `RandomStream(seed).split("epoch",
/// index: e)`, so the item at any run-wide position is a pure function of (seed, position):
/// a resumed run continues the order exactly with nothing saved but the position.
struct EpochPermutation: Sendable {
    let count: Int
    let seed: UInt64
    private var epoch = -1
    private var order: [Int] = []

    init(count: Int, seed: UInt64) { self.count = count; self.seed = seed }

    /// The item at run-wide position `k` (wrapping over passes).
    mutating func item(_ k: Int) -> Int {
        let e = k / count
        if e != epoch {
            var rng = RandomStream(seed: seed).split("epoch", index: UInt64(e))
            order = Array(0..<count)
            for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, rng.int(i + 1)) }
            epoch = e
        }
        return order[k % count]
    }
}

/// A resumable source of training micro-batches: a token stream cut into sequences
/// (`SequenceBatches`) or prompt-completion examples (`ExampleBatches`).
public protocol TrainingBatches: Sendable {
    /// Micro-batches handed out so far (the resumable data position).
    var position: Int { get set }
    /// The next micro-batch.
    mutating func next() -> TokenBatch
}

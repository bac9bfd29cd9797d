import SubspaceCore

/// A whole population in one forward pass (see `PopulationLayout`).
extension LlamaModel {
    /// The first of `parameters` that a population layout cannot perturb, or nil: the
    /// stacked forward adds deltas to dense slot weights (`y = x W^T`), the embedding, the
    /// head and the norm gains; another operator's tensors (adapter factors, tensor-train
    /// cores) need the in-place, one-member-at-a-time evaluation.
    public func parameterOutsidePopulationForward(_ parameters: [Parameter]) -> Parameter? {
        var supported = Set(slots.compactMap { ($0.op as? DenseLinear)?.weight.name })
        supported.formUnion([embedding?.name, head.name, finalNorm.name].compactMap { $0 })
        for b in blocks { supported.formUnion([b.inputNorm.name, b.postNorm.name]) }
        return parameters.first { !supported.contains($0.name) }
    }

    /// Bytes of the inference arena a stacked forward of `members` members, each on a batch
    /// of `batch` x `seq` tokens, allocates (`LlamaArchitecture.arenaBytes`): about `members`
    /// times one member's, since every activation holds all members' rows.
    public func populationArenaBytes(members: Int, batch: Int, seq: Int) -> Int {
        architecture.arenaBytes(batch: members * batch, seq: seq, mode: .inference)
    }

    /// The mean cross-entropy of each member of `population` on `batch`, all members in one
    /// forward pass over the batch repeated `population.members` times (member-major rows),
    /// member i running theta + delta_i. Forward only, in the inference arena (of
    /// `populationArenaBytes`); a pending `backward()` is cancelled.
    ///
    /// Equal, to rounding, to perturbing the weights in place by each member's delta and
    /// calling `loss` (the sums are grouped differently: x W^T + x (delta W)^T rather than
    /// x (W + delta W)^T).
    public func populationLoss(_ batch: TokenBatch, _ population: PopulationLayout) throws -> [Double] {
        let m = population.members
        var tokens: [Int32] = [], targets: [Int32] = []
        tokens.reserveCapacity(m * batch.tokens.count); targets.reserveCapacity(m * batch.tokens.count)
        for _ in 0..<m { tokens += batch.tokens; targets += batch.targets }
        let stacked = TokenBatch(tokens: tokens, targets: targets, batch: m * batch.batch, seq: batch.seq)
        try check(stacked)
        cancelPendingBackward()
        let per = batch.batch * batch.seq
        let a = inferenceBuffers(batch: stacked.batch, seq: stacked.seq)
        population.rowsPerMember = per
        for s in slots { s.population = population }
        defer {
            for s in slots { s.population = nil }
            population.rowsPerMember = 0
        }
        forwardToLogits(stacked, in: a, mode: .inference, population: population)
        var sums = [Double](repeating: 0, count: m), counts = [Int](repeating: 0, count: m)
        let v = config.vocab
        a.targets.withUnsafeBufferPointer { tp in
            headChunks(a, population: population) { r0, r1 in
                var r = r0
                while r < r1 {  // a chunk may straddle members
                    let i = r / per, hi = min(r1, (i + 1) * per)
                    let res = CrossEntropy.forwardBackward(
                        logits: a.logits.data + (r - r0) * v, targets: tp.baseAddress! + r, rows: hi - r, vocab: v, gradScale: nil)
                    sums[i] += res.sum; counts[i] += res.count
                    r = hi
                }
            }
        }
        return (0..<m).map { counts[$0] > 0 ? sums[$0] / Double(counts[$0]) : 0 }
    }
}

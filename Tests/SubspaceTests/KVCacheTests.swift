import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels

/// The key/value cache path (`LlamaModel.extend`, `Sampler.generateCached`) against the
/// reference that recomputes the context per token (`LlamaModel.logits`, `Sampler.generate`).
@Suite struct KVCacheTests {
    /// maxSeq 12: 40 tokens from a 3-token prompt cross the sliding-window boundary.
    static func config(kvHeads: Int, tied: Bool) -> LlamaConfig {
        LlamaConfig(dim: 32, layers: 2, heads: 4, kvHeads: kvHeads, ffnDim: 40, vocab: 50, maxSeq: 12, tiedEmbeddings: tied, initStd: 0.3)
    }

    static func referenceLogits(_ model: LlamaModel, _ ids: [Int32]) throws -> [Float] {
        let ctx = Array(ids.suffix(model.config.maxSeq)), v = model.config.vocab
        let l = try model.logits(TokenBatch(tokens: ctx, targets: [Int32](repeating: -1, count: ctx.count), batch: 1, seq: ctx.count))
        return Array(UnsafeBufferPointer(start: l.data + (ctx.count - 1) * v, count: v))
    }

    static func relative(_ a: [Float], _ b: [Float]) -> Float {
        let diff = zip(a, b).map { abs($0 - $1) }.max()!, scale = b.map { abs($0) }.max()!
        return diff / max(scale, 1e-30)
    }

    /// MHA, GQA, MQA and a tied head: greedy step by step, logits within 1e-5 relative and
    /// the same tokens, before and after the context fills (re-prefill of the last maxSeq).
    @Test(arguments: [(4, false), (2, false), (1, false), (2, true)])
    func greedyMatchesTheReference(kvHeads: Int, tied: Bool) throws {
        let model = try LlamaModel(config: Self.config(kvHeads: kvHeads, tied: tied), seed: 11)
        let maxSeq = model.config.maxSeq
        var ids: [Int32] = [3, 17, 5]
        let cache = model.makeKVCache()
        var cached = try model.extend(ids, cache: cache)
        var worst: Float = 0
        for step in 0..<40 {
            let reference = try Self.referenceLogits(model, ids)
            let r = Self.relative(cached, reference)
            worst = max(worst, r)
            #expect(r < 1e-5, "step \(step) (\(ids.count) tokens): logits differ by \(r) relative")
            let pickC = cached.withUnsafeBufferPointer { b in b.indices.max { b[$0] < b[$1] }! }
            let pickR = reference.withUnsafeBufferPointer { b in b.indices.max { b[$0] < b[$1] }! }
            #expect(pickC == pickR, "step \(step): greedy tokens differ")
            ids.append(Int32(pickR))
            if cache.count < maxSeq {
                cached = try model.extend([Int32(pickR)], cache: cache)
            } else {
                cache.reset()
                cached = try model.extend(Array(ids.suffix(maxSeq)), cache: cache)
            }
        }
        #expect(ids.count > 2 * maxSeq)
    }

    /// Both samplers draw the same tokens from the same stream: greedy, top-k, top-p, and
    /// across the sliding-window boundary.
    @Test(arguments: [(4, false), (2, false), (1, true)])
    func samplersAgree(kvHeads: Int, tied: Bool) throws {
        let model = try LlamaModel(config: Self.config(kvHeads: kvHeads, tied: tied), seed: 5)
        for o in [SamplingOptions(temperature: 0), SamplingOptions(temperature: 0.9, topK: 10),
                  SamplingOptions(temperature: 1.2, topK: 0, topP: 0.7), SamplingOptions(temperature: 0.7, topK: 20, topP: 0.9)] {
            var r1 = RandomStream(seed: 9), r2 = RandomStream(seed: 9)
            let reference = try Sampler.generate(model: model, prompt: [1, 2], count: 30, temperature: o.temperature, topK: o.topK, topP: o.topP, rng: &r1)
            var streamed: [Int32] = []
            let g = try Sampler.generateCached(model: model, prompt: [1, 2], count: 30, options: o, rng: &r2) { streamed.append($0); return true }
            #expect(g.tokens == reference, "\(o)")
            #expect(streamed == g.tokens)
            #expect(g.stats.generatedTokens == 30 && g.stats.prefillTokens == 2)
            #expect(g.stats.windowRefills == 30 - (model.config.maxSeq - 2) - 1)
        }
    }

    /// A prompt longer than the context keeps its last maxSeq tokens, as the reference does.
    @Test func longPrompt() throws {
        let model = try LlamaModel(config: Self.config(kvHeads: 2, tied: false), seed: 2)
        let prompt = (0..<30).map { Int32($0 % 50) }
        var r1 = RandomStream(seed: 1), r2 = RandomStream(seed: 1)
        let reference = try Sampler.generate(model: model, prompt: prompt, count: 5, temperature: 0, rng: &r1)
        let g = try Sampler.generateCached(model: model, prompt: prompt, count: 5, options: SamplingOptions(temperature: 0), rng: &r2)
        #expect(g.tokens == reference)
        #expect(g.stats.prefillTokens == model.config.maxSeq)
    }

    /// A reused cache keeps the prompt's positions: the second sample prefills one token
    /// and draws what a fresh cache would.
    @Test func reusedCacheKeepsThePrompt() throws {
        let model = try LlamaModel(config: Self.config(kvHeads: 2, tied: false), seed: 4)
        let cache = model.makeKVCache()
        let o = SamplingOptions(temperature: 1, topK: 0)
        var r = RandomStream(seed: 3)
        _ = try Sampler.generateCached(model: model, prompt: [4, 5, 6, 7], count: 6, options: o, cache: cache, rng: &r)
        var a = RandomStream(seed: 8), b = RandomStream(seed: 8)
        let again = try Sampler.generateCached(model: model, prompt: [4, 5, 6, 7], count: 6, options: o, cache: cache, rng: &a)
        let fresh = try Sampler.generateCached(model: model, prompt: [4, 5, 6, 7], count: 6, options: o, rng: &b)
        #expect(again.stats.prefillTokens == 1)
        #expect(again.tokens == fresh.tokens)
        // Stopping early from onToken ends after that token.
        var c = RandomStream(seed: 8)
        let short = try Sampler.generateCached(model: model, prompt: [4, 5, 6, 7], count: 6, options: o, cache: cache, rng: &c) { _ in false }
        #expect(short.tokens == Array(fresh.tokens.prefix(1)))
    }

    @Test func memoryAndLimits() throws {
        let c = Self.config(kvHeads: 2, tied: false)
        let model = try LlamaModel(config: c, seed: 0)
        let cache = model.makeKVCache()
        #expect(cache.bytes == 2 * c.layers * c.kvHeads * c.headDim * c.maxSeq * 4)
        #expect(throws: ConfigurationError.self) { try model.extend([], cache: cache) }
        #expect(throws: ConfigurationError.self) { try model.extend([50], cache: cache) }
        _ = try model.extend([Int32](repeating: 1, count: c.maxSeq), cache: cache)
        #expect(throws: ConfigurationError.self) { try model.extend([1], cache: cache) }
        // Nothing of the training or inference arenas was allocated.
        #expect(model.activationBytes == 0)
        let other = try LlamaModel(config: Self.config(kvHeads: 1, tied: false), seed: 0)
        #expect(throws: ConfigurationError.self) { try other.extend([1], cache: model.makeKVCache()) }
    }

    /// Top-p keeps the smallest most-likely set with mass >= p (transformers'
    /// TopPLogitsWarper), at least one token.
    @Test func topP() throws {
        let probs: [Float] = [0.05, 0.5, 0.15, 0.3]
        let logits = probs.map { Foundation.log($0) }
        var rng = RandomStream(seed: 0)
        var counts = [0, 0, 0, 0]
        for _ in 0..<4000 {
            let t = logits.withUnsafeBufferPointer { Sampler.pick($0, SamplingOptions(temperature: 1, topK: 0, topP: 0.75), &rng) }
            counts[Int(t)] += 1
        }
        #expect(counts[0] == 0 && counts[2] == 0)
        #expect(abs(Double(counts[1]) / 4000 - 0.625) < 0.03)
        // p = 0.85 needs the third token; a tiny p keeps only the most likely one.
        for _ in 0..<2000 {
            let t = logits.withUnsafeBufferPointer { Sampler.pick($0, SamplingOptions(temperature: 1, topK: 0, topP: 0.85), &rng) }
            #expect(t != 0)
            let one = logits.withUnsafeBufferPointer { Sampler.pick($0, SamplingOptions(temperature: 1, topK: 3, topP: 1e-6), &rng) }
            #expect(one == 1)
        }
        #expect(throws: ConfigurationError.self) { try SamplingOptions(topP: 0).validate() }
        #expect(throws: ConfigurationError.self) { try SamplingOptions(topP: 1.01).validate() }
        #expect(throws: ConfigurationError.self) { try SamplingOptions(topP: .nan).validate() }
    }

    /// The one-pass top-k equals a stable descending sort's first k, ties included.
    @Test func topKSelection() {
        var rng = RandomStream(seed: 4)
        for trial in 0..<50 {
            let row = (0..<200).map { _ in Float(rng.int(30)) }  // many ties
            let k = 1 + trial % 40
            let sorted = Array(row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(k))
            #expect(row.withUnsafeBufferPointer { Sampler.largest($0, k) } == sorted)
        }
    }
}

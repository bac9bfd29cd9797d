import Foundation
import SubspaceCore

/// How the next token is drawn from the logits, in transformers' warper order: temperature
/// (`TemperatureLogitsWarper`), then top-k (`TopKLogitsWarper`, Fan et al., 2018), then
/// top-p (`TopPLogitsWarper`, nucleus sampling, Holtzman et al., 2020), then one draw from
/// the renormalised distribution. Temperature 0 is greedy decoding (transformers'
/// `do_sample=False`: the first maximal logit).
public struct SamplingOptions: Sendable, Equatable {
    /// Softmax temperature; 0 is greedy. Default 0.8, the value this tool has always
    /// sampled its end-of-training sample with (transformers' default, 1.0, reads noisier
    /// from the small models trained here).
    public var temperature: Float
    /// Keep the k most likely tokens (0 = all). Default 40 (Fan et al.'s setting; within
    /// a token of transformers' 50).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability sums to at least p
    /// (at least one token). Default 1: off, as in transformers.
    public var topP: Float

    public init(temperature: Float = 0.8, topK: Int = 40, topP: Float = 1) {
        self.temperature = temperature; self.topK = topK; self.topP = topP
    }

    /// Throws `ConfigurationError` for a negative or non-finite temperature, a negative
    /// top-k, or a top-p outside (0, 1].
    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw ConfigurationError("temperature must be non-negative, got \(temperature)") }
        guard topK >= 0 else { throw ConfigurationError("top-k must be non-negative, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw ConfigurationError("top-p must be in (0, 1], got \(topP)") }
    }
}

/// Time and token counts of one `Sampler.generateCached` call.
public struct GenerationStats: Sendable, Equatable {
    /// Prompt positions run in the prefill: the prompt's last `maxSeq` tokens less a prefix
    /// a reused cache already held (at least one, whose logits the first draw needs).
    public var prefillTokens = 0
    public var prefillSeconds = 0.0
    /// Tokens produced (and the time from the end of the prefill to the last of them).
    public var generatedTokens = 0
    public var decodeSeconds = 0.0
    /// Steps that found the cache full and re-ran the last context of tokens
    /// (sliding-window sampling past the model's context).
    public var windowRefills = 0

    public init() {}

    /// Adds another call's figures (several samples).
    public mutating func add(_ o: GenerationStats) {
        prefillTokens += o.prefillTokens; prefillSeconds += o.prefillSeconds
        generatedTokens += o.generatedTokens; decodeSeconds += o.decodeSeconds; windowRefills += o.windowRefills
    }
}

/// Autoregressive sampling from a `LlamaModel`.
///
/// Two paths, which produce the same tokens: `generateCached` prefills the prompt once and
/// then runs one position per token against a `KVCache` (what `subspace sample` uses);
/// `generate` recomputes the whole context for every token and is kept as the reference
/// the cached path is tested against (`KVCacheTests`).
///
/// The context is the last `maxSeq` tokens, each at positions `0..<maxSeq`: once the
/// prompt plus the output outgrow it (sliding-window sampling), every new token sees the
/// last `maxSeq` tokens at those positions. The cached path keeps exactly these semantics by
/// re-prefilling the last `maxSeq` tokens on each step past the context (rather than
/// shifting the cache, which would keep keys computed from tokens that have left the
/// window, and positions beyond the rotary table). So past the context a step costs a
/// full-context forward pass, as without the cache.
public enum Sampler {
    /// The reference path: recomputes the forward pass over the last `maxSeq` tokens for
    /// every new token (no cache). `onToken` sees each token as it is drawn; generation
    /// ends after `count` tokens, at `stop`, or after a token for which `shouldStop` is true.
    public static func generate(
        model: LlamaModel, prompt: [Int32], count: Int, temperature: Float = 0.8, topK: Int = 40, topP: Float = 1,
        rng: inout RandomStream, stop: Int32? = nil, shouldStop: (Int32) -> Bool = { _ in false },
        onToken: (Int32) -> Void = { _ in }
    ) throws -> [Int32] {
        guard !prompt.isEmpty else { throw ConfigurationError("the prompt must contain at least one token") }
        guard count >= 0 else { throw ConfigurationError("token count must be non-negative") }
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP)
        try options.validate()
        let v = model.config.vocab
        var ids = prompt
        var out: [Int32] = []
        for _ in 0..<count {
            let ctx = Array(ids.suffix(model.config.maxSeq))
            let logits = try model.logits(TokenBatch(tokens: ctx, targets: [Int32](repeating: -1, count: ctx.count), batch: 1, seq: ctx.count))
            let next = pick(UnsafeBufferPointer(start: logits.data + (ctx.count - 1) * v, count: v), options, &rng)
            ids.append(next)
            out.append(next)
            onToken(next)
            if let stop, next == stop { break }
            if shouldStop(next) { break }
        }
        return out
    }

    /// What `generateCached` returns.
    public struct Generation: Sendable {
        public var tokens: [Int32]
        public var stats: GenerationStats
    }

    /// Samples with a key/value cache: the prompt (its last `maxSeq` tokens) is prefilled in
    /// one forward pass, then each token is one position (`LlamaModel.extend`). Draws the
    /// same tokens as `generate` with the same options and stream (greedy: token for token;
    /// the logits agree to float32 rounding).
    ///
    /// - Parameters:
    ///   - cache: reused when given: positions that already hold a prefix of the prompt are
    ///     kept (several samples of one prompt prefill it once); a new cache otherwise.
    ///   - stop: a token that ends generation (included in the output, as transformers'
    ///     `eos_token_id`).
    ///   - onToken: sees each token as it is drawn; returning false ends generation after
    ///     it (stop strings, which need the tokenizer, are decided there).
    public static func generateCached(
        model: LlamaModel, prompt: [Int32], count: Int, options: SamplingOptions = SamplingOptions(),
        cache: KVCache? = nil, rng: inout RandomStream, stop: Int32? = nil, onToken: (Int32) -> Bool = { _ in true }
    ) throws -> Generation {
        guard !prompt.isEmpty else { throw ConfigurationError("the prompt must contain at least one token") }
        guard count >= 0 else { throw ConfigurationError("token count must be non-negative") }
        try options.validate()
        let maxSeq = model.config.maxSeq
        let cache = cache ?? model.makeKVCache()
        var stats = GenerationStats()
        var out: [Int32] = []
        guard count > 0 else { return Generation(tokens: out, stats: stats) }

        // Prefill: keep the cached positions that match the context, run the rest (at
        // least the last token, whose logits the first draw needs).
        var ids = prompt
        let ctx = Array(ids.suffix(maxSeq))
        var keep = 0
        while keep < min(cache.count, ctx.count - 1), cache.tokens[keep] == ctx[keep] { keep += 1 }
        cache.truncate(to: keep)
        let t0 = DispatchTime.now().uptimeNanoseconds
        var logits = try model.extend(Array(ctx[keep...]), cache: cache)
        let t1 = DispatchTime.now().uptimeNanoseconds
        stats.prefillTokens = ctx.count - keep
        stats.prefillSeconds = Double(t1 - t0) / 1e9

        while true {
            let next = logits.withUnsafeBufferPointer { pick($0, options, &rng) }
            ids.append(next)
            out.append(next)
            let more = onToken(next)
            if !more || out.count == count || next == stop { break }
            if cache.count < maxSeq {
                logits = try model.extend([next], cache: cache)
            } else {
                // Past the context: the last maxSeq tokens at positions 0..<maxSeq, exactly
                // as the reference path sees them.
                cache.reset()
                logits = try model.extend(Array(ids.suffix(maxSeq)), cache: cache)
                stats.windowRefills += 1
            }
        }
        stats.generatedTokens = out.count
        stats.decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
        return Generation(tokens: out, stats: stats)
    }

    /// Draws a token from one row of logits (see `SamplingOptions`). Both paths use it, so
    /// the same stream draws the same tokens. With top-p off it is the draw this tool has
    /// always made: candidates in descending logit order under top-k (ties by lower id),
    /// else in id order, weights `exp((logit - max) / temperature)`, one uniform draw.
    public static func pick(_ row: UnsafeBufferPointer<Float>, _ o: SamplingOptions, _ rng: inout RandomStream) -> Int32 {
        let v = row.count
        if o.temperature == 0 {
            var best = 0
            for i in 1..<v where row[i] > row[best] { best = i }
            return Int32(best)
        }
        var idx: [Int]
        if o.topK > 0 && o.topK < v {
            idx = largest(row, o.topK)
        } else if o.topP < 1 {
            idx = Array(0..<v)
            idx.sort { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }
        } else {
            idx = Array(0..<v)
        }
        var m = -Float.infinity
        for j in idx where row[j] > m { m = row[j] }
        var w = idx.map { Double(Foundation.exp((row[$0] - m) / o.temperature)) }
        if o.topP < 1 {
            // idx is in descending order: keep the shortest prefix holding mass >= p.
            let target = Double(o.topP) * w.reduce(0, +)
            var cum = 0.0, keep = idx.count
            for (j, wj) in w.enumerated() {
                cum += wj
                if cum >= target { keep = j + 1; break }
            }
            idx.removeLast(idx.count - keep)
            w.removeLast(w.count - keep)
        }
        var u = Double(rng.uniform()) * w.reduce(0, +)
        var pick = idx.last!
        for (j, wj) in zip(idx, w) { u -= wj; if u <= 0 { pick = j; break } }
        return Int32(pick)
    }

    /// The ids of the k largest entries in descending order, ties by lower id (what a
    /// stable descending sort's first k are), in one pass: O(v) while few entries beat the
    /// k-th, instead of sorting the whole vocabulary for every token.
    static func largest(_ row: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        var ids: [Int] = [], vals: [Float] = []
        ids.reserveCapacity(k + 1); vals.reserveCapacity(k + 1)
        for i in 0..<row.count {
            let x = row[i]
            if vals.count == k, !(x > vals[k - 1]) { continue }
            var j = vals.count
            while j > 0, vals[j - 1] < x { j -= 1 }
            vals.insert(x, at: j); ids.insert(i, at: j)
            if vals.count > k { vals.removeLast(); ids.removeLast() }
        }
        return ids
    }
}

import Foundation
import SubspaceCore

/// Autoregressive sampling from a `LlamaModel`: temperature scaling and top-k filtering
/// (Fan et al., 2018). Temperature 0 is greedy decoding. The context is the last
/// `maxSeq` tokens; each new token recomputes the forward pass (no key/value cache: the
/// models this runs on CPU are small and sampling is not the hot path).
public enum Sampler {
    public static func generate(
        model: LlamaModel, prompt: [Int32], count: Int, temperature: Float = 0.8, topK: Int = 40,
        rng: inout RandomStream, stop: Int32? = nil, onToken: (Int32) -> Void = { _ in }
    ) throws -> [Int32] {
        guard !prompt.isEmpty else { throw ConfigurationError("the prompt must contain at least one token") }
        guard count >= 0 else { throw ConfigurationError("token count must be non-negative") }
        guard temperature >= 0, temperature.isFinite else { throw ConfigurationError("temperature must be non-negative") }
        guard topK >= 0 else { throw ConfigurationError("top-k must be non-negative") }
        let v = model.config.vocab
        var ids = prompt
        var out: [Int32] = []
        for _ in 0..<count {
            let ctx = Array(ids.suffix(model.config.maxSeq))
            let logits = try model.logits(TokenBatch(tokens: ctx, targets: [Int32](repeating: -1, count: ctx.count), batch: 1, seq: ctx.count))
            let row = Array(UnsafeBufferPointer(start: logits.data + (ctx.count - 1) * v, count: v))
            let next: Int32
            if temperature == 0 {
                next = Int32(row.indices.max { row[$0] < row[$1] }!)
            } else {
                var idx = Array(0..<v)
                if topK > 0 && topK < v {
                    idx.sort { row[$0] > row[$1] }
                    idx = Array(idx.prefix(topK))
                }
                let m = idx.map { row[$0] }.max()!
                let w = idx.map { Double(Foundation.exp((row[$0] - m) / temperature)) }
                var u = Double(rng.uniform()) * w.reduce(0, +)
                var pick = idx.last!
                for (j, wj) in zip(idx, w) { u -= wj; if u <= 0 { pick = j; break } }
                next = Int32(pick)
            }
            ids.append(next)
            out.append(next)
            onToken(next)
            if let stop, next == stop { break }
        }
        return out
    }
}

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData

/// Accuracy on a classification file (prompt-completion examples whose completions are a few
/// label words), scored as lm-evaluation-harness scores multiple choice (`acc`): each
/// example's prompt is followed by every label in turn, the label's log-likelihood
/// sum_t log p(c_t | prompt, c_<t) is computed, and the prediction is the label with the
/// highest sum. No length normalisation: with labels of similar length `acc` and
/// `acc_norm` agree, and the unnormalised sum is what training on the completion optimises.
public enum ChoiceAccuracy {
    /// The completion's summed log-probability for each row, forward only, `batch` rows at
    /// a time. Rows are laid out as `ExampleBatches.row` lays them (the same truncation),
    /// at the shortest sequence length that holds the longest row (at most `seq`).
    public static func logLikelihoods(model: LlamaModel, rows: [PromptCompletionExample], seq: Int, batch: Int) throws -> [Double] {
        let t = min(seq, max(1, rows.map { $0.prompt.count + $0.completion.count - 1 }.max() ?? 1))
        let v = model.config.vocab
        var out: [Double] = []
        out.reserveCapacity(rows.count)
        for start in stride(from: 0, to: rows.count, by: max(1, batch)) {
            let chunk = rows[start..<min(start + batch, rows.count)]
            var inputs = [Int32](), targets = [Int32]()
            for r in chunk {
                let row = ExampleBatches.row(r, seq: t, padID: 0)
                inputs += row.inputs; targets += row.targets
            }
            let logits = try model.logits(TokenBatch(tokens: inputs, targets: targets, batch: chunk.count, seq: t))
            targets.withUnsafeBufferPointer { tp in
                for b in 0..<chunk.count {
                    // The loss kernel's summed -log p over the row's completion targets.
                    let r = CrossEntropy.forwardBackward(logits: logits.data + b * t * v, targets: tp.baseAddress! + b * t, rows: t, vocab: v, gradScale: nil)
                    out.append(-r.sum)
                }
            }
        }
        return out
    }

    /// The fraction of `examples` whose own completion is the most likely of `labels`
    /// (a tie goes to the first label listed). Examples whose completion is not a label count
    /// as wrong.
    public static func accuracy(model: LlamaModel, examples: [PromptCompletionExample], labels: [[Int32]], seq: Int, batch: Int) throws -> Double {
        guard !examples.isEmpty, !labels.isEmpty else { return .nan }
        let rows = examples.flatMap { e in labels.map { PromptCompletionExample(prompt: e.prompt, completion: $0) } }
        let ll = try logLikelihoods(model: model, rows: rows, seq: seq, batch: batch)
        var right = 0
        for (i, e) in examples.enumerated() {
            let scores = ll[(i * labels.count)..<((i + 1) * labels.count)]
            let best = scores.indices.max { scores[$0] < scores[$1] }!
            if labels[best - i * labels.count] == e.completion { right += 1 }
        }
        return Double(right) / Double(examples.count)
    }
}

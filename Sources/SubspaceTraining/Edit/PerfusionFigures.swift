import Foundation
import SubspaceCore
import SubspaceModels

/// A mean loss before and after an edit.
public struct BeforeAfter: Codable, Equatable, Sendable {
    public var before: Double
    public var after: Double
    public init(before: Double, after: Double) { self.before = before; self.after = after }
}

/// What a Perfusion edit did: the new word's use (loss of the tokens after it) on the
/// examples it was fitted on and on held-out sentences, the loss on unrelated text, and how
/// the gate behaves (s(e) at the word's occurrences; on unrelated text, the largest s and how
/// many rows reach beta, where the gate is at least half open).
public struct PerfusionFigures: Codable, Equatable, Sendable {
    public var examplesLoss: BeforeAfter
    public var heldOutLoss: BeforeAfter?
    public var validationLoss: BeforeAfter
    public var validationTokens: Int
    public var keyScores: [Float]
    public var heldOutKeyScores: [Float]?
    public var validationMaxScore: Float
    public var validationRowsAtBeta: Int
    public var validationRows: Int
}

extension PerfusionEdit {
    /// Measures the edit against `source` (the unedited model).
    public func figures(source: LlamaModel, examples: PerfusionExamples, heldOut: PerfusionExamples?, validation: [TokenBatch]) throws -> PerfusionFigures {
        func loss(_ m: LlamaModel, _ batches: [TokenBatch]) throws -> (Double, Int) {
            var sum = 0.0, n = 0
            for b in batches { let r = try m.loss(b); sum += r.loss * Double(r.tokens); n += r.tokens }
            return (n > 0 ? sum / Double(n) : .nan, n)
        }
        func pair(_ batches: [TokenBatch]) throws -> (BeforeAfter, tokens: Int) {
            let before = try loss(source, batches)
            return (BeforeAfter(before: before.0, after: try loss(model, batches).0), before.1)
        }
        func keyScores(_ e: PerfusionExamples) throws -> [Float] {
            let s = try scores([e.batch()])
            return e.keyRows().map { s[$0] }
        }
        let v = try scores(validation), unrelated = try pair(validation)
        return PerfusionFigures(
            examplesLoss: try pair([examples.batch()]).0, heldOutLoss: try heldOut.map { try pair([$0.batch()]).0 },
            validationLoss: unrelated.0, validationTokens: unrelated.tokens,
            keyScores: try keyScores(examples), heldOutKeyScores: try heldOut.map(keyScores),
            validationMaxScore: v.max() ?? 0, validationRowsAtBeta: v.filter { $0 >= settings.beta }.count, validationRows: v.count)
    }
}

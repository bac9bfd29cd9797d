import Foundation
import SubspaceCore

/// Supervised fine-tuning data in TRL's prompt-completion format: a JSON Lines file (`.jsonl`)
/// with one object per line, `{"prompt": "...", "completion": "..."}` (other keys are ignored,
/// blank lines skipped). The loss is taken on the completion's tokens only, as TRL's
/// `SFTTrainer` does by default for this format (`completion_only_loss`).
///
/// A classification task is such a file whose completions are a few label words
/// (`ChoiceAccuracy` then also reports accuracy). Split: the last 10% of the examples (at
/// least one) are validation, the rule token files follow; shuffle the file once when
/// making it so that the held-out tenth is a random sample.
public struct PromptCompletionRecord: Sendable, Equatable {
    public let prompt: String
    public let completion: String
    public init(prompt: String, completion: String) { self.prompt = prompt; self.completion = completion }
}

/// One tokenized example. Prompt and completion are encoded separately and concatenated, so
/// the boundary between them is exact whatever the tokenizer would merge across it.
public struct PromptCompletionExample: Sendable, Equatable {
    public let prompt: [Int32]
    public let completion: [Int32]
    public init(prompt: [Int32], completion: [Int32]) { self.prompt = prompt; self.completion = completion }

    /// `record` encoded with `tokenizer`, prompt and completion apart.
    public init(_ record: PromptCompletionRecord, tokenizer: BPETokenizer) {
        self.init(prompt: tokenizer.encode(record.prompt), completion: tokenizer.encode(record.completion))
    }
}

public enum PromptCompletionFile {
    public static func isExampleFile(_ path: String) -> Bool { path.hasSuffix(".jsonl") }

    /// Reads and checks every line; errors name the file and the line.
    public static func read(path: String) throws -> [PromptCompletionRecord] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("cannot read the prompt-completion file '\(path)'")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DataError("'\(path)' is not UTF-8 text")
        }
        var out: [PromptCompletionRecord] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let at = "line \(i + 1) of '\(path)'"
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw DataError("\(at) is not a JSON object")
            }
            guard let prompt = object["prompt"] as? String, let completion = object["completion"] as? String else {
                throw DataError("\(at) needs string fields \"prompt\" and \"completion\"")
            }
            if completion.isEmpty { throw DataError("\(at) has an empty completion: there is nothing to learn") }
            out.append(PromptCompletionRecord(prompt: prompt, completion: completion))
        }
        if out.count < 2 { throw DataError("'\(path)' holds \(out.count) example\(out.count == 1 ? "" : "s"); training and validation need at least 2") }
        return out
    }

    /// The training and validation examples: the last 10% (at least one) are validation.
    public static func split<T>(_ examples: [T]) -> (train: [T], validation: [T]) {
        let held = max(1, examples.count / 10)
        return (Array(examples.dropLast(held)), Array(examples.suffix(held)))
    }

    /// The distinct completions of a classification file, in first-seen order, when there
    /// are between 2 and `maxLabels` of them; nil for free-form completions.
    public static func labels(_ records: [PromptCompletionRecord], maxLabels: Int = 16) -> [String]? {
        var seen: [String] = []
        for r in records where !seen.contains(r.completion) {
            seen.append(r.completion)
            if seen.count > maxLabels { return nil }
        }
        return seen.count >= 2 ? seen : nil
    }
}

import ArgumentParser
import Foundation
import Subspace

/// `subspace merge`: an adapter checkpoint as a plain Hugging Face LLaMA folder
/// (`Checkpoint.merge`).
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge a checkpoint's adapters into its weights and write a plain Hugging Face LLaMA folder.")

    @Option(help: "Checkpoint with adapters (a run directory or its checkpoint/), or a base model with --adapter.") var checkpoint: String
    @Option(help: "A PEFT adapter folder (adapter_config.json, adapter_model.safetensors) to put on --checkpoint first.") var adapter: String?
    @Option(help: "Output folder (config.json, model.safetensors, tokenizer files).") var out: String
    @Flag(help: "Replace --out if it holds a model.") var overwrite = false

    func run() throws {
        let n: Int = guarded {
            try Checkpoint.merge(
                from: checkpointDirectory(checkpoint), adapter: adapter.map { URL(fileURLWithPath: $0) }, to: URL(fileURLWithPath: out),
                overwrite: overwrite)
        }
        print("merged the adapters of \(n) linear slots; wrote \(out)")
    }
}

import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


/// Why a checkpoint could not be saved, loaded or restored. `description` is one line that
/// names the file; `kind` lets callers and tests tell the cases apart.
public struct CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable, Equatable {
        /// The checkpoint directory or one of its files does not exist.
        case missingFile
        /// A file exists but cannot be parsed: truncated, not JSON, not safetensors, ...
        case corruptFile
        /// `config.json` is readable but lacks a key or holds an impossible value.
        case invalidConfig
        /// `config.json` describes a LLaMA variant this engine does not implement.
        case unsupportedConfig
        /// The checkpoint's configuration differs from the model it is restored into.
        case configMismatch
        /// A weight the configuration requires is absent.
        case missingTensor
        /// A weight has a different shape from the one the configuration implies.
        case shapeMismatch
        /// The weights file holds a tensor the model does not have.
        case unexpectedTensor
        /// The optimizer state belongs to other rules or parameters, or does not fit them.
        case optimizerMismatch
        /// Saving would replace a directory that is not a checkpoint.
        case notACheckpoint
        /// The operating system refused a read, write, sync, rename or removal.
        case io
    }

    public let kind: Kind
    /// The path of the file (or directory) concerned.
    public let path: String
    public let message: String

    public init(_ kind: Kind, _ path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    init(_ kind: Kind, _ url: URL, _ message: String) { self.init(kind, url.path, message) }

    public var description: String { "checkpoint \(path): \(message)" }
}

import Foundation

// The errors every layer throws, at the bottom of the stack so that no layer needs another
// to report a user's mistake. Each `description` is one line that names what is wrong.

/// A setting that cannot work: an impossible model shape, a hyperparameter out of range, a
/// request that contradicts the run it continues.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Input data that cannot be used: a missing or unreadable file, text that is not UTF-8, a
/// token id outside the vocabulary, a file system refusal while reading or writing.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

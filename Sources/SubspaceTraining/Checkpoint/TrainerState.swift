import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim


/// Where a run stands, saved beside the weights so that training resumes exactly: the step
/// counter, the data cursor, every random stream the run draws from, the run's resolved
/// configuration and the best validation loss so far. `extras` carries anything else a
/// caller needs (strings, so the file stays readable).
///
/// Stored as `trainer_state.json` with snake_case keys. Non-finite losses are written as the
/// strings "inf", "-inf" and "nan", which plain JSON cannot hold as numbers.
public struct TrainerState: Codable, Equatable, Sendable {
    /// Version of this file's layout; readers refuse newer ones.
    public static let formatVersion = 1

    /// Optimizer steps completed.
    public var step: Int
    /// Training tokens consumed so far.
    public var tokensSeen: Int
    /// Where the data loader continues (its own unit: a token offset, a batch index, ...).
    public var dataPosition: Int
    /// Random streams by role (`"data"`, `"dropout"`, ...), each continuing bit for bit.
    public var rng: [String: RandomStream]
    /// The run's resolved configuration as a JSON document, kept opaque so the checkpoint
    /// format does not depend on the CLI's config type.
    public var runConfig: String?
    /// Lowest validation loss seen, if any evaluation ran.
    public var bestValLoss: Double?
    public var extras: [String: String]

    public init(
        step: Int, tokensSeen: Int = 0, dataPosition: Int = 0, rng: [String: RandomStream] = [:],
        runConfig: String? = nil, bestValLoss: Double? = nil, extras: [String: String] = [:]
    ) {
        self.step = step; self.tokensSeen = tokensSeen; self.dataPosition = dataPosition; self.rng = rng
        self.runConfig = runConfig; self.bestValLoss = bestValLoss; self.extras = extras
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, tokensSeen = "tokens_seen", dataPosition = "data_position"
        case rng, runConfig = "run_config", bestValLoss = "best_val_loss", extras
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decodeIfPresent(Int.self, forKey: .formatVersion) ?? 1
        guard version <= TrainerState.formatVersion else {
            throw DecodingError.dataCorruptedError(
                forKey: .formatVersion, in: c,
                debugDescription: "format_version \(version) is newer than this reader (\(TrainerState.formatVersion))")
        }
        step = try c.decode(Int.self, forKey: .step)
        tokensSeen = try c.decodeIfPresent(Int.self, forKey: .tokensSeen) ?? 0
        dataPosition = try c.decodeIfPresent(Int.self, forKey: .dataPosition) ?? 0
        rng = try c.decodeIfPresent([String: RandomStream].self, forKey: .rng) ?? [:]
        runConfig = try c.decodeIfPresent(String.self, forKey: .runConfig)
        bestValLoss = try c.decodeIfPresent(Double.self, forKey: .bestValLoss)
        extras = try c.decodeIfPresent([String: String].self, forKey: .extras) ?? [:]
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(TrainerState.formatVersion, forKey: .formatVersion)
        try c.encode(step, forKey: .step)
        try c.encode(tokensSeen, forKey: .tokensSeen)
        try c.encode(dataPosition, forKey: .dataPosition)
        try c.encode(rng, forKey: .rng)
        try c.encodeIfPresent(runConfig, forKey: .runConfig)
        try c.encodeIfPresent(bestValLoss, forKey: .bestValLoss)
        try c.encode(extras, forKey: .extras)
    }

    /// Why a decoded state cannot be used, or nil. A random stream needs exactly four state
    /// words (anything else would trap on its first draw); counters cannot be negative.
    func problem() -> String? {
        if step < 0 || tokensSeen < 0 || dataPosition < 0 { return "negative step, token or data counter" }
        for (name, s) in rng.sorted(by: { $0.key < $1.key }) where s.state.count != 4 {
            return "random stream '\(name)' has \(s.state.count) state words, expected 4"
        }
        return nil
    }
}

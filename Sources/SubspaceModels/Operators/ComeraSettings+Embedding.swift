import Foundation
import SubspaceCore

extension ComeraSettings {
    /// The TTM embedding's settings (`TensorTrainEmbedding`); `ComeraSettings.embedding` nil
    /// keeps the embedding a dense table.
    ///
    /// **Off by default** (`--tt-embedding` turns it on). The paper tensorizes its embedding
    /// because in its six-encoder MNLI model (BERT's 30,522 x 768 table, a 3-class head) the
    /// table is the largest matrix by far and the only vocabulary-sized one; its gates are also
    /// what makes the reference's rank loss active at all (`other-seed-methods.md` section 10).
    /// A language model here has an untied `[V, d]` LM head as large as the table, which CoMERA
    /// does not tensorize (its logits need every row each step), so the table's share of the
    /// compression is smaller; and in the published comparison (`results/comera/*/summary.tsv`)
    /// the TT table cost 0.1-0.3 nats of validation loss after 150 steps for its 2M fewer
    /// parameters on `small`. Turning it on gives the paper's full configuration.
    public struct Embedding: Sendable, Equatable, Codable {
        /// The largest internal rank: 32, the reference's embedding ranks `[1, 32, 32, 32, 1]`
        /// (its linear layers use 30); each is also capped by its cut.
        public var rank: Int = 32
        /// The vocabulary's modes m_1 ... m_D (their product may exceed V: padding) and the
        /// dimension's n_1 ... n_D (their product must be d); nil: `automaticModes`.
        public var vocabModes: [Int]? = nil
        public var dimModes: [Int]? = nil

        /// D = 4 modes per side, the reference's `[[16, 20, 10, 10], [4, 4, 8, 6]]` for
        /// 30,522 x 768.
        public static let order = 4

        public init() {}

        /// The smallest V' >= V whose balanced split into `order` modes (`TensorTrainShape.
        /// balancedFactors`) has no mode above 2 ceil(V^(1/D)): V itself when it factors
        /// evenly (4,096 = 8^4; 32,000 = 10 x 10 x 16 x 20), else a few padded rows (a prime
        /// V would otherwise give one mode of V).
        public static func paddedVocabModes(_ v: Int, order: Int = order) -> [Int]? {
            let limit = 2 * Int(ceil(pow(Double(v), 1 / Double(order)) - 1e-9))
            for p in max(v, 1)...(4 * max(v, 1) + (1 << order)) {
                if let f = TensorTrainShape.balancedFactors(p, into: order), f.last! <= max(limit, 2) { return f }
            }
            return nil
        }

        /// The TT shape of the `[vocab, dim]` table.
        /// - Throws: `ConfigurationError` for a rank below 1, modes of different counts, a mode
        ///   below 2, vocabulary modes whose product is below V, dimension modes whose product
        ///   is not d, or a d that does not split into `order` modes.
        public func shape(vocab: Int, dim: Int) throws -> TensorTrainShape {
            guard rank >= 1 else { throw ConfigurationError("the TT embedding rank must be at least 1 (got \(rank))") }
            var m = vocabModes ?? [], n = dimModes ?? []
            if vocabModes == nil || dimModes == nil {
                guard let f = TensorTrainShape.balancedFactors(dim, into: Self.order) else {
                    throw ConfigurationError("the embedding dim \(dim) cannot be split into \(Self.order) modes of at least 2 (set --tt-embedding-modes)")
                }
                n = dimModes ?? f
                m = vocabModes ?? Self.paddedVocabModes(vocab, order: n.count) ?? []
            }
            guard m.count == n.count, (1...8).contains(m.count) else {
                throw ConfigurationError("--tt-embedding-modes needs as many vocabulary as dimension modes, 1 to 8 (got \(m.count) and \(n.count))")
            }
            guard (m + n).allSatisfy({ $0 >= 2 }) else { throw ConfigurationError("--tt-embedding-modes: every mode must be at least 2 (got \(m) / \(n))") }
            let mv = m.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            guard mv >= vocab else { throw ConfigurationError("--tt-embedding-modes: the vocabulary modes \(m) multiply to \(mv), below the vocabulary size \(vocab)") }
            guard mv <= 64 * max(vocab, 1) else { throw ConfigurationError("--tt-embedding-modes: the vocabulary modes \(m) multiply to \(mv), over 64 times the vocabulary size \(vocab)") }
            guard n.reduce(1, *) == dim else { throw ConfigurationError("--tt-embedding-modes: the dimension modes \(n) multiply to \(n.reduce(1, *)), not the embedding dim \(dim)") }
            return TensorTrainShape(outModes: m, inModes: n, maxRank: rank)
        }

        /// What can be checked without the model: the rank and the modes' counts.
        public func validate() throws {
            guard rank >= 1 else { throw ConfigurationError("the TT embedding rank must be at least 1 (got \(rank))") }
            if (vocabModes == nil) != (dimModes == nil) { throw ConfigurationError("--tt-embedding-modes sets the vocabulary and the dimension modes together") }
            if let m = vocabModes, let n = dimModes, m.count != n.count || !(1...8).contains(m.count) || !(m + n).allSatisfy({ $0 >= 2 }) {
                throw ConfigurationError("--tt-embedding-modes needs as many vocabulary as dimension modes (1 to 8), each at least 2 (got \(m) / \(n))")
            }
        }
    }
}

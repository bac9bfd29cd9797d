import Foundation
import SubspaceCore

/// Int8 EGGROLL pre-training of `NanoEggModel` on bytes (`ESHyperscale/nano-egg`,
/// `run.py`; Sarkar et al. 2025, section 5), one generation per step:
///
/// 1. pair k reads window k of `seq + 1` bytes at a random offset of the training split;
///    both of its members (group size 2, the reference's) read the same bytes, from a zero
///    state;
/// 2. member m's fitness f_m is the sum over the window of the integer log-likelihood
///    (`NanoEggMath.intLogLikelihood`), under its perturbation (`NanoEggNoise`);
/// 3. pair k's score is `sign(f_2k - f_2k+1)` (the reference's `fast_fitness`);
/// 4. every tensor's vote Z = sum_k score_k A_k B_k^T (int) moves each weight by sign(Z),
///    clipped to +-127, where `|Z| 2^4 >= thr_t sqrt(pairs) 4^4`
///    (`NanoEggMath.signUpdate`, `threshold`).
///
/// Differences from the reference, on purpose: windows are drawn afresh each generation
/// from a zero state (the reference streams each sequence across generations, carrying the
/// state); a vote of exactly zero moves nothing (the reference's `where(Z > 0, +1, -1)`
/// moves it by -1 when the threshold is 0, at t = 0); the noise comes from per-tensor
/// streams, not a 2^30-entry table (`NanoEggNoise`); low-rank terms are summed in 64 bits
/// (the reference's int32 could overflow at width 1,024).
public final class NanoEggTrainer {
    public let settings: NanoEggSettings
    public let model: NanoEggModel
    let train: [UInt8], validation: [UInt8]
    public private(set) var step = 0

    public init(settings: NanoEggSettings, train: [UInt8], validation: [UInt8]) throws {
        try settings.validate()
        guard train.count > settings.seq + 1 else { throw ConfigurationError("the training split has \(train.count) bytes; nano-egg needs more than --seq + 1 = \(settings.seq + 1)") }
        guard validation.count > settings.seq + 1 else { throw ConfigurationError("the validation split has \(validation.count) bytes; nano-egg needs more than --seq + 1 = \(settings.seq + 1)") }
        self.settings = settings
        self.train = train; self.validation = validation
        model = NanoEggModel(width: settings.width, layers: settings.layers, seed: settings.seed)
    }

    /// What one generation did.
    public struct Generation: Sendable {
        /// Mean over members of -f / (16 seq): the population's bits per byte on its windows.
        public let trainBits: Double
        /// The step's threshold (fixed point).
        public let threshold: Int
        /// Weights that moved.
        public let moved: Int
    }

    /// Runs one generation (see the type's notes).
    @discardableResult
    public func generation() -> Generation {
        let s = settings, pairs = s.population / 2
        var rng = RandomStream(seed: s.seed).split("nano-egg.data", index: UInt64(step))
        let offsets = (0..<pairs).map { _ in rng.int(train.count - s.seq - 1) }
        let noise = NanoEggNoise(model: model, pairs: pairs, rank: s.rank, sigmaShift: s.sigmaShift,
                                 stream: RandomStream(seed: s.seed).split("nano-egg.noise", index: UInt64(step)))
        let fitness = logLikelihoods(train, offsets: (0..<s.population).map { offsets[$0 / 2] }, noise: noise)
        let scores: [Int] = (0..<pairs).map { k in (fitness[2 * k] - fitness[2 * k + 1]).signum() }
        let thr = NanoEggMath.threshold(step: step, alpha: s.alpha, horizon: s.horizon)
        var moved = 0
        for p in model.parameters {
            let z = noise.vote(p, fitness: scores)
            for i in 0..<p.value.count {
                let w = Int(p.value.data[i]), n = NanoEggMath.signUpdate(w, vote: z[i], threshold: thr, pairs: pairs)
                if n != w { p.value.data[i] = Float(n); moved += 1 }
            }
        }
        step += 1
        let mean = Double(fitness.reduce(0, +)) / Double(fitness.count)
        return Generation(trainBits: -mean / Double(16 * s.seq), threshold: thr, moved: moved)
    }

    /// Each row's summed integer log-likelihood over `seq` bytes from its offset.
    func logLikelihoods(_ bytes: [UInt8], offsets: [Int], noise: NanoEggNoise?) -> [Int] {
        var f = [Int](repeating: 0, count: offsets.count)
        forEachStep(bytes, offsets: offsets, noise: noise) { m, logits, target in
            f[m] += NanoEggMath.intLogLikelihood(logits, count: model.vocab, target: target)
        }
        return f
    }

    /// Runs `seq` steps over rows reading `bytes` from `offsets`, calling `body(row, logits,
    /// target)` for every row and step.
    func forEachStep(_ bytes: [UInt8], offsets: [Int], noise: NanoEggNoise?, _ body: (Int, UnsafePointer<Float>, Int) -> Void) {
        let state = model.zeroState(rows: offsets.count)
        for t in 0..<settings.seq {
            let logits = model.step(offsets.map { Int(bytes[$0 + t]) }, state: state, noise: noise)
            for (m, o) in offsets.enumerated() { body(m, logits.data + m * model.vocab, Int(bytes[o + t + 1])) }
        }
    }

    /// The evaluation windows: `evalWindows` windows of `seq + 1` bytes spread evenly over
    /// the validation split.
    public var evaluationOffsets: [Int] {
        let n = settings.evalWindows, span = validation.count - settings.seq - 1
        return (0..<n).map { $0 * span / max(1, n - 1) }
    }

    /// Bits per byte of the unperturbed model on the evaluation windows: the exact base-2
    /// softmax of its logits (`NanoEggMath.bits`).
    public func evaluate() -> Double {
        var total = 0.0
        forEachStep(validation, offsets: evaluationOffsets, noise: nil) { _, logits, target in
            total += NanoEggMath.bits(logits, count: model.vocab, target: target)
        }
        return total / Double(settings.evalWindows * settings.seq)
    }

    /// Unigram and bigram bits per byte on the same evaluation targets, counted on the
    /// training split: unigram `(c(b) + 1) / (n + 256)` (add-one), bigram
    /// `(c(a, b) + p_uni(b)) / (c(a) + 1)` (the unigram as a prior of weight one byte).
    public func baselines() -> (unigram: Double, bigram: Double) {
        var uni = [Double](repeating: 0, count: 256), bi = [Double](repeating: 0, count: 256 * 256)
        for b in train { uni[Int(b)] += 1 }
        for i in 1..<train.count { bi[Int(train[i - 1]) * 256 + Int(train[i])] += 1 }
        let n = Double(train.count)
        func pUni(_ b: Int) -> Double { (uni[b] + 1) / (n + 256) }
        var u = 0.0, g = 0.0
        for o in evaluationOffsets {
            for t in 0..<settings.seq {
                let a = Int(validation[o + t]), b = Int(validation[o + t + 1])
                u -= Foundation.log2(pUni(b))
                g -= Foundation.log2((bi[a * 256 + b] + pUni(b)) / (uni[a] + 1))
            }
        }
        let count = Double(settings.evalWindows * settings.seq)
        return (u / count, g / count)
    }
}

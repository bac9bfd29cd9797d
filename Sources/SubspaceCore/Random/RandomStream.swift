import Foundation

/// A seeded, splittable, replayable random generator.
///
/// The generator is xoshiro256** (Blackman & Vigna, 2018): 256 bits of state, period
/// 2^256 - 1, fast and statistically strong. Its state is seeded from a 64-bit seed through
/// SplitMix64, as its authors recommend.
///
/// Streams: `split(_:)` derives an independent child stream from this stream's *seed* and a
/// label (for example a parameter name), so "the projection matrix of
/// `model.layers.3.self_attn.q_proj.weight` at refresh 7" is a pure function of
/// `(seed, name, 7)` and can be regenerated at any time instead of stored (Flora, VLoRP).
/// Labels are hashed with 64-bit FNV-1a, which is stable across runs and platforms (unlike
/// Swift's `Hasher`).
///
/// Replay: the whole state is `state` (four words plus the spare normal); saving and
/// restoring it continues the stream bit for bit.
public struct RandomStream: RandomNumberGenerator, Codable, Equatable, Sendable {
    /// The seed this stream was created from (children derive from it).
    public let seed: UInt64
    /// The xoshiro256** state.
    public var state: [UInt64]
    /// A cached second normal deviate from the Box–Muller pair, if any.
    public var spareNormal: Float?

    /// A stream from a 64-bit seed.
    public init(seed: UInt64) {
        self.seed = seed
        var sm = seed
        state = (0..<4).map { _ in RandomStream.splitMix64(&sm) }
        spareNormal = nil
    }

    /// An independent child stream identified by `label` (and optionally an index).
    public func split(_ label: String, index: UInt64 = 0) -> RandomStream {
        var h = RandomStream.fnv1a(label)
        h ^= index &* 0x9E37_79B9_7F4A_7C15
        var mix = seed ^ h
        return RandomStream(seed: RandomStream.splitMix64(&mix))
    }

    /// 64 random bits.
    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    /// Uniform in [0, 1) with 24 bits of resolution.
    public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * uniform()
    }

    /// A uniform integer in `0..<bound` (unbiased, Lemire's method via the standard library).
    public mutating func int(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int.random(in: 0..<bound, using: &self)
    }

    /// A standard normal deviate (Box–Muller; the second deviate of each pair is cached).
    public mutating func normal() -> Float {
        if let s = spareNormal { spareNormal = nil; return s }
        var u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        let r = (-2 * Foundation.log(u1)).squareRoot()
        let theta = 2 * Double.pi * u2
        spareNormal = Float(r * sin(theta))
        return Float(r * cos(theta))
    }

    /// A Rademacher sign (+1 or -1 with equal probability).
    public mutating func sign() -> Float { (next() >> 63) == 0 ? 1 : -1 }

    /// Fills `tensor` with normal deviates of the given mean and standard deviation.
    public mutating func fillNormal(_ tensor: Tensor, mean: Float = 0, std: Float = 1) {
        for i in 0..<tensor.count { tensor.data[i] = mean + std * normal() }
    }

    /// Fills `tensor` with uniform deviates in [low, high).
    public mutating func fillUniform(_ tensor: Tensor, _ low: Float, _ high: Float) {
        for i in 0..<tensor.count { tensor.data[i] = uniform(low, high) }
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    static func splitMix64(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9E37_79B9_7F4A_7C15
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

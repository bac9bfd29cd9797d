import Foundation
import Testing
@testable import SubspaceCore

/// The block Gaussian generator: its log and sine/cosine kernels against libm, its deviates'
/// moments and tails, and replay from the same stream.
struct FastGaussianTests {
    @Test func kernelsMatchLibm() {
        var worst = 0.0
        for x in stride(from: Float(1e-10), to: 1, by: 0.0037) + [Float(2.3e-10), 0.5, 0.70710677, 0.9999999, 1] {
            let v = FastGaussian.log(SIMD8(repeating: x))[0]
            worst = max(worst, abs(Double(v) - Foundation.log(Double(x))) / max(1e-3, abs(Foundation.log(Double(x)))))
        }
        #expect(worst < 1e-6, "log relative error \(worst)")
        var sinErr = 0.0, cosErr = 0.0
        for t in stride(from: -Float.pi / 4, through: Float.pi / 4, by: 0.001) {
            let (s, c) = FastGaussian.sinCos(SIMD8(repeating: t))
            sinErr = max(sinErr, abs(Double(s[0]) - sin(Double(t))))
            cosErr = max(cosErr, abs(Double(c[0]) - cos(Double(t))))
        }
        #expect(sinErr < 2e-7 && cosErr < 2e-7, "sin \(sinErr), cos \(cosErr)")
    }

    @Test func deviatesAreStandardNormal() {
        let n = 1 << 20
        let z = UnsafeMutablePointer<Float>.allocate(capacity: n + 3)
        defer { z.deallocate() }
        var r = RandomStream(seed: 42)
        FastGaussian.fill(z, count: n + 3, stream: &r)
        var m1 = 0.0, m2 = 0.0, m4 = 0.0, beyond2 = 0, maxAbs: Float = 0
        for i in 0..<n {
            let x = Double(z[i])
            m1 += x; m2 += x * x; m4 += x * x * x * x
            if abs(x) > 2 { beyond2 += 1 }
            maxAbs = max(maxAbs, abs(z[i]))
        }
        let mean = m1 / Double(n), variance = m2 / Double(n) - mean * mean
        #expect(abs(mean) < 5 / sqrt(Double(n)), "mean \(mean)")
        #expect(abs(variance - 1) < 0.01, "variance \(variance)")
        #expect(abs(m4 / Double(n) - 3) < 0.05, "fourth moment \(m4 / Double(n))")
        // P(|z| > 2) = 0.0455 for a standard normal.
        #expect(abs(Double(beyond2) / Double(n) - 0.0455) < 0.002)
        #expect(maxAbs <= 6.77 && maxAbs > 4)
        // The two deviates of a pair (lanes l and l + 8 of a block) are uncorrelated.
        var cross = 0.0
        for b in 0..<(n / 16) { for l in 0..<8 { cross += Double(z[16 * b + l]) * Double(z[16 * b + 8 + l]) } }
        #expect(abs(cross / Double(n / 2)) < 0.01)
    }

    @Test func sameStreamSameDeviates() {
        let a = UnsafeMutablePointer<Float>.allocate(capacity: 37), b = UnsafeMutablePointer<Float>.allocate(capacity: 37)
        defer { a.deallocate(); b.deallocate() }
        var r1 = RandomStream(seed: 7).split("x"), r2 = RandomStream(seed: 7).split("x")
        FastGaussian.fill(a, count: 37, stream: &r1)
        FastGaussian.fill(b, count: 37, stream: &r2)
        #expect((0..<37).allSatisfy { a[$0] == b[$0] && a[$0].isFinite })
        #expect(r1 == r2)
        // The block generator advances its stream exactly as 16 deviates' worth of next():
        // one 64-bit draw per pair, in the stream's own order.
        var r3 = RandomStream(seed: 7).split("x"), r4 = r3
        FastGaussian.fill(a, count: 32, stream: &r3)
        let draws = (0..<16).map { _ in r4.next() }
        #expect(r3 == r4 && draws.count == 16)
    }
    /// The AVX-512 generator (gaussian.c) against this SIMD8 loop, forced with `avx512: false`:
    /// the same deviates bit for bit and the same stream state after, on counts that end
    /// inside and on the edges of 16-deviate blocks and 32-deviate pairs of blocks.
    @Test(.enabled(if: VectorISA.avx512, "the CPU has no AVX-512"), arguments: [0, 1, 8, 9, 15, 16, 17, 31, 32, 33, 1000, 4099])
    func avx512MatchesPortable(count: Int) {
        let a = UnsafeMutablePointer<Float>.allocate(capacity: count + 1), b = UnsafeMutablePointer<Float>.allocate(capacity: count + 1)
        defer { a.deallocate(); b.deallocate() }
        a[count] = 7; b[count] = 7
        var r1 = RandomStream(seed: UInt64(count)), r2 = r1
        FastGaussian.fill(a, count: count, stream: &r1, avx512: true)
        FastGaussian.fill(b, count: count, stream: &r2, avx512: false)
        #expect((0..<count).allSatisfy { a[$0].bitPattern == b[$0].bitPattern })
        #expect(r1 == r2)
        #expect(a[count] == 7, "wrote past the end")
    }
}

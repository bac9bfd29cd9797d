import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

@Suite struct LinalgTests {
    func reconstruct(_ u: Tensor, _ s: [Float], _ vt: Tensor) -> Tensor {
        let us = u.copy()
        let k = s.count
        for i in 0..<u.shape[0] { for j in 0..<k { us.data[i * k + j] *= s[j] } }
        return us.matmul(vt)
    }

    @Test func gemmAgainstNaiveLoops() {
        for (m, n, k) in [(3, 5, 4), (300, 70, 90), (70, 300, 33)] {
            for ta in [false, true] { for tb in [false, true] {
                let a = randomTensor(ta ? [k, m] : [m, k], seed: 1), b = randomTensor(tb ? [n, k] : [k, n], seed: 2)
                let c = a.matmul(b, transposeSelf: ta, transposeOther: tb)
                var worst: Float = 0
                for i in 0..<m { for j in 0..<n {
                    var s: Float = 0
                    for l in 0..<k { s += (ta ? a[l * m + i] : a[i * k + l]) * (tb ? b[j * k + l] : b[l * n + j]) }
                    worst = max(worst, abs(s - c[i * n + j]))
                } }
                #expect(worst < 1e-3)
            } }
        }
    }

    @Test(arguments: [[40, 12], [12, 40], [20, 20]])
    func svdReconstructs(shape: [Int]) throws {
        let a = randomTensor(shape, seed: 3)
        let (u, s, vt) = try Linalg.svd(a)
        #expect(relativeError(reconstruct(u, s, vt).array, a.array) < 1e-5)
        #expect(zip(s, s.dropFirst()).allSatisfy { $0 >= $1 })
        let utu = u.matmul(u, transposeSelf: true)
        for i in 0..<s.count { for j in 0..<s.count { #expect(abs(utu[i * s.count + j] - (i == j ? 1 : 0)) < 1e-4) } }
    }

    @Test func svdRejectsNonFinite() {
        let a = randomTensor([4, 4], seed: 1)
        a[5] = .nan
        #expect(throws: LinalgError.self) { try Linalg.svd(a) }
    }

    /// A = Q diag(λ) Qᵀ with known spectrum: the top eigenpairs, largest first, orthonormal.
    @Test func topEigenvectorsOfASymmetricMatrix() throws {
        let n = 24, count = 5
        let q = try Linalg.qr(randomTensor([n, n], seed: 8)).q
        let lambda = (0..<n).map { Float(n - $0) * 1.5 - 10 }  // 26, 24.5, ... (some negative)
        let a = Tensor(zeros: [n, n])
        for i in 0..<n { for j in 0..<n {
            var x: Float = 0
            for l in 0..<n { x += q.data[i * n + l] * lambda[l] * q.data[j * n + l] }
            a.data[i * n + j] = x
        } }
        let (values, vectors) = try Linalg.topEigenvectors(symmetric: a, count: count)
        #expect(vectors.shape == [n, count])
        for j in 0..<count {
            #expect(abs(values[j] - lambda[j]) < 1e-3)
            var dot: Float = 0
            for i in 0..<n { dot += vectors.data[i * count + j] * q.data[i * n + j] }
            #expect(abs(abs(dot) - 1) < 1e-4)
        }
        #expect(throws: LinalgError.self) { try Linalg.topEigenvectors(symmetric: a, count: n + 1) }
        #expect(throws: LinalgError.self) { try Linalg.topEigenvectors(symmetric: randomTensor([3, 4], seed: 1), count: 1) }
        a[3] = .infinity
        #expect(throws: LinalgError.self) { try Linalg.topEigenvectors(symmetric: a, count: 1) }
    }

    @Test func qrIsOrthonormalAndReconstructs() throws {
        let a = randomTensor([30, 8], seed: 4)
        let (q, r) = try Linalg.qr(a)
        #expect(relativeError(q.matmul(r).array, a.array) < 1e-5)
        let qtq = q.matmul(q, transposeSelf: true)
        for i in 0..<8 { for j in 0..<8 { #expect(abs(qtq[i * 8 + j] - (i == j ? 1 : 0)) < 1e-5) } }
        for i in 0..<8 { for j in 0..<i { #expect(r[i * 8 + j] == 0) } }
    }

    @Test func randomizedSVDRecoversLowRank() throws {
        // A = B C of rank 5.
        let a = randomTensor([60, 5], seed: 5).matmul(randomTensor([5, 40], seed: 6))
        var rng = RandomStream(seed: 1)
        let (u, s, vt) = try Linalg.randomizedSVD(a, rank: 5, rng: &rng)
        #expect(relativeError(reconstruct(u, s, vt).array, a.array) < 1e-4)
        let exact = try Linalg.svd(a).s
        for i in 0..<5 { #expect(abs(s[i] - exact[i]) / exact[i] < 1e-4) }
        #expect(throws: LinalgError.self) { try Linalg.randomizedSVD(a, rank: 41, rng: &rng) }
    }

    @Test(arguments: [[64, 16], [16, 64], [32, 32]])
    func newtonSchulzOrthogonalizes(shape: [Int]) throws {
        let g = randomTensor(shape, seed: 7)
        let x = NewtonSchulz.orthogonalize(g)
        #expect(x.shape == g.shape)
        let s = try Linalg.svd(x).s
        // The quintic's fixed band: singular values roughly in [0.6, 1.25].
        #expect(s.allSatisfy { $0 > 0.55 && $0 < 1.3 }, "\(s)")
        // Same singular vectors as G: U^T X V is (nearly) diagonal and positive.
        let (u, _, vt) = try Linalg.svd(g)
        let core = u.matmul(x, transposeSelf: true).matmul(vt, transposeOther: true)
        let k = s.count
        var off: Float = 0
        for i in 0..<k { for j in 0..<k where i != j { off = max(off, abs(core[i * k + j])) } }
        #expect(off < 0.05)
    }

    @Test func randomStreams() {
        var a = RandomStream(seed: 42), b = RandomStream(seed: 42)
        #expect((0..<10).map { _ in a.next() } == (0..<10).map { _ in b.next() })
        // Replay from saved state.
        var c = RandomStream(seed: 1)
        _ = c.normal()
        let saved = c
        var d = saved
        #expect(c.normal() == d.normal() && c.uniform() == d.uniform())
        // Children depend on seed and label only.
        var s1 = RandomStream(seed: 5).split("model.layers.0.mlp.up_proj.weight")
        var s2 = RandomStream(seed: 5).split("model.layers.0.mlp.up_proj.weight")
        var s3 = RandomStream(seed: 5).split("model.layers.1.mlp.up_proj.weight")
        let x = s1.next()
        #expect(x == s2.next() && x != s3.next())
        // Moments.
        var r = RandomStream(seed: 9)
        let xs = (0..<20000).map { _ in Double(r.normal()) }
        let mean = xs.reduce(0, +) / 20000, varc = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 20000
        #expect(abs(mean) < 0.03 && abs(varc - 1) < 0.04)
        let us = (0..<20000).map { _ in r.uniform() }
        #expect(us.allSatisfy { $0 >= 0 && $0 < 1 })
        let ints = (0..<5000).map { _ in r.int(7) }
        #expect(Set(ints) == Set(0..<7))
    }
}

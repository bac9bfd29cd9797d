import Foundation
import Testing
@testable import SubspaceCore
@testable import SubspaceModels

/// The vectorised elementwise kernels against their plain definitions: the AVX-512
/// exponential-and-sum against the portable SIMD8 loop (every value bit for bit), and
/// RMSNorm's 16-lane reductions against sequential double-precision sums.
@Suite struct VectorKernelTests {
    @Test(.enabled(if: FastMath.avx512, "the CPU has no AVX-512"), arguments: [16, 17, 31, 100, 4096, 4099])
    func avx512ExpMatchesPortable(count: Int) {
        var rng = RandomStream(seed: UInt64(count))
        var a = (0..<count).map { _ in Float(rng.normal()) * 30 }
        a[1] = -200; a[2] = 200; a[3] = .nan
        var b = a
        let sa = a.withUnsafeMutableBufferPointer { FastMath.expShiftedSum($0.baseAddress!, count, shift: 1.5) }
        let sb = b.withUnsafeMutableBufferPointer { FastMath.expShiftedSumPortable($0.baseAddress!, count, shift: 1.5) }
        #expect(a[3].isNaN && b[3].isNaN && sa.isNaN && sb.isNaN)
        #expect(a[1] == 0 && a[2] == .infinity)
        a[3] = 0; b[3] = 0
        #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
        var c = (0..<count).map { _ in Float(rng.normal()) * 3 }  // a finite sum to compare
        var d = c
        let s1 = c.withUnsafeMutableBufferPointer { FastMath.expShiftedSum($0.baseAddress!, count, shift: 0) }
        let s2 = d.withUnsafeMutableBufferPointer { FastMath.expShiftedSumPortable($0.baseAddress!, count, shift: 0) }
        #expect(abs(s1 - s2) <= 1e-6 * abs(s2), "\(s1) vs \(s2)")
    }

    /// Forward (rstd and y) and backward (dx, dw) against the same formulas in Double with
    /// sequential sums, for widths with and without a tail after the 16-lane loop.
    @Test(arguments: [16, 40, 256])
    func rmsNormMatchesSequentialSums(dim: Int) {
        let rows = 5
        let x = randomTensor([rows, dim], seed: 1), w = randomTensor([dim], seed: 2), dy = randomTensor([rows, dim], seed: 3)
        let y = Tensor(zeros: [rows, dim]), rstd = Tensor(zeros: [rows]), dx = Tensor(zeros: [rows, dim]), dw = Tensor(zeros: [dim])
        RMSNorm.forward(x: x.data, weight: w.data, y: y.data, rstd: rstd.data, rows: rows, dim: dim, eps: 1e-6)
        RMSNorm.backward(dy: dy.data, x: x.data, weight: w.data, rstd: rstd.data, dx: dx.data, dWeight: dw.data, rows: rows, dim: dim, accumulate: false)
        var dwRef = [Double](repeating: 0, count: dim)
        for i in 0..<rows {
            var ss = 0.0
            for j in 0..<dim { ss += Double(x[i * dim + j]) * Double(x[i * dim + j]) }
            let rs = 1 / (ss / Double(dim) + 1e-6).squareRoot()
            #expect(abs(Double(rstd[i]) - rs) <= 1e-6 * rs)
            var dot = 0.0
            for j in 0..<dim { dot += Double(dy[i * dim + j]) * Double(w[j]) * Double(x[i * dim + j]) * rs }
            for j in 0..<dim {
                let xh = Double(x[i * dim + j]) * rs
                #expect(abs(Double(y[i * dim + j]) - Double(w[j]) * xh) <= 1e-5 * (1 + abs(Double(w[j]) * xh)))
                let want = rs * (Double(dy[i * dim + j]) * Double(w[j]) - xh * dot / Double(dim))
                #expect(abs(Double(dx[i * dim + j]) - want) <= 1e-4 * (1 + abs(want)), "dx[\(i), \(j)]")
                dwRef[j] += Double(dy[i * dim + j]) * xh
            }
        }
        for j in 0..<dim { #expect(abs(Double(dw[j]) - dwRef[j]) <= 1e-4 * (1 + abs(dwRef[j])), "dw[\(j)]") }
    }
}

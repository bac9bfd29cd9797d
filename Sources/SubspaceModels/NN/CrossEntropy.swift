import Foundation
import SubspaceCore

/// Softmax cross-entropy fused with its gradient.
///
/// `forwardBackward` turns the logits into dL/dlogits in place, so the `[N, vocab]` buffer is
/// the only vocabulary-sized activation ever held (PyTorch keeps logits and softmax output
/// separately). Targets below zero are ignored (Hugging Face's -100 convention).
public enum CrossEntropy {
    /// Returns the summed loss over valid rows and their count. The logits are consumed:
    /// when `gradScale` is non-nil they become `gradScale * (softmax - onehot)` (zero rows for
    /// ignored targets); otherwise they are left holding unnormalised exponentials.
    public static func forwardBackward(
        logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>, rows n: Int, vocab: Int,
        gradScale: Float?
    ) -> (sum: Double, count: Int) {
        let workers = min(Parallel.workers, max(1, n / 16))
        var sums = [Double](repeating: 0, count: workers)
        var counts = [Int](repeating: 0, count: workers)
        let per = (n + workers - 1) / workers
        sums.withUnsafeMutableBufferPointer { sp in
            counts.withUnsafeMutableBufferPointer { cp in
                Parallel.perform(workers) { w in
                    var s = 0.0, c = 0
                    for i in (w * per)..<min(n, w * per + per) {
                        let row = logits + i * vocab
                        let t = Int(targets[i])
                        if t < 0 {
                            if gradScale != nil { row.update(repeating: 0, count: vocab) }
                            continue
                        }
                        let target = row[t]
                        let m = FastMath.max(row, vocab)
                        let z = FastMath.expShiftedSum(row, vocab, shift: m)
                        s += Double(Foundation.log(z) + m - target)
                        if let scale = gradScale {
                            FastMath.scale(row, vocab, scale / z)
                            row[t] -= scale
                        }
                        c += 1
                    }
                    sp[w] = s
                    cp[w] = c
                }
            }
        }
        return (sums.reduce(0, +), counts.reduce(0, +))
    }
}

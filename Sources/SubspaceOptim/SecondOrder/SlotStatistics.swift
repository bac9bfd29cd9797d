import SubspaceCore
import SubspaceModels

/// A rule that preconditions with statistics of the linear slots' inputs and output gradients
/// (Kronecker-factor methods: MKOR; K-FAC and Shampoo-style rules would use the same hook).
///
/// The step rule (`BackpropStep`) finds the consumers among its optimizer's rules and, on the
/// steps where one `wantsStatistics(atStep:)`, attaches the model's `LinearSlot` observers,
/// which hand each micro-batch's rows over in place; on other steps no observer runs. The
/// consumer reduces the rows at once (nothing is kept beyond its own vectors) and uses what
/// it gathered when it next updates the slot's weight, in the ordinary or the per-layer mode:
/// the slot's observers fire before its weight gradient is complete.
public protocol SlotStatisticsConsumer: AnyObject {
    /// Whether the step about to run (`step` steps done before it) should gather statistics.
    func wantsStatistics(atStep step: Int) -> Bool
    /// One micro-batch's inputs of `slot` (`[rows, in]`, training forwards only).
    func observeInput(_ slot: LinearSlotSpec, _ x: ActivationView)
    /// One micro-batch's gradient of the loss with respect to the outputs of `slot`
    /// (`[rows, out]`).
    func observeOutputGradient(_ slot: LinearSlotSpec, _ dy: ActivationView)
}

/// A rule that reads the training loss (MKOR-H's switch to a first-order rule). The step rule
/// calls it once per completed step, with the step's mean loss, before the next step.
public protocol LossObserving: AnyObject {
    func observeLoss(_ loss: Float)
}

/// MKOR's rank-1 statistics of one slot over a step's micro-batches:
///
///     a = mean over every input row x_r                               (in floats)
///     g = sum over every output-gradient row dy_r                     (out floats)
///
/// The loss is a mean over the N rows of the step (and 1/accumulation over micro-batches), so
/// dy_r is 1/N of the per-token gradient, and g = mean_r(N dy_r) is the mean per-token
/// output gradient: the reference's `ComputeG` (n · grad_output, averaged over rows, then
/// over accumulated micro-batches). Both are clamped to ±`clip` when read (the reference's
/// `clipping_value`, 100, applied there per row before the mean).
public struct SlotStatistics {
    public let inputSum: Tensor
    public let gradientSum: Tensor
    public private(set) var inputRows = 0
    public private(set) var gradientBatches = 0

    public init(inFeatures: Int, outFeatures: Int) {
        inputSum = Tensor(zeros: [inFeatures])
        gradientSum = Tensor(zeros: [outFeatures])
    }

    /// Adds the rows' column sums of `view` to `sum` (a one-row GEMM against ones).
    private static func addColumnSums(_ view: ActivationView, to sum: Tensor) {
        precondition(view.columns == sum.count, "statistics of \(view.columns) columns into \(sum.count)")
        guard view.rows > 0 else { return }
        let ones = Tensor(shape: [view.rows], repeating: 1)
        BLAS.gemm(
            m: 1, n: view.columns, k: view.rows, a: ones.data, lda: view.rows, b: view.data, ldb: view.columns,
            beta: 1, c: sum.data, ldc: view.columns)
    }

    public mutating func addInput(_ x: ActivationView) {
        SlotStatistics.addColumnSums(x, to: inputSum)
        inputRows += x.rows
    }

    public mutating func addOutputGradient(_ dy: ActivationView) {
        SlotStatistics.addColumnSums(dy, to: gradientSum)
        gradientBatches += 1
    }

    /// Both sides seen at least once.
    public var isComplete: Bool { inputRows > 0 && gradientBatches > 0 }

    /// (a, g) as described above, clamped to ±`clip`.
    public func vectors(clip: Float) -> (a: Tensor, g: Tensor) {
        let a = Tensor(uninitialized: inputSum.shape), g = Tensor(uninitialized: gradientSum.shape)
        let inv = 1 / Float(inputRows)
        for i in 0..<a.count { a.data[i] = min(max(inputSum.data[i] * inv, -clip), clip) }
        for i in 0..<g.count { g.data[i] = min(max(gradientSum.data[i], -clip), clip) }
        return (a, g)
    }
}

import SubspaceCore
import SubspaceModels

/// A rule that can take a parameter's gradient one micro-batch at a time and keep the running
/// sum in a compressed form, so that the full gradient of a micro-batch can be freed as soon
/// as it is complete (VLoRP's "gradient accumulated in projected form").
///
/// **How it fits the per-parameter interface.** `update(_:gradient:lrScale:)` still receives a
/// full gradient once per step; for a rule that accumulates, that gradient is the *last*
/// micro-batch's contribution and is added to whatever `accumulate(_:gradient:)` collected
/// since the previous step (nothing, in the ordinary mode, where the trainer hands over the
/// full accumulated gradient; the result is then the same up to float rounding, because the
/// compression is linear). The pending sum is part of the rule's per-parameter state, made
/// with the projection of the step it belongs to, and is consumed (freed) by the update.
///
/// **Who calls `accumulate`.** `Trainer` in per-layer mode with gradient accumulation and no
/// clipping: during the backward pass of every micro-batch but the last it hands each
/// parameter whose rule `accumulatesCompressed` its gradient as soon as it is complete and
/// releases it, so between micro-batches such a parameter holds only the compressed sum
/// (for ProjFactor max(m, n)·c·r floats instead of m·n). With clipping on, the trainer keeps
/// full gradients (the clip needs the norm of the whole accumulated gradient).
public protocol MicroBatchAccumulating: ParameterOptimizer {
    /// Whether `parameter`'s micro-batch gradients are accumulated in compressed form.
    func accumulatesCompressed(_ parameter: Parameter) -> Bool
    /// Folds one micro-batch's gradient of `parameter` into the pending compressed sum of the
    /// current step. The caller may free `gradient` afterwards.
    func accumulate(_ parameter: Parameter, gradient: Tensor)
    /// Bytes of the pending compressed sum of `parameter` (0 between steps).
    func pendingBytes(for parameter: Parameter) -> Int
    /// Drops every pending sum (a step abandoned half way, e.g. on a non-finite loss).
    func discardPending()
}

extension RoutedOptimizer {
    /// The rule that accumulates `parameter`'s micro-batch gradients in compressed form, if any.
    public func compressedAccumulator(for parameter: Parameter) -> MicroBatchAccumulating? {
        guard let a = optimizer(for: parameter) as? MicroBatchAccumulating, a.accumulatesCompressed(parameter) else {
            return nil
        }
        return a
    }

    /// Drops the pending compressed sums of every rule (see `MicroBatchAccumulating.discardPending`).
    public func discardCompressedAccumulation() {
        for case let a as MicroBatchAccumulating in optimizers { a.discardPending() }
    }

    /// Whether any of the rules can accumulate in compressed form.
    public var hasCompressedAccumulation: Bool { optimizers.contains { $0 is MicroBatchAccumulating } }
}

import Foundation
import SubspaceCore
import SubspaceModels

/// Learning-rate multipliers by optimizer step (0-based, as `torch.optim.lr_scheduler.LambdaLR`
/// sees them: step 0 is the first update).
public enum LearningRateSchedule: Equatable, Sendable, Codable {
    /// A constant multiplier of 1 after an optional linear warmup.
    case constant(warmup: Int)
    /// GaLore's `get_cosine_schedule_with_min_lr_lambda`: linear warmup from 0 over `warmup`
    /// steps, then cosine decay to `minRatio` at `total` steps (GaLore's default min ratio
    /// is 0.1).
    case cosine(warmup: Int, total: Int, minRatio: Float)

    public func multiplier(step: Int) -> Float {
        switch self {
        case .constant(let warmup):
            return step < warmup ? Float(step) / Float(max(1, warmup)) : 1
        case .cosine(let warmup, let total, let minRatio):
            if step < warmup { return Float(step) / Float(max(1, warmup)) }
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            let decay = 0.5 * (1 + cos(Double.pi * progress))
            return minRatio + (1 - minRatio) * Float(decay)
        }
    }
}

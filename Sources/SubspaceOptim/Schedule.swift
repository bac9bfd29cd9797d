import Foundation
import SubspaceCore
import SubspaceModels

/// Learning-rate multipliers by optimizer step (0-based, as `torch.optim.lr_scheduler.LambdaLR`
/// sees them: step 0 is the first update).
///
/// Warm-up never exceeds the run: a run of `steps` steps warms up over at most `steps - 1`
/// steps (`fittedWarmup`), so its last step runs at the peak rate (cosine: at the start of the
/// decay). `train` clamps a longer warm-up (the default 60 with `--steps 20`, say) and says
/// so in one `note:` line; without the clamp `--steps 1` would train at lr 0 and a run shorter
/// than its warm-up would never reach its peak rate. The clamped value is what
/// `run_config.json` records, so a resumed run keeps it.
///
/// On resume with more `--steps`, a cosine schedule is re-stretched to the new total (the
/// steps still to run follow the new curve; those done keep the rates they had), and `train`
/// says so, naming the rate of the next step under the old and the new schedule.
public enum LearningRateSchedule: Equatable, Sendable, Codable {
    /// A constant multiplier of 1 after an optional linear warmup.
    case constant(warmup: Int)
    /// GaLore's `get_cosine_schedule_with_min_lr_lambda`: linear warmup from 0 over `warmup`
    /// steps, then cosine decay to `minRatio` at `total` steps (GaLore's default min ratio
    /// is 0.1).
    case cosine(warmup: Int, total: Int, minRatio: Float)

    /// The warm-up a run of `steps` steps can hold: `warmup`, at most `steps - 1` (and at least 0).
    public static func fittedWarmup(_ warmup: Int, steps: Int) -> Int { max(0, min(warmup, steps - 1)) }

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

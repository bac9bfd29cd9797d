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
    /// `base` with a re-warm-up after every restart (ReLoRA's jagged schedule, Glentis et
    /// al.'s quick recovery): from step `every` on, at each multiple of `every` the rate
    /// restarts at `startRatio` x and climbs linearly over `warmup` steps to `base`'s value
    /// at the end of the climb, then follows `base`. ReLoRA (`Guitaricet/relora`,
    /// `training_utils.py`, `_get_cosine_schedule_with_multiple_warmups_lambda`) climbs
    /// from 0 (`startRatio` 0) over `restart_warmup_steps`; Glentis et al.'s
    /// `cosine_quick_recovery` from 0.001 x over `recovery_steps`. Step indices are
    /// LambdaLR's: step `k * every` is the first update after the k-th restart.
    indirect case restarting(base: LearningRateSchedule, every: Int, warmup: Int, startRatio: Float)

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
        case .restarting(let base, let every, let warmup, let startRatio):
            guard every > 0, step >= every else { return base.multiplier(step: step) }
            let r = step % every
            guard r < warmup else { return base.multiplier(step: step) }
            let target = base.multiplier(step: step - r + warmup)
            return (startRatio + (1 - startRatio) * Float(r) / Float(warmup)) * target
        }
    }
}

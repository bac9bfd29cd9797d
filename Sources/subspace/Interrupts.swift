import Foundation
import Subspace
#if canImport(Glibc)
import Glibc
#endif

/// SIGINT and SIGTERM during training: the first asks the run to stop after the current step
/// and save (`TrainingRun.shouldStop`); a second exits at once (130 or 143, the shells'
/// 128 + signal) without touching the last published checkpoint, which is always whole
/// because saves are atomic. Before the first step of this process completes nothing would be
/// lost, so a signal then exits at once too.
///
/// A SIGINT that was ignored when the process started (a background job of a
/// non-interactive shell, `nohup`) stays ignored, as the shells expect.
enum Interrupts {
    /// Written only by the handler, read by the training loop between steps.
    nonisolated(unsafe) static var received: Int32 = 0
    nonisolated(unsafe) static var graceful = false
    /// Ranks other than 0 of a data-parallel job stop as rank 0 does but say nothing (one
    /// message per job; an aborted job's ranks are ended by SIGTERM).
    nonisolated(unsafe) static var quiet = LaunchEnvironment.current.rank != 0

    /// The signal that asked for the stop, if any.
    static var requested: Int32? { received == 0 ? nil : received }

    static func install() {
        _ = received; _ = graceful; _ = quiet
        for sig in [SIGINT, SIGTERM] {
            let previous = signal(sig, handler)
            if sig == SIGINT, unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) {
                signal(sig, SIG_IGN)
            }
        }
    }

    /// Async-signal-safe: plain stores, `write(2)` and `_exit(2)`.
    private static let handler: @convention(c) (Int32) -> Void = { sig in
        if Interrupts.received != 0 || !Interrupts.graceful {
            let text: StaticString = "\ninterrupted: exiting without saving; the last checkpoint is unchanged\n"
            if !Interrupts.quiet { _ = write(STDERR_FILENO, text.utf8Start, text.utf8CodeUnitCount) }
            _exit(128 + sig)
        }
        Interrupts.received = sig
        let text: StaticString = "\ninterrupt received: saving a checkpoint after this step (interrupt again to exit without saving)\n"
        if Interrupts.quiet { return }
        _ = write(STDERR_FILENO, text.utf8Start, text.utf8CodeUnitCount)
    }
}

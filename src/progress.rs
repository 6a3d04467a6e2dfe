//! Progress reporting with cancellation.
//!
//! Long jobs take a `&dyn Progress`. The CLI binds it to an indicatif bar,
//! tests use [`NoProgress`]. Returning `false` from [`Progress::advance`]
//! asks the job to stop; it then returns [`crate::Error::Cancelled`].

use std::sync::atomic::{AtomicBool, Ordering};

/// Receives progress from a long-running job.
pub trait Progress: Sync {
    /// Announces the total amount of work, in units of the job's choosing.
    fn start(&self, total: u64, what: &str);
    /// Reports `done` more units finished. Returns `false` to cancel.
    fn advance(&self, done: u64) -> bool;
    /// Reports a one-line message (a skipped file, a warning).
    fn message(&self, text: &str);
    /// Shows a short, frequently changing status beside the bar (e.g. the
    /// current loss); ignored by default.
    fn status(&self, _text: &str) {}
    /// Marks the job finished.
    fn finish(&self);
}

/// A progress sink that ignores everything and never cancels.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total: u64, _what: &str) {}
    fn advance(&self, _done: u64) -> bool {
        true
    }
    fn message(&self, _text: &str) {}
    fn finish(&self) {}
}

/// A progress sink that only records a cancellation request, for callers
/// that want to stop a job from another thread.
#[derive(Debug, Default)]
pub struct CancelFlag(AtomicBool);

impl CancelFlag {
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Progress for CancelFlag {
    fn start(&self, _total: u64, _what: &str) {}
    fn advance(&self, _done: u64) -> bool {
        !self.0.load(Ordering::Relaxed)
    }
    fn message(&self, _text: &str) {}
    fn finish(&self) {}
}

/// Set by the first Ctrl-C once [`cancel_on_interrupt`] is installed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // a second Ctrl-C ends the process at once
    // SAFETY: signal() is async-signal-safe (POSIX), called with a valid
    // signal number and the default disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Makes the first Ctrl-C (SIGINT) set a flag, read by [`interrupted`],
/// instead of ending the process, so that a job can stop at its next
/// progress report and save its work; the second one ends the process.
/// Does nothing off Unix.
pub fn cancel_on_interrupt() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic and calls signal(),
    // both async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Whether Ctrl-C was pressed since [`cancel_on_interrupt`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

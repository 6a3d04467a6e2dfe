//! The library's [`Progress`] as an indicatif bar on stderr; Ctrl-C cancels.

use indicatif::{ProgressBar, ProgressStyle};
use ragafusion::progress::{cancel_on_interrupt, interrupted};
use ragafusion::Progress;

/// A terminal progress bar (hidden when stderr is not a terminal).
pub struct Bar(ProgressBar, bool);

impl Bar {
    /// A bar with no length yet.
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        Bar(bar, false)
    }

    /// A bar whose job Ctrl-C cancels at its next progress report (so it
    /// can save what it has); a second Ctrl-C kills the process.
    pub fn interruptible() -> Self {
        cancel_on_interrupt();
        Bar(Self::new().0, true)
    }
}

impl Progress for Bar {
    fn start(&self, total: u64, what: &str) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(what.to_string());
    }

    fn advance(&self, done: u64) -> bool {
        self.0.inc(done);
        !(self.1 && interrupted())
    }

    fn message(&self, text: &str) {
        self.0.suspend(|| eprintln!("{text}"));
    }

    fn status(&self, text: &str) {
        self.0.set_message(text.to_string());
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

//! Panics inside third-party decoders turned into errors. A decoder crate
//! can panic on a corrupt file (symphonia's WAV reader does on a zero
//! sample rate); a caller of ragafusion must get an error naming the file,
//! never a crash. [`guarded`] runs such a call under `catch_unwind`, and a
//! panic hook, installed once and chained to the previous one, keeps
//! quiet about the panics it catches while passing every other panic on.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Whether this thread is inside [`guarded`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes `Err(on_panic(message))`.
pub fn guarded<T, E>(
    f: impl FnOnce() -> Result<T, E>,
    on_panic: impl FnOnce(String) -> E,
) -> Result<T, E> {
    install_hook();
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(on_panic(message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_error_and_values_pass_through() {
        let ok: Result<u8, String> = guarded(|| Ok(3), |m| m);
        assert_eq!(ok, Ok(3));
        let err: Result<u8, String> = guarded(|| panic!("bad header"), |m| format!("caught: {m}"));
        assert_eq!(err, Err("caught: bad header".into()));
        let formatted: Result<u8, String> = guarded(|| panic!("rate {}", 0), |m| m);
        assert_eq!(formatted, Err("rate 0".into()));
        // nested guards restore the outer state
        let nested: Result<u8, String> =
            guarded(|| guarded(|| panic!("inner"), |m| m).or(Ok(1)), |m| m);
        assert_eq!(nested, Ok(1));
        assert!(!GUARDED.with(Cell::get));
    }
}

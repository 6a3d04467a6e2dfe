//! The `ragafusion` command: parses arguments, runs the verb, maps errors to
//! an exit status (0 success, 1 failure, 2 usage error).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::quiet_on_closed_pipe();
    cli::keep_freed_memory();
    cli::init_logging();
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `ragafusion` command: parses arguments, runs the verb, maps errors to
//! an exit status (0 success, 1 failure, 2 usage error).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    ragafusion::memory::keep_freed_memory();
    init_logging();
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Default log filter: our messages at `info`; the decoders' own logs are
/// silenced because their failures reach the user as our errors.
const DEFAULT_LOG_FILTER: &str = "info,symphonia_core=off,symphonia_bundle_mp3=off,\
symphonia_bundle_flac=off,symphonia_format_ogg=off,symphonia_format_riff=off,\
symphonia_codec_vorbis=off,symphonia_codec_pcm=off,symphonia_codec_adpcm=off";

/// Sets up `tracing` output on stderr; `RAGAFUSION_LOG` sets the filter
/// (default: `info` for ragafusion, decoders silenced).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAGAFUSION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

/// Lets a closed pipe end the process quietly (`ragafusion ... | head`),
/// as other command-line tools do, instead of a panic in `println!`.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal; called once,
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

//! `serve`: the web studio (see docs/server.md).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ragafusion::engine::defaults;
use ragafusion::server::guard::usable_token;
use ragafusion::server::{Bound, ServeOptions};

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8642)]
    port: u16,
    /// Address to listen on. Loopback by default; anything else lets other
    /// machines in (use --token).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Checkpoint folder jobs may use (diffusers pipeline or MusicGen);
    /// repeat for several, the first is the default. Default: the shipped
    /// model ($RAGAFUSION_MODEL, else checkpoints/ragafusion-carnatic-v1).
    #[arg(long)]
    model: Vec<PathBuf>,
    /// Open the page in the default browser once listening.
    #[arg(long)]
    open: bool,
    /// Require this token on every request (`Authorization: Bearer T`, or
    /// open the page as /?token=T); at least 16 characters.
    #[arg(long, env = "RAGAFUSION_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where jobs, their files and uploads are kept (kept across restarts).
    #[arg(long, default_value = "ragafusion-studio")]
    data: PathBuf,
    /// Folder searched for `compare` reports (report.html).
    #[arg(long, default_value = ".")]
    reports: PathBuf,
    /// Largest upload, in MB.
    #[arg(long, default_value_t = 200)]
    max_upload_mb: u64,
    /// Jobs that may wait at once; more are refused with 429.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// `cpu`, or `cuda` / `cuda:N` (a build with `--features cuda`).
    #[arg(long, default_value = defaults::DEVICE)]
    device: String,
    /// Compute precision of the models: f32, f16 or bf16 (CUDA).
    #[arg(long, default_value = defaults::DTYPE, value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
}

/// Runs `serve`.
pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(t) = a.token.as_deref().filter(|t| !usable_token(t)) {
        anyhow::bail!(
            "--token: {} characters; use 16 or more visible ASCII characters without ; , \" or \\",
            t.len()
        );
    }
    if a.queue == 0 {
        anyhow::bail!("--queue: must be at least 1");
    }
    if !a.host.is_loopback() {
        eprintln!(
            "warning: listening on {}: other machines can reach this server{}",
            a.host,
            if a.token.is_some() {
                "; every request must carry the token"
            } else {
                ", and anyone who can reach it can run jobs (use --token)"
            }
        );
    }
    let bound = Bound::bind(ServeOptions {
        host: a.host,
        port: a.port,
        models: a.model,
        data_dir: a.data,
        reports_dir: a.reports,
        token: a.token,
        max_upload_bytes: a.max_upload_mb.saturating_mul(1_000_000),
        queue: a.queue,
        device: a.device,
        dtype: a.dtype,
    })?;
    let addr = bound.addr()?;
    let url = match addr.ip() {
        ip if ip.is_unspecified() => format!("http://localhost:{}/", addr.port()),
        _ => format!("http://{addr}/"),
    };
    println!("listening on {url}");
    if a.open {
        open_browser(&url);
    }
    bound.run()?;
    Ok(ExitCode::SUCCESS)
}

/// Opens `url` (the server's own address) in the desktop's browser.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("note: could not open a browser ({opener}: {e}); open {url}");
    }
}

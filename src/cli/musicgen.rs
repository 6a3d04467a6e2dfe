//! `generate --backend musicgen`: MusicGen's own flags (continuation and
//! token sampling), turned into the engine's [`MusicgenOptions`].

use std::path::PathBuf;

use clap::Args;
use ragafusion::engine::{defaults, MusicgenOptions};
use ragafusion::overlay::from_fields;
use serde::Serialize;

/// MusicGen's settings of `generate` (used with `--backend musicgen`).
#[derive(Debug, Args, Serialize)]
pub struct MusicgenArgs {
    /// Continue this audio file (resampled to the model's rate): its codes
    /// start the sequence and the output begins with it.
    #[arg(long = "continue", value_name = "IN.wav")]
    continue_from: Option<PathBuf>,
    /// Pick the most likely token at every step instead of sampling.
    #[arg(long)]
    greedy: bool,
    /// Sample among the K most likely tokens (0: all).
    #[arg(long, default_value_t = defaults::MUSICGEN_TOP_K)]
    top_k: usize,
    /// Sample among the most likely tokens up to this total probability
    /// (0 or 1: off).
    #[arg(long, default_value_t = defaults::MUSICGEN_TOP_P)]
    top_p: f64,
    /// Sampling temperature (higher: more varied).
    #[arg(long, default_value_t = defaults::MUSICGEN_TEMPERATURE)]
    temperature: f64,
    /// Longest stretch the model sees at once, in seconds (its training
    /// length); longer outputs are generated window by window.
    #[arg(long, default_value_t = defaults::MUSICGEN_WINDOW_S)]
    window_s: f64,
    /// New seconds per later window; each later window starts from the
    /// previous window's last `window - stride` seconds.
    #[arg(long, default_value_t = defaults::MUSICGEN_STRIDE_S)]
    stride_s: f64,
}

impl MusicgenArgs {
    /// The engine's MusicGen options (the same fields).
    pub(super) fn options(&self) -> anyhow::Result<MusicgenOptions> {
        Ok(from_fields(self, "musicgen")?)
    }
}

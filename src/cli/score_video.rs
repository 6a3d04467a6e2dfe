//! `score-video`: flags to the engine's [`ScoreVideoRequest`]; the engine
//! makes the music, mixes, levels and muxes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::audio::r128;
use ragafusion::engine::score_video::{plan, score_video as run, OriginalSound, ScoreVideoRequest};
use ragafusion::engine::{defaults, Backend, GenerateRequest};
use ragafusion::spectrogram::Quality;
use ragafusion::Progress;

use super::choice::choice;
use super::musicgen::MusicgenArgs;
use super::progress_bar::Bar;
use super::sd_args::{flag_error, sampling_request, ModelArgs, SamplingArgs, TonicArgs};

/// Arguments of `score-video`.
#[derive(Debug, Args)]
pub struct ScoreVideoArgs {
    /// The video to score (mp4, mov, mkv, webm: anything ffmpeg reads).
    video: PathBuf,
    /// Caption of the music.
    prompt: String,
    /// The scored video; its extension picks the container (.mp4, .mov,
    /// .mkv: AAC sound; .webm: Opus, VP8/VP9/AV1 video only). Never the
    /// input.
    #[arg(long = "out", value_name = "OUT.mp4")]
    out_video: PathBuf,
    /// Folder that keeps the generated music, so a rerun reuses it
    /// (default: OUT's name with `.music`, beside it).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Model family of the music.
    #[arg(long, value_parser = choice::<Backend>(), default_value_t = Backend::Diffusion)]
    backend: Backend,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    tonic: TonicArgs,
    /// Denoising steps (default: the model's ragafusion.json, else 50).
    #[arg(long)]
    steps: Option<usize>,
    /// Integrated loudness of the result, LUFS: -14 for web video, -23
    /// for EBU R128 broadcast; the true peak stays at or below -1 dBTP.
    #[arg(long, default_value_t = r128::WEB_LUFS)]
    loudness: f64,
    /// Fade-in of the music, seconds.
    #[arg(long, default_value_t = defaults::FADE_IN_S)]
    fade_in: f64,
    /// Fade-out of the music, seconds (it ends at a quiet moment in the
    /// scored stretch's last second).
    #[arg(long, default_value_t = defaults::FADE_OUT_S)]
    fade_out: f64,
    /// Keep the video's own sound under the music (else the music replaces
    /// it in the scored stretch).
    #[arg(long)]
    keep_original: bool,
    /// With --keep-original: lower the music by 12 dB where the video's
    /// own sound is active (speech), with 50 ms attack and 400 ms release.
    #[arg(long)]
    duck: bool,
    /// With --keep-original: gain of the video's own sound, dB.
    #[arg(long, default_value_t = 0.0)]
    original_gain: f64,
    /// Start of the scored stretch, seconds (outside it the video's own
    /// sound plays as it was).
    #[arg(long)]
    start: Option<f64>,
    /// End of the scored stretch, seconds.
    #[arg(long)]
    end: Option<f64>,
    /// Spectrogram to audio trade-off (diffusion).
    #[arg(long, value_parser = choice::<Quality>(), default_value_t = defaults::QUALITY)]
    quality: Quality,
    #[command(flatten)]
    musicgen: MusicgenArgs,
}

/// Runs `score-video`: prints the scored video's path, its loudness and
/// true peak as encoded, and where the music is kept.
pub fn score_video(a: ScoreVideoArgs) -> anyhow::Result<ExitCode> {
    let s = &a.sampling;
    let music = GenerateRequest {
        steps: a.steps,
        quality: a.quality,
        musicgen: a.musicgen.options()?,
        ..sampling_request((&a.prompt, s.seed), &s.guide, &a.tonic)
    };
    let r = ScoreVideoRequest {
        loudness_lufs: a.loudness,
        fade_in_s: a.fade_in,
        fade_out_s: a.fade_out,
        original: OriginalSound {
            keep: a.keep_original,
            gain_db: a.original_gain,
            duck: a.duck,
        },
        start_s: a.start,
        end_s: a.end,
        ..ScoreVideoRequest::new(&a.video, music)
    };
    let work = a
        .work
        .clone()
        .unwrap_or_else(|| a.out_video.with_extension("music"));
    let plan = plan(&r, a.backend, &a.out_video, &work).map_err(flag_error)?;
    let bar = Bar::interruptible();
    let engine = a.model.load(a.backend)?;
    let scored = run(&engine, &plan, &bar)
        .map_err(flag_error)
        .with_context(|| format!("scoring {}", a.video.display()))?;
    bar.finish();
    let e = &scored.encoded;
    println!("{}", scored.out.display());
    eprintln!(
        "{:.1} LUFS, {:.1} dBTP; music {}: {}",
        e.integrated_lufs,
        e.true_peak_dbtp,
        if scored.reused_music {
            "reused"
        } else {
            "kept"
        },
        scored.music_wav.display()
    );
    Ok(ExitCode::SUCCESS)
}

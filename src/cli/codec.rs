//! `audio-to-image`, `image-to-audio`, `print-params`, `sample-clips`.

use super::choice::choice;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use ragafusion::audio::{Loudness, WavFormat};
use ragafusion::batch::{self, BatchReport, ClipPlacement};
use ragafusion::overlay::overlay;
use ragafusion::spectrogram::{read_png, InversionSettings, Preset, Quality, SpectrogramParams};
use serde::Serialize;

use super::progress_bar::Bar;

/// Spectrogram parameters: a preset plus the fields given (same names).
#[derive(Debug, Args, Serialize)]
pub struct ParamArgs {
    /// Parameter preset to start from.
    #[arg(long, value_parser = choice::<Preset>(), default_value_t = Preset::Riffusion)]
    #[serde(skip)]
    preset: Preset,
    /// Encode two channels (G and B planes) instead of one.
    #[arg(long)]
    stereo: bool,
    /// Sample rate the audio is converted to, in Hz.
    #[arg(long)]
    sample_rate_hz: Option<u32>,
    /// Hop between columns in milliseconds.
    #[arg(long)]
    step_ms: Option<u32>,
    /// Hann window length in milliseconds.
    #[arg(long)]
    window_ms: Option<u32>,
    /// FFT length in milliseconds.
    #[arg(long)]
    padded_ms: Option<u32>,
    /// Number of mel bins (image height).
    #[arg(long)]
    num_mel_bins: Option<u32>,
    /// Lowest mel frequency in Hz.
    #[arg(long)]
    min_hz: Option<u32>,
    /// Highest mel frequency in Hz.
    #[arg(long)]
    max_hz: Option<u32>,
    /// Exponent applied to amplitudes before quantising to pixels.
    #[arg(long)]
    power_for_image: Option<f64>,
}

impl ParamArgs {
    fn params(&self) -> anyhow::Result<SpectrogramParams> {
        let preset = SpectrogramParams::preset(self.preset);
        let p = overlay(
            &preset,
            &serde_json::to_value(self)?,
            "spectrogram parameters",
        )?;
        p.validate()?;
        Ok(p)
    }
}

/// Arguments of `audio-to-image`.
#[derive(Debug, Args)]
pub struct AudioToImageArgs {
    /// Input audio file, or a folder of audio files.
    input: PathBuf,
    /// Output PNG, or the output folder when IN is a folder.
    output: PathBuf,
    #[command(flatten)]
    params: ParamArgs,
    /// In folder mode, convert files whose output already exists again.
    #[arg(long)]
    overwrite: bool,
    /// In folder mode, also write OUT/metadata.jsonl for `train` from the
    /// JSON labels beside the audio files (as `synth` writes them): the
    /// label's caption as `text`, and its `raga`.
    #[arg(long)]
    captions: bool,
}

/// Arguments of `image-to-audio`.
#[derive(Debug, Args)]
pub struct ImageToAudioArgs {
    /// Input spectrogram PNG, or a folder of PNGs.
    input: PathBuf,
    /// Output WAV, or the output folder when IN is a folder.
    output: PathBuf,
    /// Speed / quality trade-off: `fast` starts Griffin-Lim from PGHI phase
    /// and runs the image's iterations (32); `high` runs 4x as many;
    /// `riffusion` starts from random phase as riffusion does.
    #[arg(long, value_parser = choice::<Quality>(), default_value_t = Quality::Fast)]
    quality: Quality,
    /// Griffin-Lim iterations, overriding the quality preset.
    #[arg(long)]
    iterations: Option<usize>,
    /// Seed of the random phase (all of it in `riffusion` quality, silent
    /// coefficients otherwise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output levelling: `riffusion` (-12 dBFS RMS, peak capped at -0.1
    /// dBFS), `riffusion-clip` (riffusion's exact chain, which clips loud
    /// transients), `peak` (-0.1 dBFS peak) or `none`.
    #[arg(long, value_parser = choice::<Loudness>(), default_value_t = Loudness::Riffusion)]
    loudness: Loudness,
    /// Write 32-bit float WAV instead of 16-bit PCM.
    #[arg(long)]
    float: bool,
    /// In folder mode, convert files whose output already exists again.
    #[arg(long)]
    overwrite: bool,
}

/// Arguments of `print-params`.
#[derive(Debug, Args)]
pub struct PrintParamsArgs {
    /// Spectrogram PNG to inspect.
    input: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `sample-clips`.
#[derive(Debug, Args)]
pub struct SampleClipsArgs {
    /// Input recording.
    input: PathBuf,
    /// Folder for the clips.
    output_dir: PathBuf,
    /// Number of randomly placed clips (ignored with --hop-ms).
    #[arg(long, default_value_t = 1)]
    num_clips: usize,
    /// Cut consecutive clips every this many milliseconds instead of random ones.
    #[arg(long)]
    hop_ms: Option<u64>,
    /// Clip length in milliseconds.
    #[arg(long, default_value_t = 5120)]
    duration_ms: u64,
    /// Mix the clips down to mono.
    #[arg(long)]
    mono: bool,
    /// Seed for random clip placement.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write 32-bit float WAV instead of 16-bit PCM.
    #[arg(long)]
    float: bool,
}

fn report_batch(report: &BatchReport) -> ExitCode {
    eprintln!("{report}");
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `audio-to-image`.
pub fn audio_to_image(a: AudioToImageArgs) -> anyhow::Result<ExitCode> {
    let params = a.params.params()?;
    if a.input.is_dir() {
        let bar = Bar::new();
        let report =
            batch::audio_folder_to_images(&a.input, &a.output, &params, a.overwrite, &bar)?;
        if a.captions {
            let n = batch::write_caption_metadata(&a.input, &a.output)?;
            eprintln!(
                "captioned {n} images in {}",
                a.output.join("metadata.jsonl").display()
            );
        }
        return Ok(report_batch(&report));
    }
    if a.captions {
        bail!("--captions applies to folders (IN and OUT are files here)");
    }
    let s = batch::audio_file_to_image(&a.input, &a.output, &params)
        .with_context(|| format!("converting {} to a spectrogram image", a.input.display()))?;
    eprintln!(
        "wrote {} ({}x{} px, {:.2} s)",
        a.output.display(),
        s.width,
        s.height,
        s.duration_s
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `image-to-audio`.
pub fn image_to_audio(a: ImageToAudioArgs) -> anyhow::Result<ExitCode> {
    let format = WavFormat::float_if(a.float);
    let settings = InversionSettings {
        quality: a.quality,
        seed: a.seed,
        iterations: a.iterations,
        loudness: a.loudness,
    };
    let bar = Bar::new();
    if a.input.is_dir() {
        let report = batch::image_folder_to_audio(
            &a.input,
            &a.output,
            &settings,
            format,
            a.overwrite,
            &bar,
        )?;
        return Ok(report_batch(&report));
    }
    let s = batch::image_file_to_audio(&a.input, &a.output, &settings, format, &bar)
        .with_context(|| format!("reconstructing audio from {}", a.input.display()))?;
    if !s.had_exif {
        tracing::warn!(
            "{} has no spectrogram EXIF tags; used the default parameters",
            a.input.display()
        );
    }
    eprintln!("wrote {} ({:.2} s)", a.output.display(), s.duration_s);
    Ok(ExitCode::SUCCESS)
}

/// Runs `print-params`.
pub fn print_params(a: PrintParamsArgs) -> anyhow::Result<ExitCode> {
    let loaded = read_png(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    if !loaded.has_exif {
        tracing::warn!(
            "{} has no spectrogram EXIF tags; showing the defaults",
            a.input.display()
        );
    }
    if a.json {
        let v = loaded.describe_json(&a.input);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", loaded.describe_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sample-clips`.
pub fn sample_clips(a: SampleClipsArgs) -> anyhow::Result<ExitCode> {
    let placement = match a.hop_ms {
        Some(hop_ms) => ClipPlacement::Sequential { hop_ms },
        None => ClipPlacement::Random {
            count: a.num_clips,
            seed: a.seed,
        },
    };
    let written = batch::sample_clips_to_folder(
        &a.input,
        &a.output_dir,
        a.duration_ms,
        placement,
        a.mono,
        WavFormat::float_if(a.float),
    )
    .with_context(|| format!("cutting clips from {}", a.input.display()))?;
    for p in &written {
        println!("{}", p.display());
    }
    eprintln!(
        "wrote {} clips to {}",
        written.len(),
        a.output_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

//! `generate --backend musicgen`: text-to-music, unconditional generation,
//! continuation and windowed long generation with a MusicGen checkpoint,
//! to WAV + JSON sidecar.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use ragafusion::audio::{read_audio_as, write_wav, ChannelLayout, WavFormat};
use ragafusion::fsutil::write_json_atomic;
use ragafusion::musicgen::{
    audio_to_codes, codes_to_audio, generate_long, Codes, GenerateSettings, MusicGen, Sampling,
    Windowing,
};
use serde_json::json;

use super::progress_bar::Bar;
use super::sd_args::{parse_device_dtype, slug};

/// MusicGen's settings of `generate` (used with `--backend musicgen`).
#[derive(Debug, Args)]
pub struct MusicgenArgs {
    /// Continue this audio file (resampled to the model's rate): its codes
    /// start the sequence and the output begins with it.
    #[arg(long = "continue", value_name = "IN.wav")]
    continue_from: Option<PathBuf>,
    /// Pick the most likely token at every step instead of sampling.
    #[arg(long)]
    greedy: bool,
    /// Sample among the K most likely tokens (0: all).
    #[arg(long, default_value_t = 250)]
    top_k: usize,
    /// Sample among the most likely tokens up to this total probability
    /// (0 or 1: off).
    #[arg(long, default_value_t = 0.0)]
    top_p: f64,
    /// Sampling temperature (higher: more varied).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Longest stretch the model sees at once, in seconds (its training
    /// length); longer outputs are generated window by window.
    #[arg(long, default_value_t = 30.0)]
    window_s: f64,
    /// New seconds per later window; each later window starts from the
    /// previous window's last `window - stride` seconds.
    #[arg(long, default_value_t = 18.0)]
    stride_s: f64,
}

/// What `generate` passes on to the MusicGen backend.
pub struct Request<'a> {
    pub prompt: &'a str,
    pub model: &'a Path,
    pub device: &'a str,
    pub dtype: &'a str,
    pub guidance: Option<f64>,
    pub seed: u64,
    pub seconds: f64,
    pub out: &'a Path,
    pub name: Option<&'a str>,
    pub args: &'a MusicgenArgs,
}

fn frames_of(seconds: f64, frame_rate: usize, flag: &str) -> anyhow::Result<usize> {
    if !(seconds > 0.0 && seconds.is_finite()) {
        bail!("--{flag} must be positive, got {seconds}");
    }
    Ok(((seconds * frame_rate as f64).round() as usize).max(1))
}

/// Runs MusicGen generation.
pub fn generate(r: Request) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let a = r.args;
    let (device, dtype) = parse_device_dtype(r.device, r.dtype)?;
    let model = MusicGen::load(r.model, &device, dtype)
        .with_context(|| format!("loading the MusicGen checkpoint {}", r.model.display()))?;
    let load_s = start.elapsed().as_secs_f64();
    let rate = model.frame_rate();
    let new_frames = frames_of(r.seconds, rate, "seconds")?;
    let windowing = Windowing {
        window_frames: frames_of(a.window_s, rate, "window-s")?,
        stride_frames: frames_of(a.stride_s, rate, "stride-s")?,
    };
    if windowing.stride_frames >= windowing.window_frames {
        bail!(
            "--stride-s {} must be shorter than --window-s {}",
            a.stride_s,
            a.window_s
        );
    }
    let unconditional = r.prompt.trim().is_empty();
    let guidance = match (unconditional, r.guidance) {
        (true, Some(g)) if g > 1.0 => {
            bail!("--guidance {g} needs a prompt (an empty prompt generates unconditionally)")
        }
        (true, _) => 1.0,
        (false, g) => g.unwrap_or(3.0),
    };
    let settings = GenerateSettings {
        guidance,
        sampling: Sampling {
            greedy: a.greedy,
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
        },
        seed: r.seed,
    };

    let t0 = Instant::now();
    let memory = if unconditional {
        model.unconditional_memory(1)?
    } else {
        model.text_memory(&[r.prompt])?
    };
    let text_s = t0.elapsed().as_secs_f64();

    let prompt: Codes = match &a.continue_from {
        None => vec![Vec::new(); model.config.decoder.num_codebooks],
        Some(path) => {
            let layout = if model.channels() == 2 {
                ChannelLayout::Stereo
            } else {
                ChannelLayout::Mono
            };
            let audio = read_audio_as(path, model.sample_rate_hz(), layout)
                .with_context(|| format!("reading --continue {}", path.display()))?;
            audio_to_codes(&model, &audio)
                .with_context(|| format!("encoding --continue {}", path.display()))?
        }
    };
    let prompt_frames = prompt[0].len();

    let bar = Bar::new();
    let t0 = Instant::now();
    let generated = generate_long(
        &model.decoder,
        &memory,
        &prompt,
        new_frames,
        windowing,
        &settings,
        &bar,
    )?;
    let decode_s = t0.elapsed().as_secs_f64();
    let (codes, windows, steps) = (generated.codes, generated.windows, generated.decoder_steps);
    let t0 = Instant::now();
    let audio = codes_to_audio(&model, &codes)?;
    let codec_s = t0.elapsed().as_secs_f64();

    let base = r
        .name
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}-s{}", slug(r.prompt), r.seed));
    std::fs::create_dir_all(r.out).with_context(|| format!("creating {}", r.out.display()))?;
    let wav = r.out.join(format!("{base}.wav"));
    write_wav(&wav, &audio, WavFormat::Pcm16)?;
    let sidecar = json!({
        "kind": if a.continue_from.is_some() { "musicgen-continuation" }
                else if unconditional { "musicgen-unconditional" } else { "musicgen" },
        "backend": "musicgen",
        "prompt": r.prompt,
        "seed": r.seed,
        "guidance": guidance,
        "sampling": {"greedy": a.greedy, "top_k": a.top_k, "top_p": a.top_p,
                     "temperature": a.temperature},
        "continue": a.continue_from.as_ref().map(|p| p.display().to_string()),
        "prompt_frames": prompt_frames,
        "new_frames": new_frames,
        "frame_rate_hz": rate,
        "decoder_steps": steps,
        "windows": windows,
        "window_s": a.window_s,
        "stride_s": a.stride_s,
        "sample_rate_hz": audio.sample_rate_hz,
        "channels": audio.num_channels(),
        "duration_s": audio.duration_s(),
        "model": {
            "path": r.model.display().to_string(),
            "content_hash": model.content_hash()?,
            "device": r.device,
            "dtype": r.dtype,
        },
        "version": env!("CARGO_PKG_VERSION"),
        "timings_s": {"load": load_s, "text": text_s, "decode_tokens": decode_s,
                      "codec": codec_s, "total": start.elapsed().as_secs_f64()},
        "tokens_per_s": steps as f64 / decode_s.max(1e-9),
        "files": {"wav": format!("{base}.wav")},
    });
    write_json_atomic(&r.out.join(format!("{base}.json")), &sidecar)?;
    println!("{}", wav.display());
    Ok(ExitCode::SUCCESS)
}

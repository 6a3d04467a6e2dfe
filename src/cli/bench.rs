//! `bench-sd` and `bench-musicgen`: time generation with random weights of
//! a real architecture (SD 1.5; MusicGen small / medium / large), no
//! checkpoint needed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::diffusion::bench::{run_benchmark, BenchConfig};
use ragafusion::diffusion::config::{UnetConfig, VaeConfig};
use ragafusion::diffusion::{SampleSettings, SamplerKind};
use ragafusion::engine::device_and_dtype;
use ragafusion::fsutil::write_json_atomic;
use ragafusion::musicgen::bench::{run_musicgen_benchmark, MusicgenBenchConfig};
use ragafusion::musicgen::config::{DecoderConfig, EncodecConfig, T5Config};
use ragafusion::musicgen::{GenerateSettings, Sampling};
use serde_json::json;

use super::progress_bar::Bar;
use super::sd_args::parse_scheduler;

/// Arguments of `bench-sd`.
#[derive(Debug, Args)]
pub struct BenchSdArgs {
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Image width in pixels.
    #[arg(long, default_value_t = 512)]
    width: usize,
    /// Image height in pixels.
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// Sampler.
    #[arg(long, default_value = "pndm", value_parser = parse_scheduler)]
    scheduler: SamplerKind,
    /// Guidance scale; above 1 the UNet runs on a batch of two.
    #[arg(long, default_value_t = 7.0)]
    guidance: f64,
    /// `cpu`, or `cuda` / `cuda:N` (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// UNet precision: f32, f16 or bf16 (bf16 on CUDA only).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    /// Attention slice size (batch x heads at a time); default automatic.
    #[arg(long)]
    attention_slice: Option<usize>,
    /// Also write the report to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `bench-sd`.
pub fn bench_sd(a: BenchSdArgs) -> anyhow::Result<ExitCode> {
    let (device, dtype) = device_and_dtype(&a.device, &a.dtype)
        .with_context(|| format!("--device {} --dtype {}", a.device, a.dtype))?;
    let cfg = BenchConfig {
        unet: UnetConfig::sd15(),
        vae: VaeConfig::sd15(),
        settings: SampleSettings {
            sampler: a.scheduler,
            steps: a.steps,
            guidance: a.guidance,
        },
        width_px: a.width,
        height_px: a.height,
        dtype,
        device,
        attention_slice: a.attention_slice,
    };
    let bar = Bar::new();
    let report = run_benchmark(&cfg, &bar)?;
    let out = json!({
        "model": "SD 1.5 architecture, random weights",
        "width_px": a.width,
        "height_px": a.height,
        "steps": a.steps,
        "scheduler": a.scheduler.name(),
        "guidance": a.guidance,
        "device": a.device,
        "dtype": a.dtype,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "version": env!("CARGO_PKG_VERSION"),
        "report": report,
    });
    eprintln!(
        "{} steps in {:.1} s ({:.2} s/step), VAE decode {:.1} s, peak RSS {:.0} MiB",
        a.steps,
        report.denoise_s,
        report.s_per_step,
        report.decode_s,
        report.peak_rss_mib.unwrap_or(f64::NAN)
    );
    emit(&out, a.json.as_deref())
}

/// Arguments of `bench-musicgen`.
#[derive(Debug, Args)]
pub struct BenchMusicgenArgs {
    /// Decoder size: small, medium or large.
    #[arg(long, default_value = "small", value_parser = ["small", "medium", "large"])]
    size: String,
    /// Seconds of audio (50 S + 3 decoder steps).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Guidance scale; above 1 the decoder runs on a batch of two.
    #[arg(long, default_value_t = 3.0)]
    guidance: f64,
    /// Argmax decoding instead of top-k 250 sampling.
    #[arg(long)]
    greedy: bool,
    /// Text tokens of the (random) prompt.
    #[arg(long, default_value_t = 16)]
    text_tokens: usize,
    /// `cpu`, or `cuda` / `cuda:N` (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Decoder precision: f32, f16 or bf16 (bf16 on CUDA only).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    /// Also write the report to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `bench-musicgen`.
pub fn bench_musicgen(a: BenchMusicgenArgs) -> anyhow::Result<ExitCode> {
    let (device, dtype) = device_and_dtype(&a.device, &a.dtype)
        .with_context(|| format!("--device {} --dtype {}", a.device, a.dtype))?;
    let cfg = MusicgenBenchConfig {
        decoder: DecoderConfig::preset(&a.size)?,
        text: T5Config::base(),
        codec: EncodecConfig::musicgen_32khz(),
        seconds: a.seconds,
        text_tokens: a.text_tokens,
        settings: GenerateSettings {
            guidance: a.guidance,
            sampling: Sampling {
                greedy: a.greedy,
                ..Sampling::default()
            },
            seed: 0,
        },
        dtype,
        device,
    };
    let bar = Bar::new();
    let report = run_musicgen_benchmark(&cfg, &bar)?;
    let out = json!({
        "model": format!("MusicGen {} architecture (T5-base, 32 kHz EnCodec), random weights", a.size),
        "seconds": a.seconds,
        "guidance": a.guidance,
        "greedy": a.greedy,
        "device": a.device,
        "dtype": a.dtype,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "version": env!("CARGO_PKG_VERSION"),
        "report": report,
    });
    eprintln!(
        "{} decoder steps in {:.1} s ({:.1} tokens/s, {:.1} ms/step), codec {:.2} s, RTF {:.2}, peak RSS {:.0} MiB",
        report.decoder_steps,
        report.decode_s,
        report.tokens_per_s,
        report.ms_per_step,
        report.codec_s,
        report.real_time_factor,
        report.peak_rss_mib.unwrap_or(f64::NAN)
    );
    emit(&out, a.json.as_deref())
}

/// Prints the report as JSON and, with `--json`, also writes it there.
fn emit(out: &serde_json::Value, json: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    if let Some(p) = json {
        write_json_atomic(p, out)?;
    }
    println!("{}", serde_json::to_string_pretty(out)?);
    Ok(ExitCode::SUCCESS)
}

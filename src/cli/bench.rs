//! `bench-sd` and `bench-musicgen`: time generation with random weights of
//! a real architecture (SD 1.5; MusicGen small / medium / large), no
//! checkpoint needed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ragafusion::diffusion::bench::{bench_sd15, SdBench};
use ragafusion::diffusion::SamplerKind;
use ragafusion::fsutil::write_json_atomic;
use ragafusion::musicgen::bench::{bench_musicgen_size, MusicgenBench};
use ragafusion::overlay::from_fields;
use serde::Serialize;

use super::choice::choice;
use super::progress_bar::Bar;

/// Arguments of `bench-sd`: the fields of a [`SdBench`] and `--json`.
#[derive(Debug, Args, Serialize)]
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
    #[arg(long, value_parser = choice::<SamplerKind>(), default_value_t = SamplerKind::Pndm)]
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
    #[serde(skip)]
    json: Option<PathBuf>,
}

/// Runs `bench-sd`.
pub fn bench_sd(a: BenchSdArgs) -> anyhow::Result<ExitCode> {
    let job: SdBench = from_fields(&a, "bench-sd")?;
    let (record, summary) = bench_sd15(&job, &Bar::new())?;
    eprintln!("{summary}");
    emit(&record, a.json.as_deref())
}

/// Arguments of `bench-musicgen`: the fields of a [`MusicgenBench`] and `--json`.
#[derive(Debug, Args, Serialize)]
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
    #[serde(skip)]
    json: Option<PathBuf>,
}

/// Runs `bench-musicgen`.
pub fn bench_musicgen(a: BenchMusicgenArgs) -> anyhow::Result<ExitCode> {
    let job: MusicgenBench = from_fields(&a, "bench-musicgen")?;
    let (record, summary) = bench_musicgen_size(&job, &Bar::new())?;
    eprintln!("{summary}");
    emit(&record, a.json.as_deref())
}

/// Prints the report as JSON and, with `--json`, also writes it there.
fn emit(out: &serde_json::Value, json: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    if let Some(p) = json {
        write_json_atomic(p, out)?;
    }
    println!("{}", serde_json::to_string_pretty(out)?);
    Ok(ExitCode::SUCCESS)
}

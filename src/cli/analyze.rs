//! `analyze`: a labelled figure and the facts behind it for one clip.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use ragafusion::audio::{read_audio_as, ChannelLayout};
use ragafusion::captions::Vocabulary;
use ragafusion::fsutil::write_bytes_atomic;
use ragafusion::raga::analyze::{analyze as run_analysis, AnalyzeOptions};
use ragafusion::raga::classifier::{audio_of_image, ANALYSIS_RATE_HZ};
use ragafusion::raga::figure::analysis_figure;
use ragafusion::spectrogram::{
    read_png, SpectrogramConverter, SpectrogramImage, SpectrogramParams,
};

use super::raga::load_classifier;

/// Arguments of `analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Audio file, or a spectrogram PNG (reconstructed for the pitch track).
    input: PathBuf,
    /// Tonic in Hz (estimated when absent; the estimate and the drift
    /// from this value are reported too).
    #[arg(long)]
    tonic: Option<f64>,
    /// Print the analysis as JSON on stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// Measure adherence to this raga, and label the swara grid with its
    /// swaras.
    #[arg(long)]
    raga: Option<String>,
    /// Classifier folder; the built-in default CNN when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where to write the figure (default: INPUT's name with
    /// `.analysis.png`, beside it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Analyse at most this many seconds from the start.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// How many ragas to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// Runs `analyze`.
pub fn analyze(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    if !(a.max_seconds.is_finite() && a.max_seconds > 0.0) {
        bail!("--max-seconds {}: must be a positive number", a.max_seconds);
    }
    let vocab = Vocabulary::builtin();
    let raga = a.raga.as_deref().map(|r| vocab.raga(r)).transpose()?;
    let classifier = load_classifier(a.model.as_ref())?;
    let is_png = a
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let params = SpectrogramParams::default();
    let max_samples = (a.max_seconds * ANALYSIS_RATE_HZ as f64) as usize;
    let (mut samples, image, image_params): (Vec<f32>, SpectrogramImage, SpectrogramParams) =
        if is_png {
            let loaded = read_png(&a.input)?;
            let samples = audio_of_image(&loaded)
                .with_context(|| format!("reconstructing audio from {}", a.input.display()))?;
            (samples, loaded.image, loaded.params)
        } else {
            let audio = read_audio_as(&a.input, ANALYSIS_RATE_HZ, ChannelLayout::Mono)?;
            let mut s = audio.channels.into_iter().next().unwrap_or_default();
            if s.len() > max_samples {
                eprintln!(
                    "note: {} is {:.1} s long; analysing the first {} s (--max-seconds)",
                    a.input.display(),
                    s.len() as f64 / ANALYSIS_RATE_HZ as f64,
                    a.max_seconds
                );
                s.truncate(max_samples);
            }
            let clip = ragafusion::audio::Audio::new(vec![s.clone()], ANALYSIS_RATE_HZ, "clip")?;
            let (img, _) = SpectrogramConverter::new(params.clone())?.image_from_audio(&clip)?;
            (s, img, params)
        };
    samples.truncate(max_samples);
    let opts = AnalyzeOptions {
        tonic_hz: a.tonic,
        raga,
        tonic_range_hz: classifier.tonic_range_hz(),
        top: a.top,
    };
    let analysis = run_analysis(&samples, &classifier, vocab, &opts)
        .with_context(|| format!("analysing {}", a.input.display()))?;
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a.input.file_stem().unwrap_or_default().to_string_lossy();
        a.input.with_file_name(format!("{stem}.analysis.png"))
    });
    let title = format!(
        "{}  ({:.2} s, tonic {:.1} Hz)",
        a.input.file_name().unwrap_or_default().to_string_lossy(),
        analysis.duration_s,
        analysis.tonic.hz
    );
    let figure = analysis_figure(&title, &analysis, &image, &image_params, raga);
    write_bytes_atomic(&out, &figure.encode_png()?)?;
    if a.json {
        let mut v = serde_json::to_value(&analysis)?;
        v["file"] = serde_json::json!(a.input);
        v["figure"] = serde_json::json!(out);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let t = &analysis.tonic;
        println!(
            "{}: {:.2} s, tonic {:.1} Hz ({}), voiced {:.0}%, RMS {:.1} dBFS",
            a.input.display(),
            analysis.duration_s,
            t.hz,
            if t.given { "given" } else { "estimated" },
            analysis.voiced_fraction * 100.0,
            analysis.loudness.rms_dbfs
        );
        for (r, s) in &analysis.top {
            println!("  {s:.3}  {r}");
        }
        if let Some(ad) = &analysis.adherence {
            println!(
                "  adherence to {}: in-scale {:.1}% (chance {:.1}%), illegal {:.1}%, JS {:.3}, rank {} of {}",
                ad.raga,
                ad.membership.in_scale_ratio * 100.0,
                ad.membership.chance_level * 100.0,
                ad.membership.illegal_swara_rate * 100.0,
                ad.js_distance,
                ad.template_rank,
                ad.templates
            );
        }
        println!("figure: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

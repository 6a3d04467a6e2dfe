//! The `analyze` job on a file: audio (or a spectrogram PNG, reconstructed
//! for the pitch track) to the analysis, its labelled figure, and a short
//! text summary.

use std::path::Path;

use super::analyze::{analyze, Analysis, AnalyzeOptions};
use super::classifier::{audio_of_image, Classifier, ANALYSIS_RATE_HZ};
use super::figure::analysis_figure;
use crate::audio::{read_audio_as, Audio, ChannelLayout};
use crate::captions::Vocabulary;
use crate::error::{Error, Result};
use crate::spectrogram::{read_png, SpectrogramConverter, SpectrogramParams};

/// What to look for in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectOptions {
    /// Known tonic, Hz (estimated when `None`).
    pub tonic_hz: Option<f64>,
    /// Raga to measure adherence to (any spelling the vocabulary knows).
    pub raga: Option<String>,
    /// Longest stretch analysed from the start, seconds.
    pub max_seconds: f64,
    /// How many ragas / templates to list.
    pub top: usize,
}

/// A file's analysis and its figure.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The facts.
    pub analysis: Analysis,
    /// The labelled figure (spectrogram, pitch over a swara grid, PCD, top
    /// ragas, loudness) as PNG bytes.
    pub figure_png: Vec<u8>,
    /// The input's length when it was cut to `max_seconds`, seconds.
    pub cut_from_s: Option<f64>,
}

impl Inspection {
    /// The analysis as JSON, with the paths of the file and its figure.
    pub fn json(&self, input: &Path, figure: &Path) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.analysis)
            .map_err(|e| Error::numeric("the analysis as JSON", e.to_string()))?;
        v["file"] = serde_json::json!(input);
        v["figure"] = serde_json::json!(figure);
        Ok(v)
    }
}

/// Where `input`'s figure goes unless told: beside it, as
/// `STEM.analysis.png`.
pub fn figure_path(input: &Path) -> std::path::PathBuf {
    let stem = input.file_stem().unwrap_or_default().to_string_lossy();
    input.with_file_name(format!("{stem}.analysis.png"))
}

/// Analyses `input` with `classifier`.
pub fn inspect_file(
    input: &Path,
    classifier: &Classifier,
    vocab: &Vocabulary,
    opts: &InspectOptions,
) -> Result<Inspection> {
    if let Some(t) = opts.tonic_hz {
        crate::limits::in_range("tonic_hz", t, &crate::limits::TONIC_HZ, " Hz")?;
    }
    if !(opts.max_seconds.is_finite() && opts.max_seconds > 0.0) {
        return Err(Error::param(
            "max-seconds",
            format!("{}: must be a positive number", opts.max_seconds),
        ));
    }
    let raga = opts.raga.as_deref().map(|r| vocab.raga(r)).transpose()?;
    let is_png = input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let max_samples = (opts.max_seconds * ANALYSIS_RATE_HZ as f64) as usize;
    let mut cut_from_s = None;
    let (mut samples, image, params) = if is_png {
        let mut loaded = read_png(input)?;
        // cut before inverting: the columns past max-seconds are never heard
        cut_from_s = loaded.keep_seconds(opts.max_seconds);
        (audio_of_image(&loaded)?, loaded.image, loaded.params)
    } else {
        let audio = read_audio_as(input, ANALYSIS_RATE_HZ, ChannelLayout::Mono)?;
        let mut s = audio.channels.into_iter().next().unwrap_or_default();
        if s.len() > max_samples {
            cut_from_s = Some(s.len() as f64 / ANALYSIS_RATE_HZ as f64);
            s.truncate(max_samples);
        }
        let params = SpectrogramParams::default();
        let clip = Audio::new(vec![s.clone()], ANALYSIS_RATE_HZ, "clip")?;
        let (image, _) = SpectrogramConverter::new(params.clone())?.image_from_audio(&clip)?;
        (s, image, params)
    };
    samples.truncate(max_samples);
    let analyze_opts = AnalyzeOptions {
        tonic_hz: opts.tonic_hz,
        raga,
        tonic_range_hz: classifier.tonic_range_hz(),
        top: opts.top,
    };
    let analysis = analyze(&samples, classifier, vocab, &analyze_opts)?;
    let title = format!(
        "{}  ({:.2} s, tonic {:.1} Hz)",
        input.file_name().unwrap_or_default().to_string_lossy(),
        analysis.duration_s,
        analysis.tonic.hz
    );
    let figure = analysis_figure(&title, &analysis, &image, &params, raga);
    Ok(Inspection {
        figure_png: figure.encode_png()?,
        analysis,
        cut_from_s,
    })
}

/// A few lines a person reads: length, tonic, voicing, level, the top
/// ragas and the adherence to the raga asked for.
pub fn summary_text(input: &Path, analysis: &Analysis) -> String {
    let t = &analysis.tonic;
    let mut lines = vec![format!(
        "{}: {:.2} s, tonic {:.1} Hz ({}), voiced {:.0}%, RMS {:.1} dBFS",
        input.display(),
        analysis.duration_s,
        t.hz,
        if t.given { "given" } else { "estimated" },
        analysis.voiced_fraction * 100.0,
        analysis.loudness.rms_dbfs
    )];
    for (r, s) in &analysis.top {
        lines.push(format!("  {s:.3}  {r}"));
    }
    lines.push(format!("  verdict: {}", analysis.verdict.describe()));
    if let Some(ad) = &analysis.adherence {
        lines.push(format!(
            "  adherence to {}: in-scale {:.1}% (chance {:.1}%), illegal {:.1}%, JS {:.3}, rank {} of {}",
            ad.raga,
            ad.membership.in_scale_ratio * 100.0,
            ad.membership.chance_level * 100.0,
            ad.membership.illegal_swara_rate * 100.0,
            ad.js_distance,
            ad.template_rank,
            ad.templates
        ));
    }
    lines.join("\n")
}

//! The machine-readable outputs: `results.csv` (one row per clip),
//! `summary.csv` (one row per backend) and `results.json` (the
//! experiment, the judges, every backend's summary and every clip's row).

use std::path::Path;

use serde::Serialize;

use super::experiment::{Prompt, Resolved};
use super::run::BackendRun;
use super::summary::{BackendSummary, ClipResult, Stat};
use crate::error::{Error, Result};
use crate::fsutil::{write_bytes_atomic, write_json_atomic};

/// One clip as a flat row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipRow {
    /// Backend name.
    pub backend: String,
    /// Clip id.
    pub clip: String,
    /// Prompt id (generated clips).
    pub prompt_id: Option<String>,
    /// The caption (generated clips).
    pub prompt: Option<String>,
    /// Requested (or labelled) raga.
    pub raga: String,
    /// Seed.
    pub seed: Option<u64>,
    /// Tonic assumed, Hz.
    pub tonic_hz: f64,
    /// Whether the tonic was given.
    pub tonic_given: bool,
    /// Tonic estimated from the clip, Hz (empty: no pitched content).
    pub estimated_tonic_hz: Option<f64>,
    /// CNN: best three ragas, `;`-separated.
    pub cnn_top3: String,
    /// CNN: top-1 is the requested raga.
    pub cnn_top1_right: bool,
    /// CNN: the requested raga is in the top three.
    pub cnn_top3_right: bool,
    /// CNN: probability of its top raga.
    pub cnn_top1_score: f64,
    /// kNN: best three ragas.
    pub knn_top3: String,
    /// kNN: top-1 is the requested raga.
    pub knn_top1_right: bool,
    /// kNN: the requested raga is in the top three.
    pub knn_top3_right: bool,
    /// In-scale ratio on stable frames.
    pub in_scale_ratio: f64,
    /// In-scale ratio above chance.
    pub in_scale_above_chance: f64,
    /// Illegal-swara rate.
    pub illegal_swara_rate: f64,
    /// JS distance to the raga's template.
    pub js_distance: f64,
    /// Rank of the raga's template (1 = nearest).
    pub template_rank: usize,
    /// Tonic drift, cents.
    pub tonic_drift_cents: Option<f64>,
    /// Voiced share of pitch frames.
    pub voiced_fraction: f64,
    /// Spectral centroid, Hz.
    pub centroid_hz: f64,
    /// Spectral bandwidth, Hz.
    pub bandwidth_hz: f64,
    /// 85% roll-off, Hz.
    pub rolloff_hz: f64,
    /// Spectral flatness.
    pub flatness: f64,
    /// RMS level, dBFS.
    pub rms_dbfs: f64,
    /// Onsets found (0 when too few for a grid verdict).
    pub onsets: usize,
    /// Onsets on the best pulse grid beyond random onsets' fit.
    pub onset_grid_excess: Option<f64>,
    /// That grid's period, seconds.
    pub pulse_period_s: Option<f64>,
    /// Length, seconds.
    pub duration_s: f64,
    /// Generation seconds.
    pub generate_s: Option<f64>,
    /// Real-time factor (generation seconds per audio second).
    pub real_time_factor: Option<f64>,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: Option<f64>,
    /// The audio file, relative to the output folder.
    pub wav: String,
    /// The spectrogram image, relative to the output folder.
    pub png: String,
}

fn top3(ranked: &[(String, f64)]) -> String {
    ranked
        .iter()
        .take(3)
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

impl ClipRow {
    /// The row of a clip.
    pub fn of(c: &ClipResult) -> Self {
        let r = &c.record;
        let a = &r.analysis;
        let hit =
            |ranked: &[(String, f64)], n: usize| ranked.iter().take(n).any(|(x, _)| *x == r.raga);
        ClipRow {
            backend: r.backend.clone(),
            clip: r.clip.clone(),
            prompt_id: r.prompt_id.clone(),
            prompt: r.prompt.clone(),
            raga: r.raga.clone(),
            seed: r.seed,
            tonic_hz: a.tonic_hz,
            tonic_given: a.tonic_given,
            estimated_tonic_hz: a.estimated_tonic_hz,
            cnn_top3: top3(&a.cnn_ranked),
            cnn_top1_right: hit(&a.cnn_ranked, 1),
            cnn_top3_right: hit(&a.cnn_ranked, 3),
            cnn_top1_score: a.cnn_ranked.first().map_or(0.0, |x| x.1),
            knn_top3: top3(&c.knn_ranked),
            knn_top1_right: hit(&c.knn_ranked, 1),
            knn_top3_right: hit(&c.knn_ranked, 3),
            in_scale_ratio: a.adherence.in_scale_ratio,
            in_scale_above_chance: a.adherence.in_scale_above_chance,
            illegal_swara_rate: a.adherence.illegal_swara_rate,
            js_distance: a.adherence.js_distance,
            template_rank: a.adherence.template_rank,
            tonic_drift_cents: a.adherence.tonic_drift_cents,
            voiced_fraction: a.voiced_fraction,
            centroid_hz: a.spectral.centroid_hz,
            bandwidth_hz: a.spectral.bandwidth_hz,
            rolloff_hz: a.spectral.rolloff_hz,
            flatness: a.spectral.flatness,
            rms_dbfs: a.spectral.rms_dbfs,
            onsets: a.rhythm.map_or(0, |r| r.onsets),
            onset_grid_excess: a.rhythm.map(|r| r.excess),
            pulse_period_s: a.rhythm.map(|r| r.period_s),
            duration_s: r.duration_s,
            generate_s: r.generate_s,
            real_time_factor: r.real_time_factor,
            peak_rss_mib: r.peak_rss_mib,
            wav: r.wav.clone(),
            png: r.png.clone(),
        }
    }
}

/// How the clips were judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgesInfo {
    /// The CNN: `built-in` or its folder.
    pub cnn: String,
    /// Ragas the CNN can name.
    pub cnn_ragas: usize,
    /// The kNN: its folder, or how it was fitted.
    pub knn: String,
    /// The backend whose clips are the Frechet reference.
    pub reference: Option<String>,
}

/// Everything in `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Experiment title.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The experiment file.
    pub experiment_file: String,
    /// ragafusion's version.
    pub version: String,
    /// Clip length asked for, seconds.
    pub seconds: f64,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// The prompts as composed.
    pub prompts: Vec<Prompt>,
    /// The judges.
    pub judges: JudgesInfo,
    /// Each backend's run (source, settings, load time).
    pub runs: Vec<BackendRun>,
    /// Each backend's summary.
    pub backends: Vec<BackendSummary>,
    /// Every clip.
    pub clips: Vec<ClipRow>,
}

impl Results {
    /// The per-backend table a terminal shows: clips, CNN and kNN top-1 /
    /// top-3, Frechet distance in the CNN's embedding, seconds per clip.
    pub fn table(&self) -> String {
        let mut lines = vec![format!(
            "{:<20} {:>5} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "backend", "clips", "CNN@1", "CNN@3", "kNN@1", "kNN@3", "FD(CNN)", "s/clip"
        )];
        for b in &self.backends {
            lines.push(format!(
                "{:<20} {:>5} {:>7.0}% {:>7.0}% {:>7.0}% {:>7.0}% {:>9} {:>9}",
                b.name,
                b.clips,
                100.0 * b.cnn.top1,
                100.0 * b.cnn.top3,
                100.0 * b.knn.top1,
                100.0 * b.knn.top3,
                b.fd_cnn.map_or("-".into(), |v| format!("{v:.3}")),
                b.seconds_per_clip
                    .map_or("-".into(), |s| format!("{:.2}", s.mean)),
            ));
        }
        lines.join("\n")
    }

    /// Assembles the results.
    pub fn new(
        exp: &Resolved,
        judges: JudgesInfo,
        runs: Vec<BackendRun>,
        backends: Vec<BackendSummary>,
        clips: &[ClipResult],
    ) -> Self {
        Results {
            name: exp.experiment.name.clone(),
            description: exp.experiment.description.clone(),
            experiment_file: exp.file.display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            seconds: exp.experiment.seconds,
            seeds: exp.experiment.seeds.clone(),
            prompts: exp.prompts.clone(),
            judges,
            runs,
            backends,
            clips: clips.iter().map(ClipRow::of).collect(),
        }
    }
}

fn csv_err(file: &Path) -> impl Fn(csv::Error) -> Error + '_ {
    move |e| Error::invalid_data(file, format!("writing CSV: {e}"))
}

/// The per-backend summary as CSV rows (means; `_std` columns for the
/// spread).
pub fn summary_csv(backends: &[BackendSummary], file: &Path) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let stats = |b: &BackendSummary| -> Vec<(&'static str, Option<Stat>)> {
        vec![
            ("in_scale_ratio", b.in_scale_ratio),
            ("in_scale_above_chance", b.in_scale_above_chance),
            ("illegal_swara_rate", b.illegal_swara_rate),
            ("js_distance", b.js_distance),
            ("tonic_drift_cents", b.tonic_drift_cents),
            ("voiced_fraction", b.voiced_fraction),
            ("centroid_hz", b.centroid_hz),
            ("onset_grid_excess", b.onset_grid_excess),
            ("bandwidth_hz", b.bandwidth_hz),
            ("rolloff_hz", b.rolloff_hz),
            ("flatness", b.flatness),
            ("rms_dbfs", b.rms_dbfs),
            ("seconds_per_clip", b.seconds_per_clip),
            ("real_time_factor", b.real_time_factor),
        ]
    };
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut header: Vec<String> = [
        "backend",
        "kind",
        "clips",
        "cnn_top1",
        "cnn_top3",
        "knn_top1",
        "knn_top3",
        "template_top1",
        "fd_cnn",
        "fd_knn",
        "load_s",
        "peak_rss_mib",
    ]
    .map(String::from)
    .to_vec();
    if let Some(b) = backends.first() {
        for (n, _) in stats(b) {
            header.push(n.to_string());
            header.push(format!("{n}_std"));
        }
    }
    w.write_record(&header).map_err(csv_err(file))?;
    for b in backends {
        let mut row = vec![
            b.name.clone(),
            b.kind.name().to_string(),
            b.clips.to_string(),
            b.cnn.top1.to_string(),
            b.cnn.top3.to_string(),
            b.knn.top1.to_string(),
            b.knn.top3.to_string(),
            b.template_top1.to_string(),
            opt(b.fd_cnn),
            opt(b.fd_knn),
            opt(b.load_s),
            opt(b.peak_rss_mib),
        ];
        for (_, s) in stats(b) {
            row.push(opt(s.map(|s| s.mean)));
            row.push(opt(s.map(|s| s.std)));
        }
        w.write_record(&row).map_err(csv_err(file))?;
    }
    w.into_inner()
        .map_err(|e| Error::invalid_data(file, format!("writing CSV: {e}")))
}

/// Writes `results.csv`, `summary.csv` and `results.json` into `out`.
pub fn write_results(out: &Path, results: &Results) -> Result<()> {
    let csv_path = out.join("results.csv");
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in &results.clips {
        w.serialize(row).map_err(csv_err(&csv_path))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::invalid_data(&csv_path, format!("writing CSV: {e}")))?;
    write_bytes_atomic(&csv_path, &bytes)?;
    let summary = out.join("summary.csv");
    write_bytes_atomic(&summary, &summary_csv(&results.backends, &summary)?)?;
    write_json_atomic(&out.join("results.json"), results)
}

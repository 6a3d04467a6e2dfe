//! Inspection of one clip: pitch track, tonic, PCD, the classifier's top
//! ragas, the nearest scale templates, loudness, and (for a requested
//! raga) adherence. The figure is drawn by [`super::figure`].

use serde::Serialize;

use super::adherence::{adherence, drift_cents, template_ranking, Adherence};
use super::classifier::{Classifier, ANALYSIS_RATE_HZ};
use super::features::pcd;
use super::pitch::{pyin, PitchTrack, PyinParams};
use super::tonic::estimate_tonic;
use super::verdict::{PitchedContent, Verdict};
use crate::captions::{Raga, Vocabulary};
use crate::error::{Error, Result};

/// Hop of the loudness curve, seconds.
pub const LOUDNESS_HOP_S: f64 = 0.05;

/// How the tonic was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TonicReport {
    /// The tonic every measure uses, Hz.
    pub hz: f64,
    /// Whether it was given by the user.
    pub given: bool,
    /// The estimate from the audio, Hz.
    pub estimated_hz: f64,
    /// The estimator's confidence (winner / runner-up score, >= 1).
    pub confidence: f64,
    /// |estimate - given| in cents (None when no tonic was given).
    pub drift_cents: Option<f64>,
}

/// Loudness of the clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoudnessReport {
    /// RMS over the whole clip, dBFS.
    pub rms_dbfs: f64,
    /// Sample peak, dBFS.
    pub peak_dbfs: f64,
    /// Seconds between curve points.
    pub hop_s: f64,
    /// RMS in windows of `hop_s`, dBFS (floored at -120).
    pub curve_dbfs: Vec<f32>,
}

/// Everything `analyze` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Length analysed, seconds.
    pub duration_s: f64,
    /// Tonic.
    pub tonic: TonicReport,
    /// Pitch track (pYIN, 10 ms hop; f0 0 where unvoiced).
    pub pitch: PitchTrack,
    /// Share of frames voiced.
    pub voiced_fraction: f64,
    /// Pitch-class distribution, 120 bins of 10 cents from Sa.
    pub pcd: Vec<f64>,
    /// Classifier kind used.
    pub classifier: String,
    /// The classifier's top ragas with scores.
    pub top: Vec<(String, f64)>,
    /// Whether those scores name a raga at all (see
    /// [`super::verdict`]).
    pub verdict: Verdict,
    /// The pitched content the verdict rests on.
    pub pitched: PitchedContent,
    /// The scale templates nearest the PCD, (raga, JS distance).
    pub nearest_templates: Vec<(String, f64)>,
    /// Adherence to the requested raga, if one was named.
    pub adherence: Option<Adherence>,
    /// Loudness.
    pub loudness: LoudnessReport,
}

/// Settings of an analysis.
#[derive(Debug, Clone, Copy)]
pub struct AnalyzeOptions<'a> {
    /// Known tonic, Hz (estimated when None).
    pub tonic_hz: Option<f64>,
    /// Raga to measure adherence to.
    pub raga: Option<&'a Raga>,
    /// Tonic search range, Hz.
    pub tonic_range_hz: (f64, f64),
    /// How many ragas / templates to list.
    pub top: usize,
}

fn dbfs(x: f64) -> f64 {
    if x > 0.0 {
        (20.0 * x.log10()).max(-120.0)
    } else {
        -120.0
    }
}

/// Loudness of mono `samples` at `rate` Hz.
pub fn loudness(samples: &[f32], rate: u32) -> LoudnessReport {
    let rms = |s: &[f32]| {
        (s.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
    };
    let hop = ((rate as f64 * LOUDNESS_HOP_S) as usize).max(1);
    LoudnessReport {
        rms_dbfs: dbfs(rms(samples)),
        peak_dbfs: dbfs(samples.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64))),
        hop_s: LOUDNESS_HOP_S,
        curve_dbfs: samples.chunks(hop).map(|c| dbfs(rms(c)) as f32).collect(),
    }
}

/// Analyses mono `samples` at [`ANALYSIS_RATE_HZ`].
pub fn analyze(
    samples: &[f32],
    classifier: &Classifier,
    vocab: &Vocabulary,
    opts: &AnalyzeOptions,
) -> Result<Analysis> {
    let rate = ANALYSIS_RATE_HZ;
    if samples.len() < rate as usize / 4 {
        return Err(Error::InvalidAudio {
            context: "analysis".into(),
            reason: format!("{} samples is under a quarter second", samples.len()),
        });
    }
    if let Some(t) = opts.tonic_hz {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::param("tonic_hz", format!("{t} is not a frequency")));
        }
    }
    let track = pyin(samples, rate, &PyinParams::default())?;
    let estimate = estimate_tonic(samples, rate, &track, opts.tonic_range_hz)?;
    let tonic_hz = opts.tonic_hz.unwrap_or(estimate.tonic_hz);
    let cents = track.cents(tonic_hz);
    let voiced = cents.iter().filter(|c| c.is_some()).count();
    let p = pcd(&cents);
    let verdict = classifier.classify_track(samples, &track, Some(tonic_hz))?;
    let pitched = PitchedContent::of(&track);
    let mut nearest = template_ranking(&p, &vocab.ragas);
    nearest.truncate(opts.top);
    let adherence = opts.raga.map(|r| {
        adherence(
            r,
            &cents,
            track.hop_s,
            &p,
            tonic_hz,
            opts.tonic_hz.map(|_| estimate.tonic_hz),
            &vocab.ragas,
        )
    });
    Ok(Analysis {
        duration_s: samples.len() as f64 / rate as f64,
        tonic: TonicReport {
            hz: tonic_hz,
            given: opts.tonic_hz.is_some(),
            estimated_hz: estimate.tonic_hz,
            confidence: estimate.confidence,
            drift_cents: opts.tonic_hz.map(|t| drift_cents(estimate.tonic_hz, t)),
        },
        voiced_fraction: voiced as f64 / cents.len().max(1) as f64,
        pitch: track,
        pcd: p,
        classifier: classifier.kind().to_string(),
        verdict: verdict.verdict(),
        pitched,
        top: verdict.ranked.into_iter().take(opts.top).collect(),
        nearest_templates: nearest,
        adherence,
        loudness: loudness(samples, rate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudness_of_a_sine() {
        let s: Vec<f32> = (0..44100)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 441.0 * i as f32 / 44100.0).sin())
            .collect();
        let l = loudness(&s, 44100);
        assert!((l.peak_dbfs - dbfs(0.5)).abs() < 0.01);
        assert!((l.rms_dbfs - dbfs(0.5 / 2f64.sqrt())).abs() < 0.01);
        assert_eq!(l.curve_dbfs.len(), 20);
        assert_eq!(loudness(&[0.0; 100], 44100).rms_dbfs, -120.0);
    }
}

//! The renderer is measurably right:
//! - an independent pitch estimate (a plain YIN written here, not the
//!   renderer's contours) of rendered clips, relative to the labelled tonic,
//!   lies within 35 cents of the raga's swaras on >= 95% of stable voiced
//!   frames, for every raga in the vocabulary;
//! - percussion onsets, found by spectral flux on the percussion stem, fall
//!   on the tala's beat grid.

use rayon::prelude::*;

use ragafusion::audio::{resample, Audio};
use ragafusion::captions::Vocabulary;
use ragafusion::corpus::synth::{render, SynthSegment, SynthSpec, Timbre, TIMBRES};

const YIN_RATE: u32 = 11025;
const HOP: usize = 110; // ~10 ms
const WINDOW: usize = 512;

/// f0 per 10 ms frame (None when unvoiced), YIN with threshold 0.12.
fn yin(x: &[f32]) -> Vec<Option<f64>> {
    let max_lag = (YIN_RATE / 60) as usize;
    let min_lag = (YIN_RATE / 1000) as usize;
    let mut out = Vec::new();
    let mut start = 0;
    while start + WINDOW + max_lag < x.len() {
        let frame = &x[start..start + WINDOW + max_lag];
        let energy: f32 = frame[..WINDOW].iter().map(|v| v * v).sum::<f32>() / WINDOW as f32;
        let mut d = vec![0.0f64; max_lag + 1];
        for (tau, dv) in d.iter_mut().enumerate().skip(1) {
            *dv = (0..WINDOW)
                .map(|j| ((frame[j] - frame[j + tau]) as f64).powi(2))
                .sum();
        }
        let mut cmnd = vec![1.0f64; max_lag + 1];
        let mut running = 0.0;
        for tau in 1..=max_lag {
            running += d[tau];
            cmnd[tau] = if running > 0.0 {
                d[tau] * tau as f64 / running
            } else {
                1.0
            };
        }
        let mut found = None;
        let mut tau = min_lag;
        while tau < max_lag {
            if cmnd[tau] < 0.12 {
                while tau + 1 < max_lag && cmnd[tau + 1] < cmnd[tau] {
                    tau += 1;
                }
                found = Some(tau);
                break;
            }
            tau += 1;
        }
        out.push(found.filter(|_| energy > 1e-5).map(|tau| {
            let (a, b, c) = (cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]);
            let denom = a - 2.0 * b + c;
            let shift = if denom.abs() > 1e-12 {
                0.5 * (a - c) / denom
            } else {
                0.0
            };
            YIN_RATE as f64 / (tau as f64 + shift)
        }));
        start += HOP;
    }
    out
}

/// Share of stable voiced frames within 35 cents of an allowed swara, and
/// how many stable frames there were. Stable: runs of >= 8 frames (80 ms)
/// whose pitch moves < 5 cents per frame (500 cents/s).
fn adherence(f0: &[Option<f64>], tonic_hz: f64, pitch_classes: &[u8]) -> (f64, usize) {
    let cents: Vec<Option<f64>> = f0
        .iter()
        .map(|f| f.map(|f| 1200.0 * (f / tonic_hz).log2()))
        .collect();
    let mut stable = vec![false; cents.len()];
    let mut run_start = 0;
    for i in 1..=cents.len() {
        let continues = i < cents.len()
            && matches!((cents[i - 1], cents[i]), (Some(a), Some(b)) if (a - b).abs() < 5.0);
        if !continues {
            if i - run_start >= 8 {
                stable[run_start..i].iter_mut().for_each(|s| *s = true);
            }
            run_start = i;
        }
    }
    let mut total = 0;
    let mut good = 0;
    for (c, s) in cents.iter().zip(&stable) {
        if let (Some(c), true) = (c, s) {
            total += 1;
            let pc = c.rem_euclid(1200.0);
            let near = pitch_classes
                .iter()
                .map(|p| {
                    let d = (pc - 100.0 * *p as f64).abs();
                    d.min(1200.0 - d)
                })
                .fold(f64::MAX, f64::min);
            if near <= 35.0 {
                good += 1;
            }
        }
    }
    (good as f64 / total.max(1) as f64, total)
}

#[test]
fn every_raga_renders_in_tune() {
    let vocab = Vocabulary::builtin();
    let failures: Vec<String> = vocab
        .ragas
        .par_iter()
        .enumerate()
        .filter_map(|(i, raga)| {
            let spec = SynthSpec {
                raga: raga.name.clone(),
                tala: Some("Adi".into()),
                tonic_hz: 100.0 + (i as f64 * 37.0) % 160.0,
                tempo_bpm: 80.0,
                timbre: TIMBRES[i % TIMBRES.len()],
                segment: if i % 2 == 0 {
                    SynthSegment::Alapana
                } else {
                    SynthSegment::Kriti
                },
                percussion: false,
                stroke_kit: None,
                drone: true,
                duration_s: 5.12,
                sample_rate_hz: 44100,
                seed: i as u64,
            };
            let clip = render(vocab, &spec).unwrap();
            let down = resample(&clip.mix, YIN_RATE).unwrap();
            let (share, frames) =
                adherence(&yin(&down.channels[0]), spec.tonic_hz, &raga.pitch_classes);
            (share < 0.95 || frames < 100).then(|| {
                format!(
                    "{} ({:?}, {:.0} Hz): {:.1}% of {frames} stable frames",
                    raga.name,
                    spec.timbre,
                    spec.tonic_hz,
                    share * 100.0
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "out of tune: {failures:#?}");
}

#[test]
fn a_wrong_raga_fails_the_same_check() {
    // The check can fail: Todi's clip judged against Kalyani's swaras.
    let vocab = Vocabulary::builtin();
    let spec = SynthSpec {
        raga: "Todi".into(),
        tala: None,
        tonic_hz: 140.0,
        tempo_bpm: 80.0,
        timbre: Timbre::Voice,
        segment: SynthSegment::Alapana,
        percussion: false,
        stroke_kit: None,
        drone: false,
        duration_s: 5.12,
        sample_rate_hz: 44100,
        seed: 3,
    };
    let clip = render(vocab, &spec).unwrap();
    let down = resample(&clip.mix, YIN_RATE).unwrap();
    let kalyani = &vocab.raga("Kalyani").unwrap().pitch_classes;
    let (share, _) = adherence(&yin(&down.channels[0]), 140.0, kalyani);
    assert!(share < 0.8, "{share}");
}

/// Onset times (s) by half-wave-rectified spectral flux above 2 kHz (where
/// a stroke's attack is broadband and ringing partials are not), adaptive
/// threshold (a tenth of the strongest), 50 ms minimum spacing.
fn onsets(x: &[f32], rate: f64) -> Vec<f64> {
    let n = 1024;
    let hop = 256;
    let lowest_bin = (2000.0 * n as f64 / rate) as usize;
    let stft = ragafusion::spectrogram::stft::Stft::new(n, hop, n).unwrap();
    let spec = stft.forward(x, n / 2 + 1);
    let mags = spec.magnitudes();
    let bins = spec.bins;
    let mut flux = vec![0.0f64; spec.frames];
    for t in 1..spec.frames {
        flux[t] = (lowest_bin..bins)
            .map(|k| (mags[t * bins + k] - mags[(t - 1) * bins + k]).max(0.0) as f64)
            .sum();
    }
    let threshold = 0.1 * flux.iter().cloned().fold(0.0, f64::max) + 1e-12;
    let mut out: Vec<f64> = Vec::new();
    for t in 1..spec.frames - 1 {
        if flux[t] > threshold && flux[t] >= flux[t - 1] && flux[t] > flux[t + 1] {
            // Frame t is centred on sample t * hop.
            let time = (t * hop) as f64 / rate;
            if out.last().is_none_or(|&l| time - l > 0.05) {
                out.push(time);
            }
        }
    }
    out
}

#[test]
fn percussion_onsets_fall_on_the_beat_grid() {
    let vocab = Vocabulary::builtin();
    for (tala, bpm, seed) in [
        ("Adi", 90.0, 1u64),
        ("Misra Chapu", 130.0, 2),
        ("Rupaka", 70.0, 3),
    ] {
        let spec = SynthSpec {
            raga: "Shankarabharanam".into(),
            tala: Some(tala.into()),
            tonic_hz: 130.0,
            tempo_bpm: bpm,
            timbre: Timbre::Violin,
            segment: SynthSegment::Kriti,
            percussion: true,
            stroke_kit: None,
            drone: true,
            duration_s: 5.12,
            sample_rate_hz: 44100,
            seed,
        };
        let clip = render(vocab, &spec).unwrap();
        let label = &clip.label;
        let first = label.percussion[0].time_s;
        let half_beat = 30.0 / bpm;
        // The label's onsets lie on the half-beat grid from the first stroke.
        for o in &label.percussion {
            let k = (o.time_s - first) / half_beat;
            assert!((k - k.round()).abs() < 1e-6, "{tala}: label onset off grid");
        }
        let stem = Audio::new(vec![clip.percussion.clone()], 44100, "stem").unwrap();
        let found = onsets(&stem.channels[0], 44100.0);
        let near_grid = found
            .iter()
            .filter(|&&t| {
                let k = ((t - first) / half_beat).round();
                k >= 0.0 && (t - (first + k * half_beat)).abs() <= 0.015
            })
            .count();
        assert!(
            found.len() >= label.percussion.len() * 9 / 10,
            "{tala}: found {} of {} strokes",
            found.len(),
            label.percussion.len()
        );
        assert!(
            near_grid as f64 >= 0.95 * found.len() as f64,
            "{tala}: {near_grid} of {} onsets on the grid",
            found.len()
        );
    }
}

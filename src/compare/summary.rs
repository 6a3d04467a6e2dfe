//! From measured clips to results: the kNN's verdicts (a given model, or
//! one fitted on the reference clips, which are themselves judged
//! leave-one-out), per-backend accuracy, confusion matrices, adherence,
//! spectral and speed summaries, and the Frechet distances to the
//! reference clips on both classifiers' embeddings.

use serde::Serialize;

use super::analysis::ClipAnalysis;
use super::experiment::BackendKind;
use super::metrics::{frechet_distance, mean_std};
use super::run::{BackendRun, ClipRecord};
use crate::error::Result;
use crate::raga::evaluate::{evaluate, Evaluation};
use crate::raga::knn::KnnModel;

/// Neighbours that vote in a kNN fitted on the reference clips.
pub const FITTED_K: usize = 5;

/// A statistic over a backend's clips.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Clips with a value.
    pub n: usize,
}

fn stat(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    mean_std(v.iter().copied()).map(|(mean, std)| Stat {
        mean,
        std,
        n: v.len(),
    })
}

/// One clip's row of the results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipResult {
    /// The stored record (embeddings and features included).
    #[serde(flatten)]
    pub record: ClipRecord,
    /// The kNN's ranked ragas, best first (top 5).
    pub knn_ranked: Vec<(String, f64)>,
}

impl ClipResult {
    /// The measurements.
    pub fn analysis(&self) -> &ClipAnalysis {
        &self.record.analysis
    }
}

/// A backend's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendSummary {
    /// Backend name.
    pub name: String,
    /// Kind.
    pub kind: BackendKind,
    /// Clips measured.
    pub clips: usize,
    /// The CNN's accuracy on the requested ragas, and its confusion
    /// matrix (ragas that occur).
    pub cnn: Evaluation,
    /// The kNN's accuracy and confusion matrix.
    pub knn: Evaluation,
    /// In-scale ratio on stable frames.
    pub in_scale_ratio: Option<Stat>,
    /// In-scale ratio above chance.
    pub in_scale_above_chance: Option<Stat>,
    /// Illegal-swara rate.
    pub illegal_swara_rate: Option<Stat>,
    /// JS distance of the PCD to the requested raga's template.
    pub js_distance: Option<Stat>,
    /// Share of clips whose nearest template is the requested raga's.
    pub template_top1: f64,
    /// Tonic drift, cents (clips with a given tonic).
    pub tonic_drift_cents: Option<Stat>,
    /// Share of voiced pitch frames.
    pub voiced_fraction: Option<Stat>,
    /// Spectral centroid, Hz.
    pub centroid_hz: Option<Stat>,
    /// How much better the clips' onsets sit on a pulse grid than random
    /// onsets would (clips with enough onsets; see `raga::rhythm`).
    pub onset_grid_excess: Option<Stat>,
    /// Clips with enough onsets for a grid verdict.
    pub clips_with_onsets: usize,
    /// Spectral bandwidth, Hz.
    pub bandwidth_hz: Option<Stat>,
    /// 85% roll-off, Hz.
    pub rolloff_hz: Option<Stat>,
    /// Spectral flatness.
    pub flatness: Option<Stat>,
    /// RMS level, dBFS.
    pub rms_dbfs: Option<Stat>,
    /// Frechet distance to the reference clips on CNN embeddings.
    pub fd_cnn: Option<f64>,
    /// Frechet distance to the reference clips on kNN (sqrt-PCD)
    /// embeddings.
    pub fd_knn: Option<f64>,
    /// Seconds to generate a clip.
    pub seconds_per_clip: Option<Stat>,
    /// Generation seconds per second of audio.
    pub real_time_factor: Option<Stat>,
    /// Model load, seconds.
    pub load_s: Option<f64>,
    /// Peak resident memory while it ran, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Whether the peak was measured from this backend's start.
    pub peak_rss_isolated: bool,
}

/// Where the kNN's verdicts came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum KnnSource {
    /// A trained model folder.
    Given,
    /// Fitted on the reference backend's clips; those judged leave-one-out.
    FittedOnReference,
}

/// The kNN's top ragas for every clip (in `clips` order).
pub fn knn_verdicts(
    clips: &[ClipRecord],
    given: Option<&KnnModel>,
    reference: Option<&str>,
) -> Result<Vec<Vec<(String, f64)>>> {
    let keep = |mut v: Vec<(String, f64)>| {
        v.truncate(super::analysis::KEEP_RANKED);
        v
    };
    if let Some(m) = given {
        return Ok(clips
            .iter()
            .map(|c| keep(m.predict(&c.analysis.knn_features())))
            .collect());
    }
    let refs: Vec<usize> = (0..clips.len())
        .filter(|&i| Some(clips[i].backend.as_str()) == reference)
        .collect();
    let mut ragas: Vec<String> = refs.iter().map(|&i| clips[i].raga.clone()).collect();
    ragas.sort();
    ragas.dedup();
    let fit = |skip: Option<usize>| -> Result<KnnModel> {
        let examples: Vec<_> = refs
            .iter()
            .filter(|&&i| Some(i) != skip)
            .map(|&i| {
                let label = ragas.iter().position(|r| *r == clips[i].raga).unwrap_or(0);
                (clips[i].analysis.knn_features(), label)
            })
            .collect();
        KnnModel::fit(ragas.clone(), &examples, FITTED_K, usize::MAX)
    };
    let all = fit(None)?;
    clips
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = c.analysis.knn_features();
            if refs.contains(&i) {
                Ok(keep(fit(Some(i))?.predict(&f)))
            } else {
                Ok(keep(all.predict(&f)))
            }
        })
        .collect()
}

fn names(ranked: &[(String, f64)]) -> Vec<String> {
    ranked.iter().map(|(n, _)| n.clone()).collect()
}

/// Per-backend summaries of `clips` (with their kNN verdicts), Frechet
/// distances measured against the clips of `reference`.
pub fn summarise(
    clips: &[ClipResult],
    runs: &[BackendRun],
    reference: Option<&str>,
    cnn_ragas: &[String],
) -> Result<Vec<BackendSummary>> {
    let of = |name: &str| -> Vec<&ClipResult> {
        clips.iter().filter(|c| c.record.backend == name).collect()
    };
    let embeddings = |set: &[&ClipResult], cnn: bool| -> Vec<Vec<f64>> {
        set.iter()
            .map(|c| {
                if cnn {
                    c.analysis().cnn_embedding_f64()
                } else {
                    c.analysis().knn_embedding()
                }
            })
            .collect()
    };
    let ref_set = reference.map(of).unwrap_or_default();
    let mut out = Vec::new();
    for run in runs {
        let set = of(&run.name);
        let truth: Vec<String> = set.iter().map(|c| c.record.raga.clone()).collect();
        let cnn_pred: Vec<Vec<String>> = set
            .iter()
            .map(|c| names(&c.analysis().cnn_ranked))
            .collect();
        let knn_pred: Vec<Vec<String>> = set.iter().map(|c| names(&c.knn_ranked)).collect();
        let mut knn_ragas: Vec<String> = truth
            .iter()
            .chain(knn_pred.iter().flatten())
            .cloned()
            .collect();
        knn_ragas.sort();
        knn_ragas.dedup();
        let a = |f: &dyn Fn(&ClipAnalysis) -> f64| stat(set.iter().map(|c| f(c.analysis())));
        let fd = |cnn: bool| -> Result<Option<f64>> {
            if Some(run.name.as_str()) == reference || set.len() < 2 || ref_set.len() < 2 {
                return Ok(None);
            }
            frechet_distance(&embeddings(&set, cnn), &embeddings(&ref_set, cnn)).map(Some)
        };
        out.push(BackendSummary {
            name: run.name.clone(),
            kind: run.kind,
            clips: set.len(),
            cnn: evaluate(cnn_ragas, &truth, &cnn_pred).occurring(),
            knn: evaluate(&knn_ragas, &truth, &knn_pred).occurring(),
            in_scale_ratio: a(&|x| x.adherence.in_scale_ratio),
            in_scale_above_chance: a(&|x| x.adherence.in_scale_above_chance),
            illegal_swara_rate: a(&|x| x.adherence.illegal_swara_rate),
            js_distance: a(&|x| x.adherence.js_distance),
            template_top1: set
                .iter()
                .filter(|c| c.analysis().adherence.template_rank == 1)
                .count() as f64
                / set.len().max(1) as f64,
            tonic_drift_cents: stat(
                set.iter()
                    .filter_map(|c| c.analysis().adherence.tonic_drift_cents),
            ),
            voiced_fraction: a(&|x| x.voiced_fraction),
            centroid_hz: a(&|x| x.spectral.centroid_hz),
            onset_grid_excess: stat(
                set.iter()
                    .filter_map(|c| c.analysis().rhythm.map(|r| r.excess)),
            ),
            clips_with_onsets: set.iter().filter(|c| c.analysis().rhythm.is_some()).count(),
            bandwidth_hz: a(&|x| x.spectral.bandwidth_hz),
            rolloff_hz: a(&|x| x.spectral.rolloff_hz),
            flatness: a(&|x| x.spectral.flatness),
            rms_dbfs: a(&|x| x.spectral.rms_dbfs),
            fd_cnn: fd(true)?,
            fd_knn: fd(false)?,
            seconds_per_clip: stat(set.iter().filter_map(|c| c.record.generate_s)),
            real_time_factor: stat(set.iter().filter_map(|c| c.record.real_time_factor)),
            load_s: run.load_s,
            peak_rss_mib: set
                .iter()
                .filter_map(|c| c.record.peak_rss_mib)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
            peak_rss_isolated: run.peak_rss_isolated,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::analysis::{AdherenceSummary, ANALYSIS_VERSION};
    use crate::compare::metrics::SpectralStats;

    fn analysis(cnn: &[&str], pcd_peak: usize, rank: usize) -> ClipAnalysis {
        // two smooth bumps (at the peak and 700 cents above), so that
        // nearby peaks overlap and distant ones do not
        let bump = |b: usize, at: usize| {
            let d = (b as f32 - at as f32).abs();
            let d = d.min(120.0 - d);
            (-d * d / 8.0).exp()
        };
        let mut pcd: Vec<f32> = (0..120)
            .map(|b| bump(b, pcd_peak) + 0.6 * bump(b, (pcd_peak + 70) % 120))
            .collect();
        let total: f32 = pcd.iter().sum();
        pcd.iter_mut().for_each(|v| *v /= total);
        ClipAnalysis {
            version: ANALYSIS_VERSION,
            tonic_hz: 150.0,
            tonic_given: true,
            estimated_tonic_hz: Some(150.0),
            voiced_fraction: 0.5,
            adherence: AdherenceSummary {
                in_scale_ratio: 0.8,
                in_scale_above_chance: 0.3,
                illegal_swara_rate: 0.2,
                js_distance: 0.4,
                template_rank: rank,
                tonic_drift_cents: Some(10.0),
            },
            cnn_ranked: cnn.iter().map(|r| (r.to_string(), 0.1)).collect(),
            cnn_embedding: vec![pcd_peak as f32, 1.0],
            pcd,
            tdms: vec![1.0 / 1600.0; 1600],
            voiced_frames: 100,
            spectral: SpectralStats {
                centroid_hz: 1000.0,
                bandwidth_hz: 100.0,
                rolloff_hz: 2000.0,
                flatness: 0.1,
                rms_dbfs: -20.0,
            },
            rhythm: None,
        }
    }

    fn record(backend: &str, clip: &str, raga: &str, a: ClipAnalysis) -> ClipRecord {
        ClipRecord {
            key: String::new(),
            backend: backend.into(),
            clip: clip.into(),
            prompt_id: None,
            prompt: None,
            raga: raga.into(),
            seed: None,
            source: None,
            duration_s: 5.12,
            generate_s: Some(2.56),
            real_time_factor: Some(0.5),
            peak_rss_mib: Some(100.0),
            wav: String::new(),
            png: String::new(),
            analysis: a,
        }
    }

    fn run(name: &str, kind: BackendKind) -> BackendRun {
        BackendRun {
            name: name.into(),
            kind,
            source: Default::default(),
            settings: serde_json::Value::Null,
            load_s: None,
            peak_rss_isolated: true,
            model_hash: None,
        }
    }

    #[test]
    fn accuracy_equals_the_count_by_hand() {
        // four generated clips: CNN top-1 right on #0 and #3, top-3 right
        // on #0, #1, #3; template rank 1 on #0 and #2
        let clips = vec![
            record(
                "g",
                "a",
                "Mohanam",
                analysis(&["Mohanam", "Kalyani", "Todi"], 0, 1),
            ),
            record(
                "g",
                "b",
                "Mohanam",
                analysis(&["Todi", "Kalyani", "Mohanam"], 0, 2),
            ),
            record(
                "g",
                "c",
                "Kalyani",
                analysis(&["Todi", "Mohanam", "Bhairavi"], 60, 1),
            ),
            record(
                "g",
                "d",
                "Kalyani",
                analysis(&["Kalyani", "Todi", "Mohanam"], 60, 3),
            ),
        ];
        let results: Vec<ClipResult> = clips
            .into_iter()
            .map(|record| ClipResult {
                knn_ranked: vec![("Mohanam".into(), 1.0)],
                record,
            })
            .collect();
        let ragas: Vec<String> = ["Bhairavi", "Kalyani", "Mohanam", "Todi"]
            .map(String::from)
            .to_vec();
        let s = summarise(&results, &[run("g", BackendKind::Musicgen)], None, &ragas).unwrap();
        let s = &s[0];
        assert_eq!(s.clips, 4);
        assert_eq!(s.cnn.top1, 2.0 / 4.0);
        assert_eq!(s.cnn.top3, 3.0 / 4.0);
        // kNN always says Mohanam: right on the two Mohanam clips
        assert_eq!(s.knn.top1, 0.5);
        assert_eq!(s.template_top1, 0.5);
        // truth Kalyani row: one Todi, one Kalyani
        let k = s.cnn.ragas.iter().position(|r| r == "Kalyani").unwrap();
        let t = s.cnn.ragas.iter().position(|r| r == "Todi").unwrap();
        assert_eq!(s.cnn.confusion[k][t], 1);
        assert_eq!(s.cnn.confusion[k][k], 1);
        assert_eq!(s.seconds_per_clip.unwrap().mean, 2.56);
        assert_eq!(s.fd_cnn, None);
    }

    #[test]
    fn fitted_knn_judges_reference_clips_leave_one_out_and_fd_is_measured() {
        let mk = |b: &str, c: &str, raga: &str, peak: usize| {
            record(b, c, raga, analysis(&["Todi"], peak, 1))
        };
        let clips = vec![
            mk("ref", "m1", "Mohanam", 0),
            mk("ref", "m2", "Mohanam", 1),
            mk("ref", "k1", "Kalyani", 60),
            mk("ref", "k2", "Kalyani", 61),
            mk("gen", "x", "Mohanam", 0),
            mk("gen", "y", "Kalyani", 0),
        ];
        let v = knn_verdicts(&clips, None, Some("ref")).unwrap();
        // every reference clip's nearest other clip has its raga
        for i in 0..4 {
            assert_eq!(v[i][0].0, clips[i].raga, "{i}: {:?}", v[i]);
        }
        // both generated clips look like Mohanam
        assert_eq!(v[4][0].0, "Mohanam");
        assert_eq!(v[5][0].0, "Mohanam");
        let results: Vec<ClipResult> = clips
            .into_iter()
            .zip(v)
            .map(|(record, knn_ranked)| ClipResult { record, knn_ranked })
            .collect();
        let runs = [
            run("ref", BackendKind::Reference),
            run("gen", BackendKind::Diffusion),
        ];
        let s = summarise(&results, &runs, Some("ref"), &[]).unwrap();
        assert_eq!(s[0].knn.top1, 1.0);
        assert_eq!(s[1].knn.top1, 0.5);
        assert_eq!(s[0].fd_cnn, None);
        assert!(s[1].fd_cnn.unwrap() > 0.0);
        assert!(s[1].fd_knn.unwrap() > 0.0);
    }
}

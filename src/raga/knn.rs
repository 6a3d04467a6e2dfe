//! Raga classifier (a): pitch-class distribution + time-delayed melody
//! surface, k nearest neighbours.
//!
//! A clip's features are its PCD (120 bins) and a coarse TDMS (40 x 40,
//! 30-cent bins), both relative to the tonic (given, or estimated). The
//! model keeps up to `max_per_raga` training clips per raga and scores a
//! query by its `k` nearest, distance = Hellinger(PCD) + Hellinger(TDMS),
//! vote = 1 / (distance + 0.01). Saved as `model.safetensors` (tensors
//! `pcd` [N, 120], `tdms` [N, 1600], `labels` [N] as f32) plus
//! `config.json` (ragas, k, feature settings).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::features::{pcd, tdms, PCD_BINS, TDMS_BINS};
use super::pitch::{pyin, PitchTrack, PyinParams};
use super::tonic::estimate_tonic;
use crate::error::{Error, Result};
use crate::fsutil::{read_bytes, write_bytes_atomic, write_json_atomic};

/// TDMS bins per axis kept by the classifier (the 160-bin surface pooled 4x).
pub const SMALL_TDMS: usize = TDMS_BINS / 4;

/// Features of one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFeatures {
    /// Tonic used, Hz.
    pub tonic_hz: f64,
    /// PCD, 120 bins.
    pub pcd: Vec<f32>,
    /// Pooled TDMS, `SMALL_TDMS^2` values.
    pub tdms: Vec<f32>,
    /// Voiced frames the features came from.
    pub voiced_frames: usize,
}

/// Extracts features from mono audio; `tonic_hz` None estimates it in
/// `tonic_range_hz`.
pub fn clip_features(
    samples: &[f32],
    rate: u32,
    tonic_hz: Option<f64>,
    tonic_range_hz: (f64, f64),
) -> Result<ClipFeatures> {
    let track = pyin(samples, rate, &PyinParams::default())?;
    let tonic = match tonic_hz {
        Some(t) if t.is_finite() && t > 0.0 => t,
        Some(t) => return Err(Error::param("tonic_hz", format!("{t} is not a frequency"))),
        None => estimate_tonic(samples, rate, &track, tonic_range_hz)?.tonic_hz,
    };
    Ok(track_features(&track, tonic))
}

/// Features of a pitch track relative to `tonic_hz`.
pub fn track_features(track: &PitchTrack, tonic_hz: f64) -> ClipFeatures {
    let tonic = tonic_hz;
    let cents = track.cents(tonic);
    let voiced_frames = cents.iter().filter(|c| c.is_some()).count();
    let full = tdms(&cents, track.hop_s, 0.3);
    let mut small = vec![0.0f32; SMALL_TDMS * SMALL_TDMS];
    for r in 0..TDMS_BINS {
        for c in 0..TDMS_BINS {
            small[(r / 4) * SMALL_TDMS + c / 4] += full[r * TDMS_BINS + c] as f32;
        }
    }
    ClipFeatures {
        tonic_hz: tonic,
        pcd: pcd(&cents).into_iter().map(|v| v as f32).collect(),
        tdms: small,
        voiced_frames,
    }
}

/// Settings saved with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    /// Always "pcd-tdms-knn".
    pub kind: String,
    /// Raga names; labels index into this.
    pub ragas: Vec<String>,
    /// Neighbours that vote.
    pub k: usize,
    /// Training clips kept per raga.
    pub max_per_raga: usize,
    /// Tonic search range when none is given, Hz.
    pub tonic_range_hz: (f64, f64),
}

/// A trained kNN classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnModel {
    /// Settings.
    pub config: KnnConfig,
    pcd: Vec<f32>,
    tdms: Vec<f32>,
    labels: Vec<usize>,
}

fn hellinger(a: &[f32], b: &[f32]) -> f64 {
    let bc: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((*x).max(0.0) as f64 * (*y).max(0.0) as f64).sqrt())
        .sum();
    (1.0 - bc).max(0.0).sqrt()
}

impl KnnModel {
    /// Builds a model from labelled features (`label` indexes `ragas`),
    /// keeping the first `max_per_raga` examples of each raga.
    pub fn fit(
        ragas: Vec<String>,
        examples: &[(ClipFeatures, usize)],
        k: usize,
        max_per_raga: usize,
    ) -> Result<Self> {
        if ragas.is_empty() || examples.is_empty() {
            return Err(Error::param("examples", "no training examples"));
        }
        if k == 0 {
            return Err(Error::param("k", "k must be at least 1"));
        }
        let mut kept = vec![0usize; ragas.len()];
        let (mut p, mut t, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for (f, label) in examples {
            if *label >= ragas.len() {
                return Err(Error::param(
                    "label",
                    format!("{label} is not below {}", ragas.len()),
                ));
            }
            if kept[*label] >= max_per_raga || f.voiced_frames == 0 {
                continue;
            }
            kept[*label] += 1;
            p.extend_from_slice(&f.pcd);
            t.extend_from_slice(&f.tdms);
            labels.push(*label);
        }
        Ok(KnnModel {
            config: KnnConfig {
                kind: "pcd-tdms-knn".into(),
                ragas,
                k,
                max_per_raga,
                tonic_range_hz: (100.0, 260.0),
            },
            pcd: p,
            tdms: t,
            labels,
        })
    }

    /// Number of stored examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the model stores no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Raga scores for a clip, highest first, summing to 1.
    pub fn predict(&self, f: &ClipFeatures) -> Vec<(String, f64)> {
        let n = self.labels.len();
        let tb = SMALL_TDMS * SMALL_TDMS;
        let mut dists: Vec<(f64, usize)> = (0..n)
            .map(|i| {
                let d = hellinger(&f.pcd, &self.pcd[i * PCD_BINS..(i + 1) * PCD_BINS])
                    + hellinger(&f.tdms, &self.tdms[i * tb..(i + 1) * tb]);
                (d, self.labels[i])
            })
            .collect();
        dists.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut scores = vec![0.0f64; self.config.ragas.len()];
        for (d, l) in dists.iter().take(self.config.k) {
            scores[*l] += 1.0 / (d + 0.01);
        }
        let total: f64 = scores.iter().sum::<f64>().max(1e-12);
        let mut out: Vec<(String, f64)> = self
            .config
            .ragas
            .iter()
            .cloned()
            .zip(scores.into_iter().map(|s| s / total))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Writes `config.json` and `model.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::fsutil::create_dir(dir)?;
        let labels: Vec<f32> = self.labels.iter().map(|l| *l as f32).collect();
        let n = self.labels.len();
        let tensors = [
            ("labels", vec![n], &labels[..]),
            ("pcd", vec![n, PCD_BINS], &self.pcd[..]),
            ("tdms", vec![n, SMALL_TDMS * SMALL_TDMS], &self.tdms[..]),
        ];
        let views = tensors
            .iter()
            .map(|(name, shape, data)| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytemuck::cast_slice(data),
                )
                .map(|v| (name.to_string(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidData {
                file: dir.join("model.safetensors").display().to_string(),
                reason: e.to_string(),
            })?;
        let bytes = safetensors::serialize(views, None).map_err(|e| Error::InvalidData {
            file: dir.join("model.safetensors").display().to_string(),
            reason: e.to_string(),
        })?;
        write_bytes_atomic(&dir.join("model.safetensors"), &bytes)?;
        write_json_atomic(&dir.join("config.json"), &self.config)
    }

    /// Reads a model saved by [`KnnModel::save`], checking names, shapes and values.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let st_path = dir.join("model.safetensors");
        let bad = |file: &Path, reason: String| Error::InvalidData {
            file: file.display().to_string(),
            reason,
        };
        let config: KnnConfig = serde_json::from_slice(&read_bytes(&cfg_path)?)
            .map_err(|e| bad(&cfg_path, e.to_string()))?;
        if config.kind != "pcd-tdms-knn" {
            return Err(bad(
                &cfg_path,
                format!("field `kind` is `{}`, not pcd-tdms-knn", config.kind),
            ));
        }
        let bytes = read_bytes(&st_path)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(&st_path, e.to_string()))?;
        let get = |name: &str, cols: Option<usize>| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|e| bad(&st_path, format!("tensor `{name}`: {e}")))?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(bad(
                    &st_path,
                    format!("tensor `{name}` is {:?}, expected F32", t.dtype()),
                ));
            }
            if let Some(c) = cols {
                if t.shape().len() != 2 || t.shape()[1] != c {
                    return Err(bad(
                        &st_path,
                        format!(
                            "tensor `{name}` has shape {:?}, expected [N, {c}]",
                            t.shape()
                        ),
                    ));
                }
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(
                    &st_path,
                    format!("tensor `{name}` value {i} is not finite"),
                ));
            }
            Ok(v)
        };
        let labels_f = get("labels", None)?;
        let pcd = get("pcd", Some(PCD_BINS))?;
        let tdms = get("tdms", Some(SMALL_TDMS * SMALL_TDMS))?;
        let n = labels_f.len();
        if pcd.len() != n * PCD_BINS || tdms.len() != n * SMALL_TDMS * SMALL_TDMS {
            return Err(bad(
                &st_path,
                format!("tensors disagree on the number of examples ({n} labels)"),
            ));
        }
        let labels = labels_f
            .iter()
            .map(|l| {
                let i = *l as usize;
                if l.fract() == 0.0 && *l >= 0.0 && i < config.ragas.len() {
                    Ok(i)
                } else {
                    Err(bad(
                        &st_path,
                        format!("label {l} is not a raga index below {}", config.ragas.len()),
                    ))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KnnModel {
            config,
            pcd,
            tdms,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feat(peak: usize) -> ClipFeatures {
        let mut pcd = vec![0.001f32; PCD_BINS];
        pcd[peak] = 1.0;
        let mut tdms = vec![0.001f32; SMALL_TDMS * SMALL_TDMS];
        tdms[peak % SMALL_TDMS] = 1.0;
        ClipFeatures {
            tonic_hz: 140.0,
            pcd,
            tdms,
            voiced_frames: 100,
        }
    }

    #[test]
    fn nearest_examples_win_and_models_round_trip() {
        let ragas = vec!["A".to_string(), "B".to_string()];
        let ex = vec![(feat(10), 0), (feat(11), 0), (feat(60), 1), (feat(61), 1)];
        let m = KnnModel::fit(ragas, &ex, 3, 10).unwrap();
        let top = m.predict(&feat(12));
        assert_eq!(top[0].0, "A");
        assert!((top.iter().map(|t| t.1).sum::<f64>() - 1.0).abs() < 1e-9);
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        assert_eq!(KnnModel::load(dir.path()).unwrap(), m);
        std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
        let e = KnnModel::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        assert!(KnnModel::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("config.json"));
    }
}

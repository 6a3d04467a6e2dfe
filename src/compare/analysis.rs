//! Everything measured on one clip, once: tonic, adherence to the
//! requested raga, the CNN's verdict and embedding, the kNN's features
//! (its verdict is given later, when the kNN is known) and spectral
//! statistics. Stored with the clip so that a resumed run does not measure
//! it again.

use serde::{Deserialize, Serialize};

use super::metrics::{spectral_stats, SpectralStats};
use crate::audio::Audio;
use crate::captions::{Raga, Vocabulary};
use crate::error::{Error, Result};
use crate::raga::adherence::{adherence, Adherence};
use crate::raga::classifier::ANALYSIS_RATE_HZ;
use crate::raga::cnn::CnnModel;
use crate::raga::features::pcd;
use crate::raga::knn::{track_features, ClipFeatures, KnnModel};
use crate::raga::pitch_image::pitch_image;
use crate::raga::rhythm::{rhythm_fit, GridFit, RhythmParams};
use crate::raga::{estimate_tonic, pyin, PyinParams};
use crate::spectrogram::{SpectrogramConverter, SpectrogramParams};

/// Version of the measurements; stored analyses of another version are
/// measured again.
pub const ANALYSIS_VERSION: u32 = 2;

/// How many of a classifier's ranked ragas are kept per clip.
pub const KEEP_RANKED: usize = 5;

/// The measurements of one clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipAnalysis {
    /// [`ANALYSIS_VERSION`] when measured.
    pub version: u32,
    /// Tonic the measures assume, Hz (given, or the estimate).
    pub tonic_hz: f64,
    /// Whether the tonic was given.
    pub tonic_given: bool,
    /// The tonic estimated from the clip, Hz (None when the clip has no
    /// pitched content to estimate it from).
    pub estimated_tonic_hz: Option<f64>,
    /// Share of pitch frames voiced.
    pub voiced_fraction: f64,
    /// Adherence to the requested raga.
    pub adherence: AdherenceSummary,
    /// The CNN's top ragas with probabilities, best first.
    pub cnn_ranked: Vec<(String, f64)>,
    /// The CNN's hidden-layer embedding.
    pub cnn_embedding: Vec<f32>,
    /// The kNN's features: PCD (120 bins).
    pub pcd: Vec<f32>,
    /// The kNN's features: pooled TDMS.
    pub tdms: Vec<f32>,
    /// Voiced frames behind the kNN features.
    pub voiced_frames: usize,
    /// Spectral statistics.
    pub spectral: SpectralStats,
    /// The best pulse grid of the clip's onsets (None with too few
    /// onsets): whether its percussion keeps time.
    #[serde(default)]
    pub rhythm: Option<GridFit>,
}

/// The adherence measures, flattened for tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdherenceSummary {
    /// Share of stable frames within tolerance of a raga swara.
    pub in_scale_ratio: f64,
    /// The same, minus the share expected by chance.
    pub in_scale_above_chance: f64,
    /// Share of stable frames on a swara foreign to the raga.
    pub illegal_swara_rate: f64,
    /// Jensen-Shannon distance of the PCD to the raga's template.
    pub js_distance: f64,
    /// Rank of the raga's template among all (1 = nearest).
    pub template_rank: usize,
    /// |estimated - assumed tonic|, cents (when the tonic was given).
    pub tonic_drift_cents: Option<f64>,
}

impl From<&Adherence> for AdherenceSummary {
    fn from(a: &Adherence) -> Self {
        AdherenceSummary {
            in_scale_ratio: a.membership.in_scale_ratio,
            in_scale_above_chance: a.membership.in_scale_above_chance,
            illegal_swara_rate: a.membership.illegal_swara_rate,
            js_distance: a.js_distance,
            template_rank: a.template_rank,
            tonic_drift_cents: a.tonic_drift_cents,
        }
    }
}

impl ClipAnalysis {
    /// The kNN features in the classifier's form.
    pub fn knn_features(&self) -> ClipFeatures {
        ClipFeatures {
            tonic_hz: self.tonic_hz,
            pcd: self.pcd.clone(),
            tdms: self.tdms.clone(),
            voiced_frames: self.voiced_frames,
        }
    }

    /// The kNN's embedding: the square root of the PCD, whose Euclidean
    /// distances are the Hellinger distances the kNN ranks by (times
    /// sqrt 2).
    pub fn knn_embedding(&self) -> Vec<f64> {
        self.pcd
            .iter()
            .map(|v| (v.max(0.0) as f64).sqrt())
            .collect()
    }

    /// The CNN embedding as f64.
    pub fn cnn_embedding_f64(&self) -> Vec<f64> {
        self.cnn_embedding.iter().map(|v| *v as f64).collect()
    }
}

/// The judges every clip meets.
#[derive(Debug, Clone)]
pub struct Judges {
    /// The spectrogram CNN.
    pub cnn: CnnModel,
    /// The PCD/TDMS kNN when one was given (else fitted later on the
    /// reference clips).
    pub knn: Option<KnnModel>,
}

/// Measures `audio` (any rate and channels) against `raga`, assuming
/// `tonic_hz` (estimated in the CNN's tonic range when None; the range's
/// geometric middle when the clip has no pitch to estimate it from).
pub fn analyse_clip(
    audio: &Audio,
    raga: &Raga,
    tonic_hz: Option<f64>,
    judges: &Judges,
    vocab: &Vocabulary,
) -> Result<ClipAnalysis> {
    let mono = crate::audio::resample(
        &audio.clone().with_layout(crate::audio::ChannelLayout::Mono),
        ANALYSIS_RATE_HZ,
    )?;
    let samples = &mono.channels[0];
    if samples.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidAudio {
            context: "clip analysis".into(),
            reason: "the audio holds NaN or an infinity".into(),
        });
    }
    let rate = ANALYSIS_RATE_HZ;
    let track = pyin(samples, rate, &PyinParams::default())?;
    let range = judges.cnn.config.tonic_range_hz;
    // An unpitched clip (noise, silence) has no tonic to find; it is still
    // measured (and judged wrong) at the middle of the range rather than
    // left out, which would flatter its backend.
    let estimate = estimate_tonic(samples, rate, &track, range)
        .ok()
        .map(|e| e.tonic_hz);
    let tonic = tonic_hz
        .or(estimate)
        .unwrap_or_else(|| (range.0 * range.1).sqrt());
    let cents = track.cents(tonic);
    let voiced = cents.iter().filter(|c| c.is_some()).count();
    let a = adherence(
        raga,
        &cents,
        track.hop_s,
        &pcd(&cents),
        tonic,
        tonic_hz.and(estimate),
        &vocab.ragas,
    );
    let features = track_features(&track, tonic);
    let params = SpectrogramParams::default();
    let (image, _) = SpectrogramConverter::new(params.clone())?.image_from_audio(&mono)?;
    let p = pitch_image(&image, &params, tonic, &judges.cnn.config.axis)?;
    let (mut ranked, embedding) = judges.cnn.predict_and_embed(&p)?;
    ranked.truncate(KEEP_RANKED);
    Ok(ClipAnalysis {
        version: ANALYSIS_VERSION,
        tonic_hz: tonic,
        tonic_given: tonic_hz.is_some(),
        estimated_tonic_hz: estimate,
        voiced_fraction: voiced as f64 / cents.len().max(1) as f64,
        adherence: AdherenceSummary::from(&a),
        cnn_ranked: ranked,
        cnn_embedding: embedding,
        pcd: features.pcd,
        tdms: features.tdms,
        voiced_frames: features.voiced_frames,
        spectral: spectral_stats(samples, rate)?,
        rhythm: rhythm_fit(samples, rate, &RhythmParams::default()),
    })
}

//! Loudness post-processing for reconstructed audio.
//!
//! Riffusion scales Griffin-Lim output to 16-bit peak, applies gain to
//! bring the RMS level to -12 dBFS (16-bit arithmetic clips whatever goes
//! past full scale), then peak-normalises to -0.1 dBFS. On percussive audio
//! (high crest factor) that middle step clips hard. The default here keeps
//! riffusion's two targets but caps the gain so nothing clips.

use serde::{Deserialize, Serialize};

use super::db_to_gain;

/// RMS target of riffusion's normalisation, dBFS.
pub const TARGET_RMS_DBFS: f32 = -12.0;
/// Peak target of riffusion's normalisation, dBFS.
pub const TARGET_PEAK_DBFS: f32 = -0.1;

/// How reconstructed audio is levelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loudness {
    /// -12 dBFS RMS, limited so the peak stays at or below -0.1 dBFS
    /// (riffusion's targets without its clipping).
    #[default]
    Riffusion,
    /// Exactly riffusion's chain: -12 dBFS RMS with hard clipping at full
    /// scale, then peak normalisation to -0.1 dBFS.
    RiffusionClip,
    /// Peak normalisation to -0.1 dBFS only.
    Peak,
    /// Leave the level as reconstructed (samples may exceed full scale;
    /// write 32-bit float WAV to keep them).
    None,
}

crate::choices!(Loudness, "loudness", [
    Riffusion => "riffusion": "-12 dBFS RMS, peak limited to -0.1 dBFS",
    RiffusionClip => "riffusion-clip": "riffusion's chain: -12 dBFS RMS, hard clip, -0.1 dBFS peak",
    Peak => "peak": "peak normalisation to -0.1 dBFS only",
    None => "none": "the level as reconstructed",
]);

fn peak(ch: &[Vec<f32>]) -> f32 {
    ch.iter().flatten().fold(0.0f32, |m, s| m.max(s.abs()))
}

fn rms(ch: &[Vec<f32>]) -> f32 {
    let count = ch.iter().map(Vec::len).sum::<usize>().max(1);
    let sum: f64 = ch.iter().flatten().map(|s| *s as f64 * *s as f64).sum();
    (sum / count as f64).sqrt() as f32
}

fn scale(ch: &mut [Vec<f32>], gain: f32) {
    for s in ch.iter_mut().flatten() {
        *s *= gain;
    }
}

/// Levels `channels` in place with one gain for all channels. Silence is
/// left as it is.
pub fn normalize_loudness(channels: &mut [Vec<f32>], mode: Loudness) {
    let p = peak(channels);
    if p == 0.0 || mode == Loudness::None {
        return;
    }
    let peak_target = db_to_gain(TARGET_PEAK_DBFS.into()) as f32;
    match mode {
        Loudness::None => {}
        Loudness::Peak => scale(channels, peak_target / p),
        Loudness::Riffusion => {
            let r = rms(channels);
            let gain = (db_to_gain(TARGET_RMS_DBFS.into()) as f32 / r).min(peak_target / p);
            scale(channels, gain);
        }
        Loudness::RiffusionClip => {
            scale(channels, 1.0 / p);
            let gain = db_to_gain(TARGET_RMS_DBFS.into()) as f32 / rms(channels);
            for s in channels.iter_mut().flatten() {
                *s = (*s * gain).clamp(-1.0, 1.0);
            }
            let p2 = peak(channels);
            scale(channels, peak_target / p2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dbfs(x: f32) -> f32 {
        20.0 * x.log10()
    }

    #[test]
    fn quiet_sine_reaches_the_rms_target() {
        let mut ch = vec![(0..44100)
            .map(|i| 0.01 * (i as f32 * 0.05).sin())
            .collect::<Vec<_>>()];
        normalize_loudness(&mut ch, Loudness::Riffusion);
        // A sine's crest factor is 3 dB, so -12 dBFS RMS fits under the ceiling.
        assert!((dbfs(rms(&ch)) - TARGET_RMS_DBFS).abs() < 0.01);
        assert!(dbfs(peak(&ch)) <= TARGET_PEAK_DBFS + 1e-4);
    }

    #[test]
    fn spiky_signal_hits_the_ceiling_without_clipping() {
        let mut ch = vec![vec![0.0f32; 1000]];
        ch[0][10] = 0.5;
        ch[0][20] = 0.2;
        let mut clipped = ch.clone();
        normalize_loudness(&mut ch, Loudness::Riffusion);
        assert!((dbfs(peak(&ch)) - TARGET_PEAK_DBFS).abs() < 1e-3);
        assert!((ch[0][20] / ch[0][10] - 0.4).abs() < 1e-6, "shape kept");
        // Riffusion's chain clips both to full scale first.
        normalize_loudness(&mut clipped, Loudness::RiffusionClip);
        assert!((clipped[0][10] - clipped[0][20]).abs() < 1e-6);
    }

    #[test]
    fn silence_and_none_are_untouched() {
        let mut ch = vec![vec![0.0f32; 10]];
        normalize_loudness(&mut ch, Loudness::Riffusion);
        assert!(ch[0].iter().all(|s| *s == 0.0));
        let mut loud = vec![vec![3.0f32, -2.0]];
        normalize_loudness(&mut loud, Loudness::None);
        assert_eq!(loud[0], vec![3.0, -2.0]);
        normalize_loudness(&mut loud, Loudness::Peak);
        assert!((dbfs(peak(&loud)) - TARGET_PEAK_DBFS).abs() < 1e-3);
    }
}

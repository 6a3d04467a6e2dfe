//! Long spectrograms in bounded memory. A ten-minute image has 60,000
//! frames; its complex spectra alone would take gigabytes. Phase
//! reconstruction instead runs on segments of [`SEGMENT_FRAMES`] frames
//! that overlap by [`OVERLAP_FRAMES`]. The first half of each overlap is
//! held at the phases the previous segment settled (frames well inside
//! it, away from its edge), the new segment is fitted around them, and the
//! two signals are cross-faded across the second quarter of the overlap,
//! where both are the same frames.
//! A spectrogram of one segment or less takes the plain path unchanged.

use rustfft::num_complex::Complex32;

use super::griffin_lim::{griffin_lim_continued, GriffinLimOptions};
use super::stft::Stft;
use crate::error::Result;
use crate::progress::Progress;

/// Mel amplitudes of `frames` frames (mel-major) to linear magnitudes
/// (frame-major, the same bins for every call).
pub type ToLinear<'a> = dyn Fn(&[f32], usize) -> Vec<f32> + Sync + 'a;

/// Frames per phase-reconstruction (and forward STFT) segment: 20 s at
/// riffusion's 10 ms hop, longer than any generated clip.
pub const SEGMENT_FRAMES: usize = 2048;

/// Frames shared by neighbouring segments (0.64 s at a 10 ms hop: several
/// analysis windows, so the cross-fade sits away from both edges).
pub const OVERLAP_FRAMES: usize = 64;

/// Frame ranges `[start, end)` covering `0..frames` in segments of at most
/// `segment` frames, each after the first starting [`OVERLAP_FRAMES`]
/// before the previous one ends.
pub fn segments(frames: usize, segment: usize) -> Vec<(usize, usize)> {
    let segment = segment.max(2 * OVERLAP_FRAMES);
    let mut out = vec![(0, frames.min(segment))];
    while let Some(&(_, end)) = out.last() {
        if end >= frames {
            break;
        }
        let start = end - OVERLAP_FRAMES;
        out.push((start, (start + segment).min(frames)));
    }
    out
}

/// Columns `start..end` of a mel-major `[m * frames + t]` matrix.
fn columns(mel: &[f32], frames: usize, start: usize, end: usize) -> Vec<f32> {
    mel.chunks(frames)
        .flat_map(|row| &row[start..end])
        .copied()
        .collect()
}

/// Reconstructs one channel's signal (in the STFT's units) from its mel
/// amplitudes `[m * frames + t]`, `segment` frames at a time: `to_linear`
/// maps each segment's mel columns to linear magnitudes, then Griffin-Lim
/// with `gl` recovers the phase.
pub fn reconstruct_channel(
    stft: &Stft,
    to_linear: &ToLinear<'_>,
    (mel, frames): (&[f32], usize),
    gl: &GriffinLimOptions,
    segment: usize,
    progress: &dyn Progress,
) -> Result<Vec<f32>> {
    let hop = stft.hop();
    let mut out: Vec<f32> = Vec::new();
    let mut carried: Vec<Complex32> = Vec::new();
    for (k, &(start, end)) in segments(frames, segment).iter().enumerate() {
        let n = end - start;
        let part = if n == frames {
            mel.to_vec()
        } else {
            columns(mel, frames, start, end)
        };
        let linear = to_linear(&part, n);
        let bins = linear.len() / n.max(1);
        let mut seg_gl = *gl;
        seg_gl.seed = gl.seed.wrapping_add((k as u64) << 32);
        let (signal, phase) =
            griffin_lim_continued(stft, &linear, (n, bins), &seg_gl, &carried, progress)?;
        if k == 0 {
            out = signal;
        } else {
            let fade_start = (start + OVERLAP_FRAMES / 4) * hop;
            let fade_end = (start + OVERLAP_FRAMES / 2) * hop;
            let offset = start * hop;
            let len = (fade_end - fade_start) as f32;
            for g in fade_start..fade_end {
                let w = (g - fade_start) as f32 / len;
                out[g] = out[g] * (1.0 - w) + signal[g - offset] * w;
            }
            out.truncate(fade_end);
            out.extend_from_slice(&signal[fade_end - offset..]);
        }
        // the next segment starts OVERLAP_FRAMES before this one ends and
        // holds its first half
        if n > OVERLAP_FRAMES {
            let from = (n - OVERLAP_FRAMES) * bins;
            carried = phase.data[from..from + OVERLAP_FRAMES / 2 * bins].to_vec();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Audio;
    use crate::progress::NoProgress;
    use crate::spectrogram::metrics::spectral_convergence;
    use crate::spectrogram::{InversionOptions, Quality, SpectrogramConverter, SpectrogramParams};

    #[test]
    fn segments_cover_every_frame_with_the_overlap() {
        assert_eq!(segments(100, 2048), vec![(0, 100)]);
        assert_eq!(segments(2048, 2048), vec![(0, 2048)]);
        let s = segments(5000, 2048);
        assert_eq!(s, vec![(0, 2048), (1984, 4032), (3968, 5000)]);
        for w in s.windows(2) {
            assert_eq!(w[0].1 - w[1].0, OVERLAP_FRAMES);
        }
        // a short last segment still holds the whole overlap
        let s = segments(2049, 2048);
        assert_eq!(s.last(), Some(&(1984, 2049)));
    }

    /// A glide with a tremolo: any seam dropout or phase clash shows.
    fn glide(params: &SpectrogramParams, secs: f32) -> Audio {
        let rate = params.sample_rate_hz as f32;
        let n = (secs * rate) as usize;
        let mut phase = 0.0f32;
        let x = (0..n)
            .map(|i| {
                let t = i as f32 / rate;
                phase += std::f32::consts::TAU * (220.0 + 40.0 * (t * 0.7).sin()) / rate;
                0.3 * phase.sin() * (0.8 + 0.2 * (t * 5.0).sin())
            })
            .collect();
        Audio::new(vec![x], params.sample_rate_hz, "glide").unwrap()
    }

    #[test]
    fn segmented_inversion_matches_the_whole_and_has_no_seams() {
        let params = SpectrogramParams {
            sample_rate_hz: 8000,
            num_mel_bins: 64,
            max_hz: 3000,
            ..SpectrogramParams::default()
        };
        let conv = SpectrogramConverter::new(params.clone()).unwrap();
        let audio = glide(&params, 4.0);
        let mel = conv.mel_from_audio(&audio).unwrap();
        let frames = mel.num_frames;
        let opts = InversionOptions::for_quality(Quality::Fast, &params, 3);
        let m = &mel.channels[0];
        let to_linear = |part: &[f32], n: usize| conv.linear_from_mel(part, n, opts.mel_inverse);
        let run = |segment| {
            let signal = reconstruct_channel(
                conv.stft(),
                &to_linear,
                (m, frames),
                &opts.griffin_lim,
                segment,
                &NoProgress,
            )
            .unwrap()
            .into_iter()
            .map(|s| s / super::super::converter::INT16_SCALE)
            .collect::<Vec<_>>();
            assert_eq!(signal.len(), params.num_samples(frames));
            let back = Audio::new(vec![signal.clone()], 8000, "t").unwrap();
            let sc = spectral_convergence(m, &conv.mel_from_audio(&back).unwrap().channels[0]);
            (signal, sc)
        };
        let (_, whole) = run(frames);
        let (signal, parts) = run(150);
        assert!(segments(frames, 150).len() >= 3);
        assert!(
            parts < whole * 1.3 + 0.02,
            "segmented {parts} vs whole {whole}"
        );
        // no dip in level around any seam: the level there follows the
        // original's (the glide's tremolo moves it +-20 %)
        let hop = conv.stft().hop();
        let rms = |x: &[f32], a: usize, b: usize| {
            (x[a..b].iter().map(|s| s * s).sum::<f32>() / (b - a) as f32).sqrt()
        };
        for &(start, _) in &segments(frames, 150)[1..] {
            let mid = (start + 3 * OVERLAP_FRAMES / 8) * hop;
            let (a, b) = (mid - 4 * hop, mid + 4 * hop);
            let ratio = rms(&signal, a, b) / rms(&audio.channels[0], a, b);
            assert!(ratio > 0.85, "seam at frame {start}: level ratio {ratio}");
        }
    }
}

//! Short-time Fourier transform with torch's conventions: periodic Hann
//! window centred in a zero-padded FFT frame, centred frames with reflect
//! padding, one-sided spectra, and an inverse that overlap-adds windowed
//! frames and divides by the summed squared window.
//!
//! Spectra are stored frame-major and may keep only the lowest `bins` bins:
//! the mel filterbank never looks above `max_hz`, so the Griffin-Lim loop
//! carries only the band it can change.

use std::sync::Arc;

use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::error::{Error, Result};

/// A complex spectrogram: `frames x bins`, frame-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Number of STFT frames.
    pub frames: usize,
    /// Number of kept one-sided bins per frame (from bin 0 up).
    pub bins: usize,
    /// `frames * bins` values; frame `t` is `data[t * bins..(t + 1) * bins]`.
    pub data: Vec<Complex32>,
}

impl Spectrum {
    /// A zero spectrum.
    pub fn zeros(frames: usize, bins: usize) -> Self {
        Spectrum {
            frames,
            bins,
            data: vec![Complex32::new(0.0, 0.0); frames * bins],
        }
    }

    /// Magnitudes, same layout.
    pub fn magnitudes(&self) -> Vec<f32> {
        self.data.iter().map(|c| c.norm()).collect()
    }
}

/// A planned STFT of fixed sizes; cheap to share between threads.
pub struct Stft {
    n_fft: usize,
    hop: usize,
    /// The Hann window (length `win_len`), placed at `win_offset` in a frame.
    window: Vec<f32>,
    win_offset: usize,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("n_fft", &self.n_fft)
            .field("hop", &self.hop)
            .field("win_len", &self.window.len())
            .finish()
    }
}

/// Per-thread buffers for one frame.
struct FrameBuffers {
    time: Vec<f32>,
    freq: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

impl Stft {
    /// Plans an STFT with FFT length `n_fft`, hop `hop` and a periodic Hann
    /// window of `win_len <= n_fft` samples.
    pub fn new(n_fft: usize, hop: usize, win_len: usize) -> Result<Self> {
        if n_fft < 2 || hop == 0 || win_len < 2 || win_len > n_fft {
            return Err(Error::param(
                "n_fft",
                format!("need 2 <= win_len <= n_fft and hop >= 1 (n_fft {n_fft}, hop {hop}, win_len {win_len})"),
            ));
        }
        let mut planner = RealFftPlanner::<f32>::new();
        let window = (0..win_len)
            .map(|n| {
                let x = std::f64::consts::TAU * n as f64 / win_len as f64;
                (0.5 - 0.5 * x.cos()) as f32
            })
            .collect();
        Ok(Stft {
            n_fft,
            hop,
            window,
            win_offset: (n_fft - win_len) / 2,
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        })
    }

    /// FFT length in samples.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Hop in samples.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// One-sided bins, `n_fft / 2 + 1`.
    pub fn num_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames produced for a signal of `len` samples.
    pub fn num_frames(&self, len: usize) -> usize {
        1 + len / self.hop
    }

    /// The analysis window (periodic Hann, `win_len` samples).
    pub fn window(&self) -> &[f32] {
        &self.window
    }

    fn buffers(&self) -> FrameBuffers {
        FrameBuffers {
            time: self.forward.make_input_vec(),
            freq: self.forward.make_output_vec(),
            scratch: vec![
                Complex32::new(0.0, 0.0);
                self.forward
                    .get_scratch_len()
                    .max(self.inverse.get_scratch_len())
            ],
        }
    }

    /// Forward STFT of `signal`, keeping the lowest `bins` bins of each frame.
    pub fn forward(&self, signal: &[f32], bins: usize) -> Spectrum {
        let mut out = Spectrum::zeros(self.num_frames(signal.len()), bins.min(self.num_bins()));
        self.forward_into(signal, &mut out);
        out
    }

    /// Forward STFT into `out`, whose `frames` and `bins` must already match
    /// the signal (`frames == num_frames(signal.len())`).
    pub fn forward_into(&self, signal: &[f32], out: &mut Spectrum) {
        debug_assert_eq!(out.frames, self.num_frames(signal.len()));
        let pad = self.n_fft / 2;
        let padded = reflect_pad(signal, pad);
        let win_len = self.window.len();
        let bins = out.bins;
        out.data
            .par_chunks_mut(bins)
            .enumerate()
            .with_min_len(8)
            .for_each_init(
                || self.buffers(),
                |buf, (t, frame_out)| {
                    buf.time.fill(0.0);
                    let start = t * self.hop + self.win_offset;
                    let src = &padded[start..start + win_len];
                    let dst = &mut buf.time[self.win_offset..self.win_offset + win_len];
                    for ((d, s), w) in dst.iter_mut().zip(src).zip(&self.window) {
                        *d = s * w;
                    }
                    self.forward
                        .process_with_scratch(&mut buf.time, &mut buf.freq, &mut buf.scratch)
                        .expect("buffer sizes come from the plan");
                    frame_out.copy_from_slice(&buf.freq[..bins]);
                },
            );
    }

    /// Inverse STFT (torch `istft`, `center=True`, no `length`): returns
    /// `hop * (frames - 1)` samples. Bins above `spec.bins` are taken as zero.
    pub fn inverse(&self, spec: &Spectrum) -> Vec<f32> {
        let mut out = Vec::new();
        let mut frames_buf = Vec::new();
        self.inverse_into(spec, &mut frames_buf, &mut out);
        out
    }

    /// Inverse STFT reusing `frames_buf` (windowed frames) and `out`.
    pub fn inverse_into(&self, spec: &Spectrum, frames_buf: &mut Vec<f32>, out: &mut Vec<f32>) {
        let win_len = self.window.len();
        let frames = spec.frames;
        let bins = spec.bins;
        let norm = 1.0 / self.n_fft as f32;
        frames_buf.resize(frames * win_len, 0.0);
        frames_buf
            .par_chunks_mut(win_len)
            .zip(spec.data.par_chunks(bins))
            .with_min_len(8)
            .for_each_init(
                || self.buffers(),
                |buf, (frame_out, frame_in)| {
                    buf.freq[..bins].copy_from_slice(frame_in);
                    buf.freq[bins..].fill(Complex32::new(0.0, 0.0));
                    buf.freq[0].im = 0.0;
                    let last = buf.freq.len() - 1;
                    buf.freq[last].im = 0.0;
                    self.inverse
                        .process_with_scratch(&mut buf.freq, &mut buf.time, &mut buf.scratch)
                        .expect("buffer sizes come from the plan; DC and Nyquist are real");
                    let src = &buf.time[self.win_offset..self.win_offset + win_len];
                    for ((d, s), w) in frame_out.iter_mut().zip(src).zip(&self.window) {
                        *d = s * w * norm;
                    }
                },
            );
        // Overlap-add in hop-sized output blocks, each summing the frames that
        // cover it; blocks are independent so they run in parallel.
        let pad = self.n_fft / 2;
        let len = self.hop * frames.saturating_sub(1);
        out.resize(len, 0.0);
        let hop = self.hop;
        let first = self.win_offset as isize - pad as isize;
        let window = &self.window;
        let frames_buf = &*frames_buf;
        out.par_chunks_mut(hop).enumerate().for_each(|(b, block)| {
            let n0 = (b * hop) as isize;
            // Frame t covers output samples [t*hop + first, t*hop + first + win_len).
            let t_lo = ((n0 - first - win_len as isize + 1).max(0) as usize).div_ceil(hop);
            let t_hi = (((n0 + block.len() as isize - 1 - first).max(-1) + 1) as usize)
                .div_ceil(hop)
                .min(frames);
            for (i, o) in block.iter_mut().enumerate() {
                let n = n0 + i as isize;
                let mut acc = 0.0f32;
                let mut env = 0.0f32;
                for t in t_lo..t_hi {
                    let j = n - first - (t * hop) as isize;
                    if j >= 0 && (j as usize) < win_len {
                        let j = j as usize;
                        acc += frames_buf[t * win_len + j];
                        env += window[j] * window[j];
                    }
                }
                *o = if env > 1e-11 { acc / env } else { 0.0 };
            }
        });
    }
}

/// Pads `x` by `pad` samples on each side by reflection (no edge repeat),
/// bouncing between the ends when `x` is shorter than `pad`.
pub fn reflect_pad(x: &[f32], pad: usize) -> Vec<f32> {
    let n = x.len() as isize;
    let index = |i: isize| -> usize {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - m }) as usize
    };
    (0..x.len() + 2 * pad)
        .map(|k| x[index(k as isize - pad as isize)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn reflect_pad_matches_numpy() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(reflect_pad(&x, 2), vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]);
        assert_eq!(reflect_pad(&[5.0], 2), vec![5.0; 5]);
    }

    #[test]
    fn forward_matches_direct_dft() {
        let stft = Stft::new(32, 8, 16).unwrap();
        let x = noise(100, 1);
        let spec = stft.forward(&x, 17);
        assert_eq!(spec.frames, 1 + 100 / 8);
        let padded = reflect_pad(&x, 16);
        for t in [0, 5, 12] {
            for k in [0, 3, 16] {
                let mut acc = (0.0f64, 0.0f64);
                for n in 0..32 {
                    let w = if (8..24).contains(&n) {
                        stft.window()[n - 8] as f64
                    } else {
                        0.0
                    };
                    let v = padded[t * 8 + n] as f64 * w;
                    let ph = -std::f64::consts::TAU * (k * n) as f64 / 32.0;
                    acc.0 += v * ph.cos();
                    acc.1 += v * ph.sin();
                }
                let got = spec.data[t * 17 + k];
                assert!((got.re as f64 - acc.0).abs() < 1e-4, "t{t} k{k}");
                assert!((got.im as f64 - acc.1).abs() < 1e-4, "t{t} k{k}");
            }
        }
    }

    #[test]
    fn inverse_reconstructs_signal() {
        for (n_fft, hop, win) in [(64, 16, 64), (400, 25, 100), (17640, 441, 4410)] {
            let stft = Stft::new(n_fft, hop, win).unwrap();
            let x = noise(hop * 40, 7);
            let spec = stft.forward(&x, stft.num_bins());
            let y = stft.inverse(&spec);
            assert_eq!(y.len(), x.len());
            let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-4, "n_fft {n_fft}: max error {err}");
        }
    }
}

//! Short-time Fourier transform with torch's conventions: periodic Hann
//! window centred in a zero-padded FFT frame, centred frames with reflect
//! padding, one-sided spectra, and an inverse that overlap-adds windowed
//! frames and divides by the summed squared window.
//!
//! Spectra keep only the lowest `bins` bins: the mel filterbank never looks
//! above `max_hz` (bin 4000 of 8821 at riffusion's settings), so neither the
//! image nor the Griffin-Lim loop needs the rest. The real FFT is therefore
//! done here on rustfft directly: a length-N real frame is packed into an
//! N/2 complex FFT, and only the kept bins are unpacked (forward) or packed
//! (inverse); only the samples under the window are unpacked on the way
//! back. A general-purpose real FFT spends ~40% of its time on all N/2 + 1
//! bins of that unpacking.

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

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
    /// Complex FFTs of length `n_fft / 2` (`n_fft` even) or `n_fft` (odd).
    fft: Arc<dyn Fft<f32>>,
    ifft: Arc<dyn Fft<f32>>,
    /// Unpacking weights for the forward transform, `k <= n_fft / 2`:
    /// `X[k] = Z[k] P[k] + conj(Z[m - k]) Q[k]` with
    /// `P = (1 - i w) / 2`, `Q = (1 + i w) / 2`, `w = exp(-2 pi i k / n_fft)`.
    fwd_p: Vec<Complex32>,
    fwd_q: Vec<Complex32>,
    /// Packing weights for the inverse, `k < m`:
    /// `Z[k] = X[k] A[k] + conj(X[m - k]) B[k]` with
    /// `A = (1 + i conj(w)) / 2`, `B = (1 - i conj(w)) / 2`.
    inv_a: Vec<Complex32>,
    inv_b: Vec<Complex32>,
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
    packed: Vec<Complex32>,
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
        let mut planner = FftPlanner::<f32>::new();
        let m = Self::packed_len(n_fft);
        let window = (0..win_len)
            .map(|n| {
                let x = std::f64::consts::TAU * n as f64 / win_len as f64;
                (0.5 - 0.5 * x.cos()) as f32
            })
            .collect();
        let i = Complex32::new(0.0, 1.0);
        let w = |k: usize| {
            let a = -std::f64::consts::TAU * k as f64 / n_fft as f64;
            Complex32::new(a.cos() as f32, a.sin() as f32)
        };
        let half = n_fft / 2 + 1;
        let fwd_p = (0..half).map(|k| (1.0 - i * w(k)) * 0.5).collect();
        let fwd_q = (0..half).map(|k| (1.0 + i * w(k)) * 0.5).collect();
        let inv_a = (0..m).map(|k| (1.0 + i * w(k).conj()) * 0.5).collect();
        let inv_b = (0..m).map(|k| (1.0 - i * w(k).conj()) * 0.5).collect();
        Ok(Stft {
            n_fft,
            hop,
            window,
            win_offset: (n_fft - win_len) / 2,
            fft: planner.plan_fft_forward(m),
            ifft: planner.plan_fft_inverse(m),
            fwd_p,
            fwd_q,
            inv_a,
            inv_b,
        })
    }

    /// Length of the complex FFT used for one real frame.
    fn packed_len(n_fft: usize) -> usize {
        if n_fft % 2 == 0 {
            n_fft / 2
        } else {
            n_fft
        }
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
        let scratch_len = self
            .fft
            .get_inplace_scratch_len()
            .max(self.ifft.get_inplace_scratch_len());
        FrameBuffers {
            packed: vec![Complex32::new(0.0, 0.0); self.fft.len()],
            scratch: vec![Complex32::new(0.0, 0.0); scratch_len],
        }
    }

    /// DFT of one windowed frame whose non-zero samples `frame` sit at
    /// `win_offset`; writes bins `0..out.len()`.
    fn frame_dft(&self, frame: &[f32], buf: &mut FrameBuffers, out: &mut [Complex32]) {
        let zero = Complex32::new(0.0, 0.0);
        buf.packed.fill(zero);
        if self.n_fft % 2 == 1 {
            for (i, &v) in frame.iter().enumerate() {
                buf.packed[self.win_offset + i].re = v;
            }
            self.fft
                .process_with_scratch(&mut buf.packed, &mut buf.scratch);
            out.copy_from_slice(&buf.packed[..out.len()]);
            return;
        }
        // z[n] = x[2n] + i x[2n + 1]: the complex buffer viewed as floats is
        // the real frame itself.
        let floats: &mut [f32] = bytemuck::cast_slice_mut(&mut buf.packed);
        floats[self.win_offset..self.win_offset + frame.len()].copy_from_slice(frame);
        self.fft
            .process_with_scratch(&mut buf.packed, &mut buf.scratch);
        let m = buf.packed.len();
        let z = &buf.packed;
        let below = out.len().min(m);
        if below > 0 {
            out[0] = z[0] * self.fwd_p[0] + z[0].conj() * self.fwd_q[0];
        }
        let mirrored = z[m - below + 1..].iter().rev();
        for ((((o, zk), zc), p), q) in out[1..below]
            .iter_mut()
            .zip(&z[1..below])
            .zip(mirrored)
            .zip(&self.fwd_p[1..])
            .zip(&self.fwd_q[1..])
        {
            *o = zk * p + zc.conj() * q;
        }
        if out.len() > m {
            out[m] = z[0] * self.fwd_p[m] + z[0].conj() * self.fwd_q[m];
        }
    }

    /// Inverse DFT (scaled by `1 / n_fft`) of a one-sided spectrum whose bins
    /// above `spec.len()` are zero; writes the samples under the window,
    /// multiplied by the window, into `out` (`win_len` samples).
    fn frame_idft(&self, spec: &[Complex32], buf: &mut FrameBuffers, out: &mut [f32]) {
        let zero = Complex32::new(0.0, 0.0);
        let bins = spec.len();
        let get = |k: usize| -> Complex32 {
            if k < bins {
                // torch's irfft ignores the imaginary part of DC and Nyquist.
                if k == 0 || 2 * k == self.n_fft {
                    Complex32::new(spec[k].re, 0.0)
                } else {
                    spec[k]
                }
            } else {
                zero
            }
        };
        let scale = 1.0 / self.n_fft as f32;
        if self.n_fft % 2 == 1 {
            let n = self.n_fft;
            for k in 0..n {
                buf.packed[k] = if k < bins {
                    get(k)
                } else if n - k < bins {
                    get(n - k).conj()
                } else {
                    zero
                };
            }
            self.ifft
                .process_with_scratch(&mut buf.packed, &mut buf.scratch);
            for (i, o) in out.iter_mut().enumerate() {
                *o = buf.packed[self.win_offset + i].re * scale * self.window[i];
            }
            return;
        }
        let m = buf.packed.len();
        // Z[k] = X[k] A[k] + conj(X[m - k]) B[k]; X is zero from `bins` up.
        buf.packed.fill(zero);
        let direct = bins.min(m);
        for ((z, x), a) in buf.packed[..direct]
            .iter_mut()
            .zip(&spec[..direct])
            .zip(&self.inv_a)
        {
            *z = x * a;
        }
        buf.packed[0] = get(0) * self.inv_a[0];
        // k = m - j for j in 1..bins (j <= m - 1): conj(X[j]) B[m - j].
        let mirrored = bins.min(m).saturating_sub(1);
        let tail = &mut buf.packed[m - mirrored..];
        for ((z, x), b) in tail
            .iter_mut()
            .rev()
            .zip(&spec[1..=mirrored])
            .zip(self.inv_b[m - mirrored..].iter().rev())
        {
            *z += x.conj() * b;
        }
        if bins > m {
            buf.packed[0] += get(m).conj() * self.inv_b[0];
        }
        self.ifft
            .process_with_scratch(&mut buf.packed, &mut buf.scratch);
        // Scale by 2 / n_fft = 1 / m: the packed IFFT returns m * z. Viewed
        // as floats, z is the real frame.
        let scale = 2.0 * scale;
        let floats: &[f32] = bytemuck::cast_slice(&buf.packed);
        let src = &floats[self.win_offset..self.win_offset + out.len()];
        for ((o, v), w) in out.iter_mut().zip(src).zip(&self.window) {
            *o = v * scale * w;
        }
    }

    /// Forward STFT of `signal`, keeping the lowest `bins` bins of each frame.
    pub fn forward(&self, signal: &[f32], bins: usize) -> Spectrum {
        let mut out = Spectrum::zeros(self.num_frames(signal.len()), bins.min(self.num_bins()));
        let mut padded = Vec::new();
        self.forward_into(signal, &mut padded, &mut out);
        out
    }

    /// Forward STFT into `out`, whose `frames` must equal
    /// `num_frames(signal.len())`; `padded` is reused scratch.
    pub fn forward_into(&self, signal: &[f32], padded: &mut Vec<f32>, out: &mut Spectrum) {
        debug_assert_eq!(out.frames, self.num_frames(signal.len()));
        reflect_pad_into(signal, self.n_fft / 2, padded);
        self.forward_padded_into(padded, 0, out);
    }

    /// Frames `first..first + out.frames` of the forward STFT of a signal
    /// already padded by [`reflect_pad`] with `n_fft / 2`: a long signal's
    /// spectrum block by block, identical to the whole.
    pub fn forward_padded_into(&self, padded: &[f32], first: usize, out: &mut Spectrum) {
        let win_len = self.window.len();
        debug_assert!(
            (first + out.frames).saturating_sub(1) * self.hop + self.win_offset + win_len
                <= padded.len()
        );
        out.data
            .par_chunks_mut(out.bins)
            .enumerate()
            .with_min_len(8)
            .for_each_init(
                || (self.buffers(), vec![0.0f32; win_len]),
                |(buf, frame), (t, frame_out)| {
                    let start = (first + t) * self.hop + self.win_offset;
                    for ((d, s), w) in frame
                        .iter_mut()
                        .zip(&padded[start..start + win_len])
                        .zip(&self.window)
                    {
                        *d = s * w;
                    }
                    self.frame_dft(frame, buf, frame_out);
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
        frames_buf.resize(frames * win_len, 0.0);
        frames_buf
            .par_chunks_mut(win_len)
            .zip(spec.data.par_chunks(spec.bins))
            .with_min_len(8)
            .for_each_init(
                || self.buffers(),
                |buf, (frame_out, frame_in)| self.frame_idft(frame_in, buf, frame_out),
            );
        overlap_add(
            frames_buf,
            frames,
            self.hop,
            self.win_offset,
            self.n_fft / 2,
            &self.window,
            out,
        );
    }
}

/// Overlap-adds `frames` windowed frames of `window.len()` samples (frame
/// `t` starting at `t * hop + first_offset - pad` of the output) and divides
/// by the summed squared window; writes `hop * (frames - 1)` samples.
fn overlap_add(
    frames_buf: &[f32],
    frames: usize,
    hop: usize,
    first_offset: usize,
    pad: usize,
    window: &[f32],
    out: &mut Vec<f32>,
) {
    let win_len = window.len();
    let len = hop * frames.saturating_sub(1);
    out.clear();
    out.resize(len, 0.0);
    let first = first_offset as isize - pad as isize;
    // Parallel over hop-sized output blocks; each adds the slices of the
    // frames that overlap it, so blocks never write to the same sample.
    out.par_chunks_mut(hop).enumerate().for_each(|(b, block)| {
        let n0 = (b * hop) as isize;
        let n1 = n0 + block.len() as isize;
        let mut env = vec![0.0f32; block.len()];
        // Frame t covers [t*hop + first, t*hop + first + win_len).
        let t_lo = ((n0 - first - win_len as isize + 1).max(0) as usize).div_ceil(hop);
        for t in t_lo..frames {
            let start = (t * hop) as isize + first;
            if start >= n1 {
                break;
            }
            let lo = n0.max(start);
            let hi = n1.min(start + win_len as isize);
            if lo >= hi {
                continue;
            }
            let (j0, j1) = ((lo - start) as usize, (hi - start) as usize);
            let (o0, o1) = ((lo - n0) as usize, (hi - n0) as usize);
            let src = &frames_buf[t * win_len + j0..t * win_len + j1];
            for (o, s) in block[o0..o1].iter_mut().zip(src) {
                *o += s;
            }
            for (e, w) in env[o0..o1].iter_mut().zip(&window[j0..j1]) {
                *e += w * w;
            }
        }
        for (o, e) in block.iter_mut().zip(&env) {
            *o = if *e > 1e-11 { *o / e } else { 0.0 };
        }
    });
}

/// Pads `x` by `pad` samples on each side by reflection (no edge repeat),
/// bouncing between the ends when `x` is shorter than `pad`.
pub fn reflect_pad(x: &[f32], pad: usize) -> Vec<f32> {
    let mut out = Vec::new();
    reflect_pad_into(x, pad, &mut out);
    out
}

fn reflect_pad_into(x: &[f32], pad: usize, out: &mut Vec<f32>) {
    let n = x.len() as isize;
    let index = |i: isize| -> usize {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - m }) as usize
    };
    out.clear();
    out.reserve(x.len() + 2 * pad);
    out.extend((0..pad).map(|k| x[index(k as isize - pad as isize)]));
    out.extend_from_slice(x);
    out.extend((0..pad).map(|k| x[index(n + k as isize)]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use realfft::RealFftPlanner;

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
        assert_eq!(
            reflect_pad(&x, 2),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
        assert_eq!(
            reflect_pad(&x, 5),
            vec![2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(reflect_pad(&[5.0], 2), vec![5.0; 5]);
    }

    /// The packed real FFT against realfft's full transform, for even and
    /// odd lengths and offsets, all bins and a pruned band.
    #[test]
    fn frames_match_realfft() {
        for (n_fft, win) in [(32, 16), (40, 15), (33, 20), (17640, 4410)] {
            let stft = Stft::new(n_fft, 8, win).unwrap();
            let frame = noise(win, n_fft as u32);
            let mut full = vec![0.0f32; n_fft];
            full[stft.win_offset..stft.win_offset + win].copy_from_slice(&frame);
            let mut planner = RealFftPlanner::<f32>::new();
            let r2c = planner.plan_fft_forward(n_fft);
            let mut expect = r2c.make_output_vec();
            r2c.process(&mut full.clone(), &mut expect).unwrap();
            let mut buf = stft.buffers();
            for bins in [n_fft / 2 + 1, n_fft / 5] {
                let mut got = vec![Complex32::new(0.0, 0.0); bins];
                stft.frame_dft(&frame, &mut buf, &mut got);
                let tol = 1e-5 * (n_fft as f32).sqrt() * 10.0;
                for k in 0..bins {
                    assert!(
                        (got[k] - expect[k]).norm() < tol,
                        "n_fft {n_fft} bin {k}: {} vs {}",
                        got[k],
                        expect[k]
                    );
                }
                // Inverse of a band-limited spectrum against realfft's c2r.
                let mut band = expect.clone();
                band[bins..].fill(Complex32::new(0.0, 0.0));
                band[0].im = 0.0;
                if n_fft % 2 == 0 {
                    let last = band.len() - 1;
                    band[last].im = 0.0;
                }
                let c2r = planner.plan_fft_inverse(n_fft);
                let mut time = c2r.make_output_vec();
                c2r.process(&mut band.clone(), &mut time).unwrap();
                let mut ours = vec![0.0f32; win];
                stft.frame_idft(&band[..bins], &mut buf, &mut ours);
                for i in 0..win {
                    let e = time[stft.win_offset + i] / n_fft as f32 * stft.window[i];
                    assert!(
                        (ours[i] - e).abs() < 1e-4,
                        "n_fft {n_fft} bins {bins} sample {i}: {} vs {e}",
                        ours[i]
                    );
                }
            }
        }
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
        for (n_fft, hop, win) in [
            (64, 16, 64),
            (400, 25, 100),
            (17640, 441, 4410),
            (101, 10, 50),
        ] {
            let stft = Stft::new(n_fft, hop, win).unwrap();
            let x = noise(hop * 40, 7);
            let spec = stft.forward(&x, stft.num_bins());
            let y = stft.inverse(&spec);
            assert_eq!(y.len(), x.len());
            let err = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "n_fft {n_fft}: max error {err}");
        }
    }
}

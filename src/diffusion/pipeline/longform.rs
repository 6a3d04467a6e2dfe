//! Spectrograms wider than one model clip: long-form generation and
//! audio-to-audio over long inputs.
//!
//! Clips (windows) overlap by `overlap_px` columns. Long-form generation
//! denoises one latent as wide as the whole piece: at each step every
//! window gets its own noise prediction and the predictions are
//! cross-faded where windows overlap, so neighbouring windows agree on
//! their shared columns at every noise level and the music runs on without
//! a boundary. Long audio-to-audio works clip by clip instead: each clip
//! after the first keeps the previous clip's output over the overlap in
//! latent space (inpainting). Either way the decoded windows are
//! cross-faded in the image domain and the joined image is inverted to
//! audio in one piece, so there is no phase seam between clips.

use candle_core::{DType, Device, Tensor};

use super::load::StableDiffusion;
use super::{check_finite, Conditioning, GuidedUnet, Repaint, Resume, SamplingRun};
use crate::error::terr;
use crate::error::{Error, Result};

/// How a wide spectrogram is cut into model clips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Width of one model clip in pixels (512 = 5.12 s for riffusion).
    pub clip_px: usize,
    /// Columns shared by neighbouring clips.
    pub overlap_px: usize,
}

impl Tiling {
    /// Checks the tiling against the VAE scale `scale`.
    pub fn validate(&self, scale: usize) -> Result<()> {
        if self.clip_px == 0 || self.clip_px % scale != 0 {
            return Err(Error::param(
                "width",
                format!(
                    "clip width {} must be a positive multiple of {scale}",
                    self.clip_px
                ),
            ));
        }
        if self.overlap_px % scale != 0 || self.overlap_px * 2 > self.clip_px {
            return Err(Error::param(
                "overlap",
                format!(
                    "overlap {} px must be a multiple of {scale} and at most half the clip ({} px)",
                    self.overlap_px, self.clip_px
                ),
            ));
        }
        Ok(())
    }

    /// Start columns of the clips covering `total_px` columns; the last
    /// clip ends exactly at `total_px` (it may overlap its neighbour by more
    /// than `overlap_px`). `total_px` must be at least one clip.
    pub fn starts(&self, total_px: usize) -> Vec<usize> {
        let hop = self.clip_px - self.overlap_px;
        let mut starts = vec![0];
        while starts.last().copied().unwrap_or(0) + self.clip_px < total_px {
            let next = (starts.last().copied().unwrap_or(0) + hop).min(total_px - self.clip_px);
            starts.push(next);
        }
        starts
    }
}

/// Joins decoded clips (`[1, 3, H, clip]` each, at `starts`) into one
/// `[1, 3, H, total]` image, cross-fading linearly where they overlap.
pub fn join_clips(clips: &[Tensor], starts: &[usize], total_px: usize) -> Result<Tensor> {
    let Some(first) = clips.first() else {
        return Err(Error::param("clips", "nothing to join"));
    };
    let run = || -> candle_core::Result<Tensor> {
        let (_, c, h, w) = first.dims4()?;
        let device = first.device();
        let mut acc = vec![0f32; c * h * total_px];
        let mut weight = vec![0f32; total_px];
        for (k, (clip, &start)) in clips.iter().zip(starts).enumerate() {
            let data: Vec<f32> = clip.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            let fade = fade_weights(starts, k, w);
            for (x, &wgt) in fade.iter().enumerate() {
                weight[start + x] += wgt;
                for ch in 0..c {
                    for y in 0..h {
                        acc[(ch * h + y) * total_px + start + x] +=
                            wgt * data[(ch * h + y) * w + x];
                    }
                }
            }
        }
        for ch in 0..c {
            for y in 0..h {
                for x in 0..total_px {
                    acc[(ch * h + y) * total_px + x] /= weight[x];
                }
            }
        }
        Tensor::from_vec(acc, (1, c, h, total_px), device)
    };
    run().map_err(terr("joining clips"))
}

/// Windows denoised in one UNet batch by [`StableDiffusion::generate_long`]
/// (each twice with guidance).
const WINDOW_BATCH: usize = 4;

/// Each window's share of the noise prediction over its columns,
/// `[1, 1, 1, clip_cols]`: the cross-fade of [`fade_weights`] divided by
/// the sum over all windows covering a column, so that the shares add to
/// 1 everywhere.
fn window_weights(
    starts: &[usize],
    clip_cols: usize,
    total_cols: usize,
    device: &Device,
) -> Result<Vec<Tensor>> {
    let fades: Vec<Vec<f32>> = (0..starts.len())
        .map(|k| fade_weights(starts, k, clip_cols))
        .collect();
    let mut sum = vec![0f32; total_cols];
    for (fade, &start) in fades.iter().zip(starts) {
        for (x, w) in fade.iter().enumerate() {
            sum[start + x] += w;
        }
    }
    fades
        .into_iter()
        .zip(starts)
        .map(|(fade, &start)| {
            let share: Vec<f32> = fade
                .iter()
                .enumerate()
                .map(|(x, w)| w / sum[start + x])
                .collect();
            Tensor::from_vec(share, (1, 1, 1, clip_cols), device).map_err(terr("window weights"))
        })
        .collect()
}

/// Cross-fade weights of clip `k` of width `w` placed at `starts`: a linear
/// ramp in over the overlap with the previous clip and out over the next,
/// 1 elsewhere, never 0.
fn fade_weights(starts: &[usize], k: usize, w: usize) -> Vec<f32> {
    let start = starts[k];
    let fade_in = if k == 0 { 0 } else { starts[k - 1] + w - start };
    let fade_out = if k + 1 < starts.len() {
        start + w - starts[k + 1]
    } else {
        0
    };
    (0..w)
        .map(|x| {
            let ramp_in = if x < fade_in {
                (x as f32 + 0.5) / fade_in as f32
            } else {
                1.0
            };
            let ramp_out = if x >= w - fade_out {
                (w - x) as f32 / fade_out as f32 - 0.5 / fade_out as f32
            } else {
                1.0
            };
            ramp_in.min(ramp_out).max(1e-6)
        })
        .collect()
}

/// Latent-column keep mask: 1 for the first `cols` of `width` columns.
fn keep_first_columns(shape: [usize; 4], cols: usize, device: &Device) -> Result<Tensor> {
    let [b, _, h, w] = shape;
    let row: Vec<f32> = (0..w).map(|x| if x < cols { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(row, (1, 1, 1, w), device)
        .and_then(|t| t.broadcast_as((b, 1, h, w)))
        .and_then(|t| t.contiguous())
        .map_err(terr("keep mask"))
}

impl StableDiffusion {
    /// Long-form text to spectrogram: `total_px` columns of `height_px`
    /// rows. One latent as wide as the whole piece is denoised window by
    /// window: at every step each clip-wide window gets the UNet's guided
    /// noise prediction, and where windows overlap their predictions are
    /// cross-faded before the sampler steps the whole latent. Every window
    /// thus sees the music on both sides of it and no window boundary is
    /// ever fixed on one side only, so there is no seam to hide. Returns
    /// the decoded image `[1, 3, H, total]` in [-1, 1]. `progress` counts
    /// UNet evaluations (steps x windows).
    pub fn generate_long(
        &self,
        run: &mut SamplingRun,
        text: &Conditioning,
        height_px: usize,
        total_px: usize,
        tiling: Tiling,
    ) -> Result<Tensor> {
        let (settings, progress) = (run.settings, run.progress);
        let scale = self.vae_scale();
        tiling.validate(scale)?;
        if total_px < tiling.clip_px {
            return Err(Error::param(
                "seconds",
                format!("long form needs at least one clip ({} px)", tiling.clip_px),
            ));
        }
        // the latent covers the width rounded up to whole latent columns
        let latent_tiling = Tiling {
            clip_px: tiling.clip_px / scale,
            overlap_px: tiling.overlap_px / scale,
        };
        let total_cols = total_px.div_ceil(scale);
        let starts = latent_tiling.starts(total_cols);
        let clip_cols = latent_tiling.clip_px;
        let mut shape = self.latent_shape(1, tiling.clip_px, height_px)?;
        shape[3] = total_cols;
        let device = self.unet.device().clone();
        let mut sampler = settings.sampler.build(&self.scheduler, settings.steps)?;
        let n = sampler.timesteps().len();
        progress.start((n * starts.len()) as u64, "denoising");
        let shares = window_weights(&starts, clip_cols, total_cols, &device)?;
        let model = GuidedUnet::new(&self.unet, text, settings.guidance);
        let windows: Vec<(usize, &Tensor)> = starts.iter().copied().zip(&shares).collect();
        let mut latents = run
            .noise
            .noise(&shape, &device)
            .and_then(|z| (z * sampler.init_noise_sigma()).map_err(terr("init")))?;
        let mut start = 0;
        if let Some(resume) = run.resume {
            if let Some(r) = resume.restore_step(sampler.as_mut(), run.noise, &shape, &device)? {
                progress.message(&format!(
                    "resuming at denoising step {} of {n}",
                    r.next_step + 1
                ));
                progress.advance((r.next_step * starts.len()) as u64);
                (start, latents) = (r.next_step, r.latents);
            }
        }
        for i in start..n {
            let input = sampler
                .scale_model_input(&latents, i)
                .map_err(terr("UNet input"))?;
            let t = sampler.timesteps()[i];
            let mut eps =
                Tensor::zeros(shape.as_slice(), DType::F32, &device).map_err(terr("windows"))?;
            for group in windows.chunks(WINDOW_BATCH) {
                let batch = group
                    .iter()
                    .map(|&(c, _)| input.narrow(3, c, clip_cols))
                    .collect::<candle_core::Result<Vec<_>>>()
                    .and_then(|w| Tensor::cat(&w, 0))
                    .map_err(terr("windows"))?;
                let out = model.eps(&batch, t)?;
                for (j, &(c, share)) in group.iter().enumerate() {
                    eps = out
                        .narrow(0, j, 1)
                        .and_then(|o| o.broadcast_mul(share))
                        .and_then(|o| o.pad_with_zeros(3, c, total_cols - c - clip_cols))
                        .and_then(|o| eps + o)
                        .map_err(terr("windows"))?;
                }
                if !progress.advance(group.len() as u64) {
                    if let Some(resume) = run.resume {
                        // the state before this step: its windows run again
                        resume.save_step(i, &latents, sampler.as_ref(), run.noise)?;
                    }
                    return Err(Error::Cancelled);
                }
            }
            latents = sampler.step(&eps, i, &latents, run.noise)?;
            check_finite(&latents, i)?;
            if let Some(resume) = run.resume.filter(|r| r.store.step_due()) {
                resume.save_step(i + 1, &latents, sampler.as_ref(), run.noise)?;
            }
        }
        let mut clips = Vec::with_capacity(starts.len());
        for &c in &starts {
            let window = latents.narrow(3, c, clip_cols).map_err(terr("window"))?;
            clips.push(self.decode_latents(&window)?);
        }
        progress.finish();
        let starts_px: Vec<usize> = starts.iter().map(|c| c * scale).collect();
        join_clips(&clips, &starts_px, total_cols * scale)?
            .narrow(3, 0, total_px)
            .map_err(terr("joining clips"))
    }

    /// Audio-to-audio over a spectrogram image of any width (`[1, 3, H,
    /// W]` in [-1, 1], W at least one clip): each clip is re-generated with
    /// img2img at `strength`; clips after the first keep the previous
    /// output over the overlap; `keep` (`[1, 1, H, W]` in pixels, 1 = keep
    /// the input) masks what is repainted. Returns the joined image.
    pub fn audio_to_audio(
        &self,
        run: &mut SamplingRun,
        text: &Conditioning,
        image: &Tensor,
        repaint: Repaint,
        tiling: Tiling,
    ) -> Result<Tensor> {
        let (strength, keep, progress) = (repaint.strength, repaint.keep, run.progress);
        let scale = self.vae_scale();
        tiling.validate(scale)?;
        let (_, _, h, total) = image.dims4().map_err(terr("image"))?;
        if total < tiling.clip_px {
            return Err(Error::param(
                "input",
                format!("needs at least {} columns, got {total}", tiling.clip_px),
            ));
        }
        let starts = tiling.starts(total);
        let per_clip = self.img2img_steps(run.settings, strength)?;
        progress.start((per_clip * starts.len()) as u64, "denoising");
        let device = self.unet.device().clone();
        let mut clips = Vec::with_capacity(starts.len());
        let mut previous: Option<Tensor> = None;
        // finished clips are saved; the steps within a clip are not
        let resume = run.resume.take();
        let mut restored = 0;
        for (k, &start) in starts.iter().enumerate() {
            let key = resume
                .map(|r| format!("{}-clip-{k}", r.key))
                .unwrap_or_default();
            let clip_resume = resume.map(|r| Resume {
                store: r.store,
                key: &key,
            });
            if let Some(r) = clip_resume {
                if let Some(latents) = r.restore_clip(run.noise, &device)? {
                    restored += 1;
                    progress.advance(per_clip as u64);
                    clips.push(self.decode_latents(&latents)?);
                    previous = Some(latents);
                    continue;
                }
            }
            if restored > 0 && restored == k {
                progress.message(&format!(
                    "resuming after {restored} of {} finished clips",
                    starts.len()
                ));
            }
            let window = image
                .narrow(3, start, tiling.clip_px)
                .map_err(terr("window"))?;
            let user_keep = match keep {
                Some(m) => Some(
                    m.narrow(3, start, tiling.clip_px)
                        .and_then(|m| latent_mask(&m, scale))
                        .map_err(terr("mask"))?,
                ),
                None => None,
            };
            let (window_latents, overlap_keep) = match &previous {
                Some(prev) => {
                    let shared = (starts[k - 1] + tiling.clip_px - start) / scale;
                    let shape = self.latent_shape(1, tiling.clip_px, h)?;
                    (
                        Some((
                            prev.narrow(3, shape[3] - shared, shared)
                                .map_err(terr("tail"))?,
                            shape,
                        )),
                        Some(keep_first_columns(shape, shared, &device)?),
                    )
                }
                None => (None, None),
            };
            let combined_keep = match (user_keep, &overlap_keep) {
                (Some(u), Some(o)) => Some(u.broadcast_maximum(o).map_err(terr("mask"))?),
                (Some(u), None) => Some(u),
                (None, Some(o)) => Some(o.clone()),
                (None, None) => None,
            };
            let repaint = Repaint {
                strength,
                keep: combined_keep.as_ref(),
            };
            let latents =
                self.img2img_window(run, text, &window, repaint, window_latents.as_ref())?;
            if let Some(r) = clip_resume {
                r.save_clip(&latents, run.noise)?;
            }
            clips.push(self.decode_latents(&latents)?);
            previous = Some(latents);
        }
        run.resume = resume;
        progress.finish();
        join_clips(&clips, &starts, total)
    }

    /// One audio-to-audio clip: img2img where the kept part follows the
    /// input, except the first columns that follow `tail` (the previous
    /// clip's output) when given.
    fn img2img_window(
        &self,
        run: &mut SamplingRun,
        text: &Conditioning,
        window: &Tensor,
        repaint: Repaint,
        tail: Option<&(Tensor, [usize; 4])>,
    ) -> Result<Tensor> {
        let mut original = self.encode_image(window, run.noise)?;
        if let Some((tail, shape)) = tail {
            // the shared columns follow the previous clip's output
            let cols = tail.dim(3).map_err(terr("tail"))?;
            let rest = original
                .narrow(3, cols, shape[3] - cols)
                .map_err(terr("tail"))?;
            original = Tensor::cat(&[tail, &rest], 3).map_err(terr("tail"))?;
        }
        self.img2img_latents(run, text, &original, repaint)
    }
}

/// Downsamples a pixel mask `[1, 1, H, W]` to latent cells (nearest, as
/// riffusion does).
fn latent_mask(mask: &Tensor, scale: usize) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = mask.dims4()?;
    let rows: Vec<u32> = (0..h / scale).map(|i| (i * scale) as u32).collect();
    let cols: Vec<u32> = (0..w / scale).map(|i| (i * scale) as u32).collect();
    let device = mask.device();
    mask.contiguous()?
        .index_select(&Tensor::new(rows.as_slice(), device)?, 2)?
        .index_select(&Tensor::new(cols.as_slice(), device)?, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectrogram::metrics::{seam_report, spectral_flux};
    use crate::spectrogram::MelSpectrogram;

    /// A `[1, 3, h, w]` image whose every column is `column`.
    fn steady(column: &[f32], w: usize) -> Tensor {
        let h = column.len();
        let data: Vec<f32> = (0..3 * h * w).map(|i| column[(i / w) % h]).collect();
        Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu).unwrap()
    }

    fn flux_of(image: &Tensor) -> Vec<f64> {
        let (_, _, h, w) = image.dims4().unwrap();
        let red: Vec<f32> = image
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        spectral_flux(&MelSpectrogram {
            num_mels: h,
            num_frames: w,
            channels: vec![red.iter().map(|v| v + 1.0).collect()],
        })
    }

    #[test]
    fn tiling_covers_the_width_and_ends_on_it() {
        let t = Tiling {
            clip_px: 512,
            overlap_px: 128,
        };
        assert_eq!(t.starts(512), vec![0]);
        assert_eq!(t.starts(896), vec![0, 384]);
        let s = t.starts(3000);
        assert_eq!(s.first(), Some(&0));
        assert_eq!(s.last().unwrap() + 512, 3000);
        assert!(s.windows(2).all(|w| w[1] - w[0] <= 384 && w[1] > w[0]));
        assert!(t.validate(8).is_ok());
        assert!(Tiling {
            clip_px: 512,
            overlap_px: 300
        }
        .validate(8)
        .is_err());
        assert!(Tiling {
            clip_px: 512,
            overlap_px: 12
        }
        .validate(8)
        .is_err());
    }

    #[test]
    fn window_shares_add_to_one_and_favour_each_window_s_middle() {
        let starts = Tiling {
            clip_px: 64,
            overlap_px: 16,
        }
        .starts(200);
        let shares = window_weights(&starts, 64, 200, &Device::Cpu).unwrap();
        let mut sum = vec![0f32; 200];
        let rows: Vec<Vec<f32>> = shares
            .iter()
            .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        for (row, &start) in rows.iter().zip(&starts) {
            assert!(row.iter().all(|&w| w > 0.0 && w <= 1.0));
            for (x, w) in row.iter().enumerate() {
                sum[start + x] += w;
            }
        }
        assert!(sum.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sum:?}");
        // the first window alone owns its first columns and hands over
        // gradually across the overlap
        assert_eq!(rows[0][0], 1.0);
        let handover = &rows[0][starts[1]..];
        assert!(handover.windows(2).all(|w| w[1] <= w[0]));
        assert!(handover[0] > 0.9 && *handover.last().unwrap() < 0.1);
    }

    #[test]
    fn cross_fading_removes_the_seam_a_butt_join_makes() {
        // two clips with different steady spectra
        let h = 16;
        let a: Vec<f32> = (0..h).map(|i| if i < h / 2 { 0.8 } else { -0.8 }).collect();
        let b: Vec<f32> = (0..h).map(|i| if i < h / 2 { -0.8 } else { 0.8 }).collect();
        let (ca, cb) = (steady(&a, 64), steady(&b, 64));
        // butt join: clips side by side, the change happens in one frame
        let butt = join_clips(&[ca.clone(), cb.clone()], &[0, 64], 128).unwrap();
        let r = seam_report(&flux_of(&butt), &[64], 2);
        assert!(r.at_joins > 10.0 * r.elsewhere.max(1e-9), "{r:?}");
        // overlapped join: the change is spread over the 16 shared columns
        let faded = join_clips(&[ca, cb], &[0, 48], 112).unwrap();
        let joins = [48, 56, 64];
        let r_faded = seam_report(&flux_of(&faded), &joins, 2);
        assert!(r_faded.at_joins < r.at_joins / 4.0, "{r_faded:?} vs {r:?}");
        // columns outside the overlap are the clips themselves
        let left: Vec<f32> = faded
            .narrow(3, 0, 48)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f32> = steady(&a, 48).flatten_all().unwrap().to_vec1().unwrap();
        assert!(left.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
    }
}

//! Spectrograms wider than one model clip: long-form generation and
//! audio-to-audio over long inputs.
//!
//! Clips overlap by `overlap_px` columns. In long-form generation each clip
//! after the first starts from the previous clip's last columns, kept in
//! latent space while the rest is generated (inpainting), so the music
//! continues instead of restarting. Decoded clips are cross-faded in the
//! image domain over the overlap and the joined image is inverted to audio
//! in one piece, so there is no phase seam between clips.

use candle_core::{DType, Device, Tensor};

use super::checkpoint::StableDiffusion;
use super::pipeline::{Conditioning, Inpaint, SampleSettings};
use super::schedulers::NoiseSource;
use super::terr;
use crate::error::{Error, Result};
use crate::progress::Progress;

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
            // ramp in over the overlap with the previous clip, out over the next
            let fade_in = if k == 0 { 0 } else { starts[k - 1] + w - start };
            let fade_out = if k + 1 < starts.len() {
                start + w - starts[k + 1]
            } else {
                0
            };
            for x in 0..w {
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
                let wgt = ramp_in.min(ramp_out).max(1e-6);
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

/// Latent-column keep mask: 1 for the first `cols` of `width` columns.
fn keep_first_columns(shape: [usize; 4], cols: usize, device: &Device) -> Result<Tensor> {
    let [b, _, h, w] = shape;
    let row: Vec<f32> = (0..w).map(|x| if x < cols { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(row, (1, 1, 1, w), device)
        .and_then(|t| t.broadcast_as((b, 1, h, w)))
        .and_then(|t| t.contiguous())
        .map_err(terr("keep mask"))
}

/// Places `cols` latent columns of `tail` at the start of a zero tensor of
/// `shape`.
fn tail_at_start(tail: &Tensor, shape: [usize; 4], device: &Device) -> Result<Tensor> {
    let [b, c, h, w] = shape;
    let cols = tail.dim(3).map_err(terr("tail"))?;
    Tensor::zeros((b, c, h, w - cols), DType::F32, device)
        .and_then(|z| Tensor::cat(&[tail, &z], 3))
        .map_err(terr("tail"))
}

impl StableDiffusion {
    /// Long-form text to spectrogram: `total_px` columns of `height_px`
    /// rows, clip by clip, each continuing the previous one over the
    /// overlap. Returns the joined decoded image `[1, 3, H, total]` in
    /// [-1, 1]. `progress` counts denoising steps over all clips.
    #[allow(clippy::too_many_arguments)]
    pub fn generate_long(
        &self,
        settings: &SampleSettings,
        text: &Conditioning,
        height_px: usize,
        total_px: usize,
        tiling: Tiling,
        noise: &mut dyn NoiseSource,
        progress: &dyn Progress,
    ) -> Result<Tensor> {
        let scale = self.vae_scale();
        tiling.validate(scale)?;
        if total_px < tiling.clip_px {
            return Err(Error::param(
                "seconds",
                format!("long form needs at least one clip ({} px)", tiling.clip_px),
            ));
        }
        let starts = tiling.starts(total_px);
        let shape = self.latent_shape(1, tiling.clip_px, height_px)?;
        let device = self.unet.device().clone();
        let steps_per_clip = settings
            .sampler
            .build(&self.scheduler, settings.steps)?
            .timesteps()
            .len();
        progress.start((steps_per_clip * starts.len()) as u64, "denoising");
        let text = text.repeat(1)?;
        let mut clips = Vec::with_capacity(starts.len());
        let mut previous: Option<Tensor> = None;
        for (k, &start) in starts.iter().enumerate() {
            let mut sampler = settings.sampler.build(&self.scheduler, settings.steps)?;
            let fresh = noise.noise(&shape, &device)?;
            let latents = match &previous {
                None => {
                    let init = (&fresh * sampler.init_noise_sigma()).map_err(terr("init"))?;
                    self.denoise(
                        sampler.as_mut(),
                        init,
                        0,
                        &text,
                        settings.guidance,
                        None,
                        noise,
                        progress,
                    )?
                }
                Some(prev) => {
                    let shared_px = starts[k - 1] + tiling.clip_px - start;
                    let cols = shared_px / scale;
                    let tail = prev
                        .narrow(3, shape[3] - cols, cols)
                        .map_err(terr("previous clip"))?;
                    let original = tail_at_start(&tail, shape, &device)?;
                    let keep = keep_first_columns(shape, cols, &device)?;
                    let start_noised = sampler
                        .add_noise(&original, &fresh, 0)
                        .map_err(terr("continuation"))?;
                    let pure = (&fresh * sampler.init_noise_sigma()).map_err(terr("init"))?;
                    let init = start_noised
                        .broadcast_mul(&keep)
                        .and_then(|a| a + pure.broadcast_mul(&(1.0 - &keep)?)?)
                        .map_err(terr("continuation"))?;
                    let inpaint = Inpaint {
                        original,
                        keep,
                        noise: fresh.clone(),
                    };
                    self.denoise(
                        sampler.as_mut(),
                        init,
                        0,
                        &text,
                        settings.guidance,
                        Some(&inpaint),
                        noise,
                        progress,
                    )?
                }
            };
            clips.push(self.decode_latents(&latents)?);
            previous = Some(latents);
        }
        progress.finish();
        join_clips(&clips, &starts, total_px)
    }

    /// Audio-to-audio over a spectrogram image of any width (`[1, 3, H,
    /// W]` in [-1, 1], W at least one clip): each clip is re-generated with
    /// img2img at `strength`; clips after the first keep the previous
    /// output over the overlap; `keep` (`[1, 1, H, W]` in pixels, 1 = keep
    /// the input) masks what is repainted. Returns the joined image.
    #[allow(clippy::too_many_arguments)]
    pub fn audio_to_audio(
        &self,
        settings: &SampleSettings,
        text: &Conditioning,
        image: &Tensor,
        strength: f64,
        keep: Option<&Tensor>,
        tiling: Tiling,
        noise: &mut dyn NoiseSource,
        progress: &dyn Progress,
    ) -> Result<Tensor> {
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
        let per_clip = self.img2img_steps(settings, strength)?;
        progress.start((per_clip * starts.len()) as u64, "denoising");
        let device = self.unet.device().clone();
        let mut clips = Vec::with_capacity(starts.len());
        let mut previous: Option<Tensor> = None;
        for (k, &start) in starts.iter().enumerate() {
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
            let latents = self.img2img_window(
                settings,
                text,
                &window,
                strength,
                combined_keep.as_ref(),
                window_latents.as_ref(),
                noise,
                progress,
            )?;
            clips.push(self.decode_latents(&latents)?);
            previous = Some(latents);
        }
        progress.finish();
        join_clips(&clips, &starts, total)
    }

    /// One audio-to-audio clip: img2img where the kept part follows the
    /// input, except the first columns that follow `tail` (the previous
    /// clip's output) when given.
    #[allow(clippy::too_many_arguments)]
    fn img2img_window(
        &self,
        settings: &SampleSettings,
        text: &Conditioning,
        window: &Tensor,
        strength: f64,
        keep: Option<&Tensor>,
        tail: Option<&(Tensor, [usize; 4])>,
        noise: &mut dyn NoiseSource,
        progress: &dyn Progress,
    ) -> Result<Tensor> {
        let mut original = self.encode_image(window, noise)?;
        if let Some((tail, shape)) = tail {
            // the shared columns follow the previous clip's output
            let cols = tail.dim(3).map_err(terr("tail"))?;
            let rest = original
                .narrow(3, cols, shape[3] - cols)
                .map_err(terr("tail"))?;
            original = Tensor::cat(&[tail, &rest], 3).map_err(terr("tail"))?;
        }
        self.img2img_latents(settings, text, &original, strength, keep, noise, progress)
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

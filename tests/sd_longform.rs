//! Long-form generation on the tiny random SD checkpoint: one latent as
//! wide as the piece, denoised window by window.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use common::max_diff;
use ragafusion::diffusion::pipeline::longform::Tiling;
use ragafusion::diffusion::pipeline::SamplingRun;
use ragafusion::diffusion::{
    LoadOptions, SampleSettings, SamplerKind, SeededNoise, StableDiffusion,
};
use ragafusion::{NoProgress, Progress};

fn model() -> StableDiffusion {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sd-tiny");
    StableDiffusion::load(&dir, &LoadOptions::default()).unwrap()
}

/// A small image (the UNet and VAE are convolutional), to keep the tests
/// quick: 64 rows, and clips of 16 latent columns sharing a quarter.
fn small(sd: &StableDiffusion) -> (usize, Tiling) {
    let clip_px = 16 * sd.vae_scale();
    (
        64,
        Tiling {
            clip_px,
            overlap_px: clip_px / 4,
        },
    )
}

const SETTINGS: SampleSettings = SampleSettings {
    sampler: SamplerKind::DpmPp2m,
    steps: 3,
    guidance: 3.0,
};

/// A sampling run at [`SETTINGS`].
fn run<'a>(noise: &'a mut SeededNoise, progress: &'a dyn Progress) -> SamplingRun<'a> {
    SamplingRun::new(&SETTINGS, noise, progress)
}

/// Counts the units a job announces and reports.
#[derive(Default)]
struct Count {
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress for Count {
    fn start(&self, total: u64, _what: &str) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn advance(&self, done: u64) -> bool {
        self.done.fetch_add(done, Ordering::Relaxed);
        true
    }
    fn message(&self, _text: &str) {}
    fn finish(&self) {}
}

#[test]
fn a_piece_one_clip_long_is_the_clip_text_to_image_makes() {
    let sd = model();
    let (h, tiling) = small(&sd);
    let clip = tiling.clip_px;
    let text = sd
        .conditioning("kalyani raga alapana", None, SETTINGS.guidance, &NoProgress)
        .unwrap();
    let shape = sd.latent_shape(1, clip, h).unwrap();
    let latents = sd
        .txt2img(
            &mut run(&mut SeededNoise::new(5), &NoProgress),
            &text,
            shape,
            None,
        )
        .unwrap();
    let single = sd.decode_latents(&latents).unwrap();
    let long = sd
        .generate_long(
            &mut run(&mut SeededNoise::new(5), &NoProgress),
            &text,
            h,
            clip,
            tiling,
        )
        .unwrap();
    assert!(
        max_diff(&single, &long) < 1e-5,
        "{}",
        max_diff(&single, &long)
    );
}

#[test]
fn every_window_is_denoised_at_every_step_and_the_width_is_kept() {
    let sd = model();
    let (h, tiling) = small(&sd);
    let clip = tiling.clip_px;
    let text = sd
        .conditioning("todi raga kriti", None, SETTINGS.guidance, &NoProgress)
        .unwrap();
    // a width that is not a whole number of latent columns
    let total = 3 * clip - 3;
    let count = Count::default();
    let image = sd
        .generate_long(
            &mut run(&mut SeededNoise::new(1), &count),
            &text,
            h,
            total,
            tiling,
        )
        .unwrap();
    assert_eq!(image.dims(), &[1, 3, h, total]);
    let windows = tiling
        .starts(total.div_ceil(sd.vae_scale()) * sd.vae_scale())
        .len() as u64;
    assert!(windows >= 4, "{windows}");
    assert_eq!(count.total.load(Ordering::Relaxed), 3 * windows);
    assert_eq!(count.done.load(Ordering::Relaxed), 3 * windows);
    // the same seed makes the same piece; another seed another one
    let again = sd
        .generate_long(
            &mut run(&mut SeededNoise::new(1), &NoProgress),
            &text,
            h,
            total,
            tiling,
        )
        .unwrap();
    assert_eq!(max_diff(&image, &again), 0.0);
    let other = sd
        .generate_long(
            &mut run(&mut SeededNoise::new(2), &NoProgress),
            &text,
            h,
            total,
            tiling,
        )
        .unwrap();
    assert!(max_diff(&image, &other) > 1e-3);
}

#[test]
fn cancelling_stops_a_long_piece() {
    let sd = model();
    let (h, tiling) = small(&sd);
    let clip = tiling.clip_px;
    let text = sd.conditioning("", None, 1.0, &NoProgress).unwrap();
    let flag = ragafusion::progress::CancelFlag::default();
    flag.cancel();
    let err = sd
        .generate_long(
            &mut run(&mut SeededNoise::new(1), &flag),
            &text,
            h,
            2 * clip,
            tiling,
        )
        .unwrap_err();
    assert!(matches!(err, ragafusion::Error::Cancelled), "{err}");
}

//! Stable Diffusion hot paths on the tiny fixture (tests/data/sd-tiny): one
//! UNet call at riffusion's latent size (64 x 64, batch 2 as with
//! guidance), the VAE decode of one 512 x 512 image. The SD 1.5-sized figures come from `ragafusion
//! bench-sd`.
//!
//! Run: `cargo bench --bench diffusion`. Results: docs/benchmarks.md.

use std::path::Path;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use ragafusion::diffusion::{LoadOptions, StableDiffusion};

fn diffusion(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sd-tiny");
    let sd = StableDiffusion::load(&dir, &LoadOptions::default()).expect("tiny fixture");
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (2, 4, 64, 64), &dev).unwrap();
    let t = Tensor::new(&[500f32], &dev).unwrap();
    let ctx = Tensor::randn(0f32, 1., (2, 77, 32), &dev).unwrap();
    let z = Tensor::randn(0f32, 1., (1, 4, 64, 64), &dev).unwrap();
    let mut g = c.benchmark_group("sd_tiny_512px");
    g.sample_size(10);
    g.bench_function("unet_batch2", |b| {
        b.iter(|| sd.unet.forward(&x, &t, &ctx).unwrap())
    });
    g.bench_function("vae_decode", |b| b.iter(|| sd.decode_latents(&z).unwrap()));
    g.finish();
}

criterion_group!(benches, diffusion);
criterion_main!(benches);

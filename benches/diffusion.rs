//! Stable Diffusion hot paths on the tiny fixture (tests/data/sd-tiny): one
//! UNet call at riffusion's latent size (64 x 64, batch 2 as with
//! guidance), the VAE decode of one 512 x 512 image. The SD 1.5-sized figures come from `ragafusion
//! bench-sd`.
//!
//! The `conv3x3` group times one 3 x 3 convolution, forward and forward +
//! backward, through the project's CPU kernel and through candle's, at a
//! small VAE's full-resolution layer and a small UNet's top level.
//!
//! Run: `cargo bench --bench diffusion`. Results: docs/benchmarks.md.

use std::path::Path;

use candle_core::{Device, Module, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use ragafusion::diffusion::{LoadOptions, StableDiffusion};
use ragafusion::nn::layers::Conv2d;

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

fn conv3x3(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut g = c.benchmark_group("conv3x3");
    g.sample_size(10);
    for (name, b, ch, h, w) in [
        ("vae_16ch_128x256_b4", 4, 16, 128, 256),
        ("unet_32ch_16x64_b8", 8, 32, 16, 64),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (b, ch, h, w), &dev).unwrap()).unwrap();
        let k = Var::from_tensor(&Tensor::randn(0f32, 0.1, (ch, ch, 3, 3), &dev).unwrap()).unwrap();
        let ours = Conv2d::new(k.as_tensor().clone(), None, 1, 1);
        g.bench_function(format!("{name}/ours_fwd"), |bn| {
            bn.iter(|| ours.forward(&x).unwrap())
        });
        g.bench_function(format!("{name}/candle_fwd"), |bn| {
            bn.iter(|| x.conv2d(&k, 1, 1, 1, 1).unwrap())
        });
        g.bench_function(format!("{name}/ours_fwd_bwd"), |bn| {
            bn.iter(|| {
                ours.forward(&x)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
        g.bench_function(format!("{name}/candle_fwd_bwd"), |bn| {
            bn.iter(|| {
                x.conv2d(&k, 1, 1, 1, 1)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, diffusion, conv3x3);
criterion_main!(benches);

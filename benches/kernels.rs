//! The CPU kernels behind the SD 1.5 speed, each next to what it replaced,
//! at SD 1.5's sizes (batch 2, as with guidance):
//!
//! - `attention`: self-attention over the 64 x 64 latent (4096 tokens, 8
//!   heads of 40), the fused kernel against the tensor-op form (score
//!   matrices in 64-row chunks, softmax, product);
//! - `attention_backward`: the gradients of self-attention over the
//!   `small` training config's 64 x 64 latent (4096 tokens, 8 heads of
//!   16, batch 1), the fused backward against the tensor-op graph's;
//! - `conv3x3`: the UNet's 320-channel 3 x 3 convolution at 64 x 64 and a
//!   VAE-like 128-channel one at 256 x 256, Winograd against im2col;
//! - `softmax_row`: the exponential pass over one 4096-value score row,
//!   the vectorised kernel against the standard library's `exp`.
//!
//! Run: `cargo bench --bench kernels`. Results: docs/benchmarks.md.

use candle_core::{Device, Tensor, Var, D};
use std::hint::black_box;

use criterion::{criterion_group, Criterion};
use ragafusion::nn::{attention_cpu, conv_cpu, vecmath};

/// The tensor-op attention: heads split out, score matrices 64 query rows
/// at a time, softmax, product, heads merged.
fn tensor_op_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64) -> Tensor {
    let split = |t: &Tensor| {
        let (b, n, c) = t.dims3().unwrap();
        t.reshape((b, n, heads, c / heads))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b * heads, n, c / heads))
            .unwrap()
    };
    let (q, k, v) = (split(q), split(k), split(v));
    let n = q.dim(1).unwrap();
    let kt = k.t().unwrap();
    let parts: Vec<Tensor> = (0..n)
        .step_by(64)
        .map(|i| {
            let qi = q.narrow(1, i, 64.min(n - i)).unwrap();
            let s = (qi * scale).unwrap().matmul(&kt).unwrap();
            // the fused softmax kernel has no backward pass
            let p = if s.track_op() {
                candle_nn::ops::softmax(&s, D::Minus1).unwrap()
            } else {
                candle_nn::ops::softmax_last_dim(&s).unwrap()
            };
            p.matmul(&v).unwrap()
        })
        .collect();
    let out = Tensor::cat(&parts, 1).unwrap();
    let (bh, n, d) = out.dims3().unwrap();
    out.reshape((bh / heads, heads, n, d))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((bh / heads, n, heads * d))
        .unwrap()
}

fn attention(c: &mut Criterion) {
    let dev = Device::Cpu;
    // keep the tensor-op reference honest: the same result as the kernel
    let q = Tensor::randn(0f32, 1., (1, 100, 16), &dev).unwrap();
    let a = attention_cpu::attention(&q, &q, &q, 2, 0.25).unwrap();
    let b = tensor_op_attention(&q, &q, &q, 2, 0.25);
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_keepdim(D::Minus1)
        .unwrap();
    assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-5);
    let (n, heads, d) = (4096, 8, 40);
    let qkv: Vec<Tensor> = (0..3)
        .map(|_| Tensor::randn(0f32, 1., (2, n, heads * d), &dev).unwrap())
        .collect();
    let scale = (d as f64).powf(-0.5);
    let mut g = c.benchmark_group("attention_sd15_4096tok");
    g.sample_size(10);
    g.bench_function("fused", |b| {
        b.iter(|| attention_cpu::attention(&qkv[0], &qkv[1], &qkv[2], heads, scale).unwrap())
    });
    g.bench_function("tensor_ops", |b| {
        b.iter(|| tensor_op_attention(&qkv[0], &qkv[1], &qkv[2], heads, scale))
    });
    g.finish();
}

fn attention_backward(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (n, heads, d) = (4096, 8, 16);
    let vars: Vec<Var> = (0..3)
        .map(|_| {
            Var::from_tensor(&Tensor::randn(0f32, 1., (1, n, heads * d), &dev).unwrap()).unwrap()
        })
        .collect();
    let probe = Tensor::randn(0f32, 1., (1, n, heads * d), &dev).unwrap();
    let scale = (d as f64).powf(-0.5);
    let (q, k, v) = (
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        vars[2].as_tensor(),
    );
    let loss = |out: Tensor| (out * &probe).unwrap().sum_all().unwrap();
    let mut g = c.benchmark_group("attention_backward_small_4096tok");
    g.sample_size(10);
    g.bench_function("fused", |b| {
        b.iter(|| {
            loss(attention_cpu::attention(q, k, v, heads, scale).unwrap())
                .backward()
                .unwrap()
        })
    });
    g.bench_function("tensor_ops", |b| {
        b.iter(|| {
            loss(tensor_op_attention(q, k, v, heads, scale))
                .backward()
                .unwrap()
        })
    });
    g.finish();
}

fn conv3x3(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut g = c.benchmark_group("conv3x3_sd15");
    g.sample_size(10);
    for (name, b, ch, hw) in [
        ("unet_320ch_64px_b2", 2, 320, 64),
        ("vae_128ch_256px", 1, 128, 256),
    ] {
        let x = Tensor::randn(0f32, 1., (b, ch, hw, hw), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (ch, ch, 3, 3), &dev).unwrap();
        g.bench_function(format!("{name}/winograd"), |bn| {
            bn.iter(|| conv_cpu::conv2d_stride1(&x, &w, 1).unwrap())
        });
        g.bench_function(format!("{name}/im2col"), |bn| {
            bn.iter(|| conv_cpu::conv2d_stride1_im2col(&x, &w, 1).unwrap())
        });
    }
    g.finish();
}

fn softmax_row(c: &mut Criterion) {
    let row: Vec<f32> = (0..4096)
        .map(|i| ((i * 7919) % 4096) as f32 * -0.003)
        .collect();
    let mut g = c.benchmark_group("softmax_row_4096");
    g.bench_function("vecmath", |b| {
        let mut r = row.clone();
        b.iter(|| {
            r.copy_from_slice(&row);
            let top = vecmath::max(&r);
            black_box(vecmath::exp_shifted_sum(&mut r, top))
        })
    });
    g.bench_function("std_exp", |b| {
        let mut r = row.clone();
        b.iter(|| {
            r.copy_from_slice(&row);
            let top = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in r.iter_mut() {
                *v = (*v - top).exp();
                sum += *v;
            }
            black_box(sum)
        })
    });
    g.finish();
}

criterion_group!(benches, attention, attention_backward, conv3x3, softmax_row);

fn main() {
    // the allocator tuning of the ragafusion binary
    ragafusion::memory::keep_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! MusicGen hot paths: the weight-streaming product of a decoder step (two
//! rows, as with guidance, against musicgen-small's 4096 x 1024 MLP matrix,
//! f32 and f16 weights) next to candle's matrix product, and one decoder
//! step plus an EnCodec decode of one second on the tiny fixture
//! (tests/data/musicgen-tiny). The musicgen-small figures come from
//! `ragafusion bench-musicgen`.
//!
//! Run: `cargo bench --bench musicgen`. Results: docs/benchmarks.md.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use ragafusion::musicgen::gemv::FastLinear;
use ragafusion::musicgen::MusicGen;

fn products(c: &mut Criterion) {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 0.03, (4096, 1024), &dev).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 1, 1024), &dev).unwrap();
    let fast = FastLinear::new(w.clone()).unwrap();
    let half = FastLinear::new(w.to_dtype(DType::F16).unwrap()).unwrap();
    let plain = candle_nn::Linear::new(w, None);
    let mut g = c.benchmark_group("decoder_step_product_2x1024x4096");
    g.bench_function("candle_matmul_f32", |b| {
        b.iter(|| plain.forward(&x).unwrap())
    });
    g.bench_function("streaming_f32", |b| b.iter(|| fast.forward(&x).unwrap()));
    g.bench_function("streaming_f16_weights", |b| {
        b.iter(|| half.forward(&x).unwrap())
    });
    g.finish();
}

fn tiny(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/musicgen-tiny");
    let m = MusicGen::load(&dir, &Device::Cpu, DType::F32).expect("tiny fixture");
    let memory = m.text_memory(&["kalyani raga, adi tala"]).unwrap();
    let tokens = Tensor::new(&[[[64u32], [64], [64], [64]]], &Device::Cpu).unwrap();
    let codes = Tensor::zeros((1, 4, 50), DType::U32, &Device::Cpu).unwrap();
    let mut g = c.benchmark_group("musicgen_tiny");
    g.bench_function("decoder_step", |b| {
        b.iter(|| {
            let mut state = m.decoder.start(&memory.hidden, &memory.mask).unwrap();
            m.decoder.step(&mut state, &tokens, true).unwrap()
        })
    });
    g.sample_size(20);
    g.bench_function("encodec_decode_1s", |b| {
        b.iter(|| m.codec.decode(&codes).unwrap())
    });
    g.finish();
}

criterion_group!(benches, products, tiny);
criterion_main!(benches);

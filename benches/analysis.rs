//! Raga-analysis hot paths on one 5.12 s clip: pYIN pitch tracking, the
//! CNN's pitch image and forward pass (the built-in classifier), and one
//! CNN training step (batch 32, default architecture, 20 ragas).
//!
//! Run: `cargo bench --bench analysis`. Results: docs/benchmarks.md.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ragafusion::audio::{read_audio_as, ChannelLayout};
use ragafusion::raga::classifier::Classifier;
use ragafusion::raga::cnn::CnnConfig;
use ragafusion::raga::cnn_train::{train_cnn, Example, TrainOptions};
use ragafusion::raga::pitch_image::pitch_image;
use ragafusion::raga::{pyin, PyinParams};
use ragafusion::spectrogram::{SpectrogramConverter, SpectrogramParams};
use ragafusion::NoProgress;

fn analysis(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips/vignesh_5120ms.wav");
    let audio = read_audio_as(&path, 44100, ChannelLayout::Mono).expect("bundled clip");
    let params = SpectrogramParams::default();
    let (image, _) = SpectrogramConverter::new(params.clone())
        .unwrap()
        .image_from_audio(&audio)
        .unwrap();
    let Classifier::Cnn(cnn) = Classifier::builtin().unwrap() else {
        unreachable!("the built-in classifier is a CNN")
    };
    let mut g = c.benchmark_group("clip_5120ms");
    g.sample_size(10);
    g.bench_function("pyin_44k", |b| {
        b.iter(|| pyin(&audio.channels[0], 44100, &PyinParams::default()).unwrap())
    });
    g.bench_function("cnn_pitch_image", |b| {
        b.iter(|| pitch_image(&image, &params, 150.0, &cnn.config.axis).unwrap())
    });
    let p = pitch_image(&image, &params, 150.0, &cnn.config.axis).unwrap();
    g.bench_function("cnn_builtin_forward", |b| {
        b.iter(|| cnn.predict_pitch_image(&p).unwrap())
    });
    let ragas: Vec<String> = (0..20).map(|i| format!("raga{i}")).collect();
    let examples: Vec<Example> = (0..32)
        .map(|i| Example {
            input: p.clone(),
            label: i % 20,
        })
        .collect();
    let opts = TrainOptions {
        epochs: 1,
        batch_size: 32,
        ..Default::default()
    };
    g.bench_function("cnn_train_step_batch32", |b| {
        b.iter(|| train_cnn(CnnConfig::new(ragas.clone()), &examples, &opts, &NoProgress).unwrap())
    });
    g.finish();
}

criterion_group!(benches, analysis);
criterion_main!(benches);

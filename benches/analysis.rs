//! Raga-analysis hot paths on one 5.12 s clip: pYIN pitch tracking.
//!
//! Run: `cargo bench --bench analysis`. Results: docs/benchmarks.md.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ragafusion::audio::read_audio;
use ragafusion::raga::{pyin, PyinParams};

fn analysis(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips/vignesh_5120ms.wav");
    let audio = read_audio(&path).expect("bundled clip");
    let mut g = c.benchmark_group("clip_5120ms");
    g.sample_size(10);
    g.bench_function("pyin_44k", |b| {
        b.iter(|| pyin(&audio.channels[0], 44100, &PyinParams::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, analysis);
criterion_main!(benches);

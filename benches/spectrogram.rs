//! Hot paths of the spectrogram codec on one 5.12 s mono clip at riffusion's
//! default parameters: audio -> image (STFT, mel, pixels), image -> audio
//! (mel inverse, 32 Griffin-Lim iterations, loudness) and the pieces.
//!
//! Run: `cargo bench --bench spectrogram`. Results: docs/benchmarks.md.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ragafusion::audio::{read_audio_as, ChannelLayout};
use ragafusion::spectrogram::image::mel_from_image;
use ragafusion::spectrogram::{
    InversionOptions, MelInverse, Quality, SpectrogramConverter, SpectrogramParams,
};
use ragafusion::NoProgress;

fn clip() -> ragafusion::audio::Audio {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips/vignesh_5120ms.wav");
    read_audio_as(&path, 44100, ChannelLayout::Mono).expect("bundled clip")
}

fn codec(c: &mut Criterion) {
    let params = SpectrogramParams::default();
    let conv = SpectrogramConverter::new(params.clone()).unwrap();
    let audio = clip();
    let (image, max) = conv.image_from_audio(&audio).unwrap();
    let mel = mel_from_image(&image, params.power_for_image, false, max);
    let fast = InversionOptions::for_quality(Quality::Fast, &params, 0);
    let high = InversionOptions::for_quality(Quality::High, &params, 0);
    let random = InversionOptions::for_quality(Quality::Riffusion, &params, 0);

    let mut g = c.benchmark_group("clip_5120ms");
    g.sample_size(10);
    g.bench_function("audio_to_image", |b| {
        b.iter(|| conv.image_from_audio(&audio).unwrap())
    });
    g.bench_function("image_to_audio_fast", |b| {
        b.iter(|| conv.audio_from_mel(&mel, &fast, &NoProgress).unwrap())
    });
    g.bench_function("image_to_audio_high", |b| {
        b.iter(|| conv.audio_from_mel(&mel, &high, &NoProgress).unwrap())
    });
    g.bench_function("image_to_audio_riffusion_quality", |b| {
        b.iter(|| conv.audio_from_mel(&mel, &random, &NoProgress).unwrap())
    });
    g.bench_function("mel_inverse_nnls20", |b| {
        b.iter(|| {
            conv.linear_from_mel(
                &mel.channels[0],
                mel.num_frames,
                MelInverse::Nnls { iterations: 20 },
            )
        })
    });
    g.bench_function("mel_inverse_least_squares", |b| {
        b.iter(|| conv.linear_from_mel(&mel.channels[0], mel.num_frames, MelInverse::LeastSquares))
    });
    let bins = conv.filterbank().active_bins();
    let spec = conv.stft().forward(&audio.channels[0], bins);
    g.bench_function("stft_forward", |b| {
        b.iter(|| conv.stft().forward(&audio.channels[0], bins))
    });
    g.bench_function("stft_inverse", |b| b.iter(|| conv.stft().inverse(&spec)));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);

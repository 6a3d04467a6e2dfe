//! Parity with diffusers / transformers on the tiny random SD checkpoint
//! (tests/data/sd-tiny, made by tools/make_sd_fixtures.py, which also wrote
//! the reference outputs in tests/data/sd-tiny-reference.safetensors).

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, max_diff};

use candle_core::{Device, Tensor};
use ragafusion::choice::Choice;
use ragafusion::diffusion::pipeline::{slerp, Repaint, SamplingRun};
use ragafusion::diffusion::{
    Conditioning, LoadOptions, RecordedNoise, SampleSettings, SamplerKind, SeededNoise,
    StableDiffusion,
};
use ragafusion::nn::weights::WeightStore;
use ragafusion::NoProgress;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn model() -> StableDiffusion {
    StableDiffusion::load(&data().join("sd-tiny"), &LoadOptions::default()).unwrap()
}

fn reference() -> WeightStore {
    WeightStore::open(&data().join("sd-tiny-reference.safetensors"), &Device::Cpu).unwrap()
}

fn get(r: &WeightStore, name: &str) -> Tensor {
    r.tensor(name)
        .unwrap_or_else(|| panic!("reference tensor {name}"))
        .clone()
}

fn magnitude(a: &Tensor) -> f32 {
    a.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

const PROMPTS: [&str; 4] = [
    "a photo of a cat",
    "kalyani raga, adi tala, alapana, sung by a female vocalist",
    "",
    "shankarabharanam raga with violin and mridangam",
];

fn prompt(i: usize) -> String {
    if i == 3 {
        [PROMPTS[3]; 12].join(" ")
    } else {
        PROMPTS[i].to_string()
    }
}

#[test]
fn tokenizer_matches_transformers_in_both_layouts() {
    let sd = model();
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    // the 2022 layout: vocab.json + merges.txt only
    let legacy = tmp.path().join("tokenizer");
    std::fs::create_dir(&legacy).unwrap();
    for f in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        std::fs::copy(data().join("sd-tiny/tokenizer").join(f), legacy.join(f)).unwrap();
    }
    let legacy = ragafusion::diffusion::tokenizer::ClipTokenizer::load(&legacy).unwrap();
    for i in 0..4 {
        let want: Vec<i64> = get(&r, &format!("tokens.{i}")).to_vec1().unwrap();
        let want: Vec<u32> = want.iter().map(|&x| x as u32).collect();
        let got = sd.tokenizer.encode(&prompt(i)).unwrap();
        assert_eq!(got.ids, want, "prompt {i}");
        assert_eq!(
            legacy.encode(&prompt(i)).unwrap().ids,
            want,
            "prompt {i}, vocab.json"
        );
        assert_eq!(got.truncated > 0, i == 3, "prompt {i} truncation");
    }
}

#[test]
fn text_encoder_matches_transformers() {
    let sd = model();
    let r = reference();
    let want = get(&r, "text.embeddings");
    for i in 0..4 {
        let got = sd.embed_prompt(&prompt(i), &NoProgress).unwrap();
        let w = want.narrow(0, i, 1).unwrap();
        let d = max_diff(&got, &w);
        assert!(d <= 1e-4, "prompt {i}: max diff {d}");
    }
}

#[test]
fn pytorch_bin_text_encoder_equals_safetensors() {
    // text_encoder/pytorch_model.bin has transformers 4's key names
    // (text_model. prefix, position_ids); the same weights as model.safetensors
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&data().join("sd-tiny"), tmp.path());
    std::fs::remove_file(tmp.path().join("text_encoder/model.safetensors")).unwrap();
    let sd = StableDiffusion::load(tmp.path(), &LoadOptions::default()).unwrap();
    assert!(sd.weight_files[0].ends_with("pytorch_model.bin"));
    let got = sd.embed_prompt(PROMPTS[1], &NoProgress).unwrap();
    let want = get(&reference(), "text.embeddings")
        .narrow(0, 1, 1)
        .unwrap();
    assert!(max_diff(&got, &want) <= 1e-4);
}

#[test]
fn unet_matches_diffusers_with_a_timestep_per_sample() {
    let sd = model();
    let r = reference();
    let out = sd
        .unet
        .forward(
            &get(&r, "unet.sample"),
            &get(&r, "unet.timesteps"),
            &get(&r, "unet.context"),
        )
        .unwrap();
    let want = get(&r, "unet.out");
    let d = max_diff(&out, &want);
    assert!(magnitude(&want) > 0.1);
    assert!(d <= 1e-4, "max diff {d}");
}

#[test]
fn vae_matches_diffusers() {
    let sd = model();
    let r = reference();
    let decoded = sd.decode_latents(&get(&r, "vae.latents")).unwrap();
    let d = max_diff(&decoded, &get(&r, "vae.decoded"));
    assert!(d <= 1e-4, "decode: max diff {d}");
    let dist = sd.vae.encode(&get(&r, "vae.image")).unwrap();
    let d = max_diff(&dist.mean, &get(&r, "vae.mean"));
    assert!(d <= 1e-4, "encode mean: max diff {d}");
    let d = max_diff(&dist.std, &get(&r, "vae.std"));
    assert!(d <= 1e-4, "encode std: max diff {d}");
}

fn txt2img(sd: &StableDiffusion, kind: SamplerKind, noise: Vec<Tensor>) -> Tensor {
    let r = reference();
    let settings = SampleSettings {
        sampler: kind,
        steps: 10,
        guidance: 7.5,
    };
    let text = sd
        .conditioning(PROMPTS[1], None, settings.guidance, &NoProgress)
        .unwrap();
    let mut noise = RecordedNoise::new(noise);
    let out = sd
        .txt2img(
            &mut SamplingRun::new(&settings, &mut noise, &NoProgress),
            &text,
            [1, 4, 8, 8],
            Some(get(&r, "txt2img.init")),
        )
        .unwrap();
    assert_eq!(noise.remaining(), 0, "{kind:?} used all recorded noise");
    out
}

#[test]
fn every_sampler_matches_diffusers_from_the_same_initial_latents() {
    let sd = model();
    let r = reference();
    for kind in [
        SamplerKind::Ddim,
        SamplerKind::Pndm,
        SamplerKind::EulerA,
        SamplerKind::DpmPp2m,
    ] {
        let name = kind.name();
        let noise: Vec<Tensor> = (0..10)
            .filter_map(|k| r.tensor(&format!("txt2img.{name}.noise.{k}")).cloned())
            .collect();
        let latents = txt2img(&sd, kind, noise);
        let want = get(&r, &format!("txt2img.{name}.latents"));
        let d = max_diff(&latents, &want);
        assert!(d <= 1e-3, "{name}: latents max diff {d}");
        let image = sd.decode_latents(&latents).unwrap();
        let d = max_diff(&image, &get(&r, &format!("txt2img.{name}.image")));
        assert!(d <= 1e-3, "{name}: image max diff {d}");
    }
}

#[test]
fn img2img_matches_diffusers() {
    let sd = model();
    let r = reference();
    let settings = SampleSettings {
        sampler: SamplerKind::Pndm,
        steps: 10,
        guidance: 7.5,
    };
    let text = sd
        .conditioning(PROMPTS[0], None, settings.guidance, &NoProgress)
        .unwrap();
    let mut noise =
        RecordedNoise::new(vec![get(&r, "img2img.noise.0"), get(&r, "img2img.noise.1")]);
    let out = sd
        .img2img(
            &mut SamplingRun::new(&settings, &mut noise, &NoProgress),
            &text,
            &get(&r, "img2img.image"),
            Repaint {
                strength: 0.6,
                keep: None,
            },
        )
        .unwrap();
    let d = max_diff(&out, &get(&r, "img2img.latents"));
    assert!(d <= 1e-3, "img2img latents max diff {d}");
    let d = max_diff(&sd.decode_latents(&out).unwrap(), &get(&r, "img2img.out"));
    assert!(d <= 1e-3, "img2img image max diff {d}");
}

#[test]
fn interpolation_matches_the_reference() {
    let sd = model();
    let r = reference();
    let alpha = 0.3;
    let lat = slerp(alpha, &get(&r, "interp.a"), &get(&r, "interp.b")).unwrap();
    assert!(max_diff(&lat, &get(&r, "interp.latents")) <= 1e-5);
    let a = sd.conditioning(PROMPTS[0], None, 7.5, &NoProgress).unwrap();
    let b = sd.conditioning(PROMPTS[1], None, 7.5, &NoProgress).unwrap();
    // both unconditional branches embed the empty prompt
    let text: Conditioning = a.lerp(&b, alpha).unwrap();
    assert!(max_diff(&text.cond, &get(&r, "interp.embeddings")) <= 1e-4);
    let settings = SampleSettings {
        sampler: SamplerKind::Ddim,
        steps: 10,
        guidance: 7.5,
    };
    let out = sd
        .txt2img(
            &mut SamplingRun::new(&settings, &mut SeededNoise::new(0), &NoProgress),
            &text,
            [1, 4, 8, 8],
            Some(lat),
        )
        .unwrap();
    let d = max_diff(&out, &get(&r, "interp.out"));
    assert!(d <= 1e-3, "interpolation max diff {d}");
}

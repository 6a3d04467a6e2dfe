//! Loading a diffusers-layout checkpoint: damaged or mismatched folders give
//! errors that name the file and the tensor; fp16 weights load into f32
//! models and f32 weights into f16 / bf16 models.

mod common;

use std::path::{Path, PathBuf};

use common::copy_dir;

use candle_core::{DType, Device, Tensor};
use ragafusion::diffusion::{LoadOptions, StableDiffusion};
use ragafusion::nn::weights::{write_safetensors, WeightStore};
use ragafusion::NoProgress;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sd-tiny")
}

/// A writable copy of the fixture.
fn copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), tmp.path());
    tmp
}

fn load_err(dir: &Path) -> String {
    StableDiffusion::load(dir, &LoadOptions::default())
        .unwrap_err()
        .to_string()
}

const UNET: &str = "unet/diffusion_pytorch_model.safetensors";

/// Rewrites the UNet weights through `edit`.
fn edit_unet(dir: &Path, edit: impl Fn(&mut Vec<(String, Tensor)>)) {
    let file = dir.join(UNET);
    let store = WeightStore::open(&file, &Device::Cpu).unwrap();
    let mut tensors: Vec<(String, Tensor)> = store
        .names()
        .into_iter()
        .map(|n| (n.clone(), store.tensor(&n).unwrap().clone()))
        .collect();
    edit(&mut tensors);
    write_safetensors(&file, &tensors).unwrap();
}

#[test]
fn a_missing_weights_file_is_named() {
    let tmp = copy();
    std::fs::remove_file(tmp.path().join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("vae") && e.contains("no weights file"), "{e}");
    assert!(e.contains("diffusion_pytorch_model.safetensors"), "{e}");
}

#[test]
fn a_missing_config_or_index_is_named() {
    let tmp = copy();
    std::fs::remove_file(tmp.path().join("unet/config.json")).unwrap();
    let e = load_err(tmp.path());
    assert!(
        e.contains("unet/config.json") && e.contains("missing"),
        "{e}"
    );
    std::fs::remove_file(tmp.path().join("model_index.json")).unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("model_index.json"), "{e}");
    let e = load_err(&tmp.path().join("nowhere"));
    assert!(e.contains("nowhere") && e.contains("not a folder"), "{e}");
}

#[test]
fn a_wrong_shaped_tensor_is_named_with_both_shapes() {
    let tmp = copy();
    edit_unet(tmp.path(), |t| {
        let i = t.iter().position(|(n, _)| n == "conv_in.weight").unwrap();
        t[i].1 = Tensor::zeros((16, 4, 1, 1), DType::F32, &Device::Cpu).unwrap();
    });
    let e = load_err(tmp.path());
    assert!(e.contains(UNET), "{e}");
    assert!(
        e.contains("conv_in.weight") && e.contains("[16, 4, 1, 1]"),
        "{e}"
    );
    assert!(e.contains("[16, 4, 3, 3]"), "{e}");
}

#[test]
fn a_missing_or_unexpected_tensor_is_named() {
    let tmp = copy();
    edit_unet(tmp.path(), |t| {
        t.retain(|(n, _)| n != "mid_block.attentions.0.proj_out.bias")
    });
    let e = load_err(tmp.path());
    assert!(
        e.contains("mid_block.attentions.0.proj_out.bias") && e.contains("missing"),
        "{e}"
    );

    let tmp = copy();
    edit_unet(tmp.path(), |t| {
        t.push((
            "extra_head.weight".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        ))
    });
    let e = load_err(tmp.path());
    assert!(
        e.contains("extra_head.weight") && e.contains("not used"),
        "{e}"
    );
}

#[test]
fn a_truncated_safetensors_or_bin_is_reported_not_panicked() {
    let tmp = copy();
    let file = tmp.path().join(UNET);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains(UNET) && e.contains("truncated"), "{e}");

    let tmp = copy();
    std::fs::remove_file(tmp.path().join("text_encoder/model.safetensors")).unwrap();
    let bin = tmp.path().join("text_encoder/pytorch_model.bin");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() / 3]).unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("pytorch_model.bin"), "{e}");
}

#[test]
fn a_missing_tokenizer_is_named() {
    let tmp = copy();
    std::fs::remove_dir_all(tmp.path().join("tokenizer")).unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("tokenizer") && e.contains("missing"), "{e}");

    let tmp = copy();
    for f in ["tokenizer.json", "merges.txt"] {
        std::fs::remove_file(tmp.path().join("tokenizer").join(f)).unwrap();
    }
    let e = load_err(tmp.path());
    assert!(e.contains("merges.txt") && e.contains("missing"), "{e}");
}

#[test]
fn an_unsupported_config_is_refused_with_its_key() {
    let tmp = copy();
    let file = tmp.path().join("unet/config.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "\"addition_embed_type\": null",
            "\"addition_embed_type\": \"text_time\"",
        ),
    )
    .unwrap();
    let e = load_err(tmp.path());
    assert!(
        e.contains("unet/config.json") && e.contains("addition_embed_type"),
        "{e}"
    );
}

#[test]
fn fp16_variant_loads_into_f32_and_f32_into_half_precision() {
    let tmp = copy();
    // diffusers' fp16 variant: only diffusion_pytorch_model.fp16.safetensors
    let file = tmp.path().join(UNET);
    let store = WeightStore::open(&file, &Device::Cpu).unwrap();
    let half: Vec<(String, Tensor)> = store
        .names()
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                store.tensor(&n).unwrap().to_dtype(DType::F16).unwrap(),
            )
        })
        .collect();
    std::fs::remove_file(&file).unwrap();
    write_safetensors(
        &tmp.path()
            .join("unet/diffusion_pytorch_model.fp16.safetensors"),
        &half,
    )
    .unwrap();
    let full = StableDiffusion::load(&fixture(), &LoadOptions::default()).unwrap();
    let from_half = StableDiffusion::load(tmp.path(), &LoadOptions::default()).unwrap();
    assert!(from_half.weight_files[1].ends_with("diffusion_pytorch_model.fp16.safetensors"));
    assert_eq!(from_half.unet.dtype(), DType::F32);
    let x = Tensor::randn(0f32, 1., (1, 4, 8, 8), &Device::Cpu).unwrap();
    let t = Tensor::new(&[500f32], &Device::Cpu).unwrap();
    let ctx = full.embed_prompt("a raga", &NoProgress).unwrap();
    let a = full.unet.forward(&x, &t, &ctx).unwrap();
    let b = from_half.unet.forward(&x, &t, &ctx).unwrap();
    let rel = |a: &Tensor, b: &Tensor| {
        let d = common::max_diff(a, b);
        let m = a
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        d / m
    };
    assert!(rel(&a, &b) < 1e-2, "fp16 weights: {}", rel(&a, &b));

    // candle's CPU matmul has no bf16 kernel: bf16 is a CUDA option
    let opts = LoadOptions {
        dtype: DType::F16,
        ..LoadOptions::default()
    };
    let low = StableDiffusion::load(&fixture(), &opts).unwrap();
    assert_eq!(low.unet.dtype(), DType::F16);
    let ctx = low.embed_prompt("a raga", &NoProgress).unwrap();
    let c = low
        .unet
        .forward(&x.to_dtype(DType::F16).unwrap(), &t, &ctx)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    assert!(rel(&a, &c) < 2e-2, "f16: {}", rel(&a, &c));
}

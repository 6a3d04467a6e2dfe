//! A `train --lora` export as diffusers reads it (tests/data/train-export,
//! checked and recorded by tools/check_diffusers_export.py): the merged
//! UNet computes what diffusers computes with it, and the adapters file,
//! merged into the base by hand, gives exactly the merged UNet.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::{copy_dir, max_diff};
use ragafusion::diffusion::{LoadOptions, StableDiffusion};
use ragafusion::nn::lora::merge;
use ragafusion::nn::weights::WeightStore;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn store(path: &Path) -> WeightStore {
    WeightStore::open(path, &Device::Cpu).unwrap()
}

/// sd-tiny with the exported UNet in place, as `train` writes OUT/final.
fn exported_pipeline(dir: &Path) -> StableDiffusion {
    copy_dir(&data().join("sd-tiny"), dir);
    std::fs::remove_dir_all(dir.join("unet")).unwrap();
    std::fs::create_dir(dir.join("unet")).unwrap();
    copy_dir(&data().join("train-export/unet"), &dir.join("unet"));
    StableDiffusion::load(dir, &LoadOptions::default()).unwrap()
}

#[test]
fn exported_unet_matches_diffusers_on_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let sd = exported_pipeline(tmp.path());
    let inputs = store(&data().join("sd-tiny-reference.safetensors"));
    let refs = store(&data().join("train-export/diffusers-reference.safetensors"));
    let get = |s: &WeightStore, n: &str| s.tensor(n).unwrap().clone();
    let out = sd
        .unet
        .forward(
            &get(&inputs, "unet.sample"),
            &get(&inputs, "unet.timesteps"),
            &get(&inputs, "unet.context"),
        )
        .unwrap();
    let d = max_diff(&out, &get(&refs, "export.unet.out"));
    assert!(d <= 1e-4, "merged export vs diffusers: {d}");
    let d = max_diff(&out, &get(&refs, "lora.unet.out"));
    assert!(d <= 1e-4, "merged export vs diffusers' LoRA loading: {d}");
    // and the export is not simply the base model
    let base = store(&data().join("sd-tiny-reference.safetensors"));
    assert!(max_diff(&out, &get(&base, "unet.out")) > 1e-3);
}

#[test]
fn adapters_merged_into_the_base_give_the_exported_unet() {
    let base = store(&data().join("sd-tiny/unet/diffusion_pytorch_model.safetensors"));
    let merged = store(&data().join("train-export/unet/diffusion_pytorch_model.safetensors"));
    let lora = store(&data().join("train-export/pytorch_lora_weights.safetensors"));
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data().join("train-export/lora_config.json")).unwrap(),
    )
    .unwrap();
    let scale = cfg["alpha"].as_f64().unwrap() / cfg["rank"].as_f64().unwrap();
    assert_eq!(base.names(), merged.names());
    let mut adapted = 0;
    for name in base.names() {
        let w = base.tensor(&name).unwrap();
        let stem = name.trim_end_matches(".weight");
        let a = lora.tensor(&format!("unet.{stem}.lora_A.weight"));
        let b = lora.tensor(&format!("unet.{stem}.lora_B.weight"));
        let want = match (a, b) {
            (Some(a), Some(b)) => {
                adapted += 1;
                merge(w, a, b, scale).unwrap()
            }
            (None, None) => w.clone(),
            _ => panic!("{name}: only one of lora_A / lora_B"),
        };
        let d = max_diff(&want, merged.tensor(&name).unwrap());
        assert!(d <= 1e-6, "{name}: {d}");
    }
    assert_eq!(2 * adapted, lora.len());
    assert!(adapted > 0);
}

//! The training loop on the tiny fixture: resume equality, LoRA trains only
//! adapters, export loads back, the auxiliary loss runs.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ragafusion::diffusion::{LoadOptions, StableDiffusion};
use ragafusion::nn::weights::{write_safetensors, WeightStore};
use ragafusion::progress::NoProgress;
use ragafusion::train::checkpoint::{list_checkpoints, load_checkpoint};
use ragafusion::train::data::{encode_latents, read_entries};
use ragafusion::train::export::export_diffusers;
use ragafusion::train::latent_classifier::{LatentClassifier, LatentClassifierConfig};
use ragafusion::train::run::{run_training, RunPlan};
use ragafusion::train::setup::{unet_params, UnetStart};
use ragafusion::train::trainer::{AuxSettings, LatentJudge, StepSettings, Trainer};
use ragafusion::train::{
    AdamWConfig, LoraConfig, LrSchedule, LrScheduleKind, ParamSet, Prediction,
};

const TINY: &str = "tests/data/sd-tiny";

fn judge(dir: &Path) -> Box<dyn LatentJudge> {
    let dev = Device::Cpu;
    let cfg = LatentClassifierConfig::new(vec!["Todi".into(), "Kalyani".into()], 4, 8);
    let fresh = ParamSet::fresh("judge", 9, &dev, |vb| {
        LatentClassifier::new(vb, &cfg).map(|_| ())
    })
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let named: Vec<(String, Tensor)> = fresh
        .names()
        .iter()
        .cloned()
        .zip(fresh.snapshot().unwrap())
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &named).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    Box::new(LatentClassifier::load(dir, &dev).unwrap())
}

fn trainer(data: &Path, lora: Option<LoraConfig>, aux_dir: Option<&Path>) -> Trainer {
    let sd = StableDiffusion::load(Path::new(TINY), &LoadOptions::default()).unwrap();
    let entries = read_entries(data).unwrap();
    let latents = encode_latents(data, &entries, &sd.vae, &HashMap::new(), &NoProgress).unwrap();
    let (config, params) = unet_params(&sd, &UnetStart::Checkpoint, lora, DType::F32, 11).unwrap();
    let settings = StepSettings {
        batch_size: 2,
        grad_accum: 2,
        crop_w: 8,
        caption_dropout: 0.2,
        snr_gamma: Some(5.0),
        noise_offset: 0.05,
        input_perturbation: 0.1,
        max_grad_norm: 1.0,
        lr: LrSchedule {
            kind: LrScheduleKind::Cosine,
            base_lr: 1e-3,
            warmup_steps: 1,
            total_steps: 4,
            cycles: 0.5,
        },
        adam: AdamWConfig::default(),
        ema_decay: Some(0.99),
        prediction: Prediction::Epsilon,
        compute_dtype: DType::F32,
        gradient_checkpointing: false,
        seed: 11,
        aux: aux_dir.map(|_| AuxSettings {
            lambda: 0.1,
            t_max: 300,
            low_t_share: 0.5,
        }),
    };
    Trainer::new(
        sd,
        config,
        params,
        entries,
        latents,
        settings,
        aux_dir.map(judge),
    )
    .unwrap()
}

fn plan(max_steps: u64) -> RunPlan {
    RunPlan {
        max_steps,
        checkpoint_every: 2,
        keep_checkpoints: 2,
        log_every: 2,
        validate_every: 0,
    }
}

fn max_diff(a: &[Tensor], b: &[Tensor]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0.0, f32::max)
}

fn no_validation(_: &mut Trainer) -> ragafusion::Result<serde_json::Value> {
    Ok(serde_json::Value::Null)
}

#[test]
fn resumed_run_equals_the_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::tiny_dataset(&data, 6, 64, 96);
    let aux = tmp.path().join("judge");

    let straight_out = tmp.path().join("straight");
    let mut straight = trainer(&data, None, Some(&aux));
    run_training(
        &mut straight,
        &straight_out,
        &plan(4),
        &NoProgress,
        &mut no_validation,
    )
    .unwrap();

    let split_out = tmp.path().join("split");
    let mut first = trainer(&data, None, Some(&aux));
    run_training(
        &mut first,
        &split_out,
        &plan(2),
        &NoProgress,
        &mut no_validation,
    )
    .unwrap();
    drop(first);
    let mut resumed = trainer(&data, None, Some(&aux));
    let (step, dir) = list_checkpoints(&split_out).unwrap().pop().unwrap();
    assert_eq!(step, 2);
    load_checkpoint(&mut resumed, &dir).unwrap();
    run_training(
        &mut resumed,
        &split_out,
        &plan(4),
        &NoProgress,
        &mut no_validation,
    )
    .unwrap();

    assert_eq!(resumed.step, 4);
    let w = max_diff(
        &straight.params.snapshot().unwrap(),
        &resumed.params.snapshot().unwrap(),
    );
    assert!(w <= 1e-6, "weights differ by {w}");
    assert!(max_diff(&straight.opt.m, &resumed.opt.m) <= 1e-6);
    assert!(max_diff(&straight.opt.v, &resumed.opt.v) <= 1e-6);
    let (e1, e2) = (
        straight.ema.as_ref().unwrap(),
        resumed.ema.as_ref().unwrap(),
    );
    assert!(max_diff(&e1.shadow, &e2.shadow) <= 1e-6);
    // training moved the weights, and the metrics of both runs agree
    let start = trainer(&data, None, None);
    assert!(
        max_diff(
            &start.params.snapshot().unwrap(),
            &straight.params.snapshot().unwrap()
        ) > 1e-4
    );
    let a = std::fs::read_to_string(straight_out.join("metrics.jsonl")).unwrap();
    let b = std::fs::read_to_string(split_out.join("metrics.jsonl")).unwrap();
    let losses = |t: &str| -> Vec<f64> {
        t.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(losses(&a).len(), 4);
    assert_eq!(losses(&a), losses(&b));
    // the aux loss ran and its gradient ratio was measured at log steps
    let lines: Vec<serde_json::Value> = a
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["aux_loss"].as_f64().is_some()),
        "{a}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["aux_grad_ratio"].as_f64().is_some_and(|r| r > 0.0)),
        "{a}"
    );
    // two checkpoints kept, a loss curve drawn
    assert_eq!(list_checkpoints(&straight_out).unwrap().len(), 2);
    assert!(straight_out.join("loss.png").is_file());
}

#[test]
fn lora_changes_only_adapters_and_export_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::tiny_dataset(&data, 4, 64, 96);
    let lora = LoraConfig {
        rank: 2,
        alpha: 2.0,
        ..LoraConfig::default()
    };
    let mut t = trainer(&data, Some(lora), None);
    assert!(t
        .params
        .names()
        .iter()
        .all(|n| n.contains(".lora_A.") || n.contains(".lora_B.")));
    let before = t.params.snapshot().unwrap();
    run_training(
        &mut t,
        &tmp.path().join("run"),
        &plan(3),
        &NoProgress,
        &mut no_validation,
    )
    .unwrap();
    let after = t.params.snapshot().unwrap();
    // every B moved off zero
    for ((n, b), a) in t.params.names().iter().zip(&before).zip(&after) {
        let d = max_diff(std::slice::from_ref(b), std::slice::from_ref(a));
        assert!(d > 0.0 || n.contains("lora_A"), "{n} did not change");
    }
    let base = WeightStore::open(
        &Path::new(TINY).join("unet/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let merged = t.params.merged(None).unwrap();
    assert_eq!(merged.len(), base.len());
    let cfg = t.params.lora().unwrap().clone();
    let mut targeted = 0;
    for (name, m) in &merged {
        let b = base.tensor(name).unwrap();
        let d = max_diff(std::slice::from_ref(m), std::slice::from_ref(b));
        if cfg.target_module(name, b.dims()).is_some() {
            targeted += 1;
            assert!(d > 0.0, "{name}: adapter had no effect");
        } else {
            assert_eq!(d, 0.0, "{name} changed in LoRA mode");
        }
    }
    assert!(targeted > 8, "{targeted}");

    let out = tmp.path().join("run/final");
    let n = export_diffusers(&t, &out, false, None).unwrap();
    assert_eq!(n, base.len());
    let loaded = StableDiffusion::load(&out, &LoadOptions::default()).unwrap();
    let store = WeightStore::open(
        &out.join("unet/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    for (name, m) in &merged {
        let d = max_diff(
            std::slice::from_ref(m),
            std::slice::from_ref(store.tensor(name).unwrap()),
        );
        assert_eq!(d, 0.0, "{name}");
    }
    assert_eq!(loaded.unet.config(), &t.unet_config);
    let adapters =
        WeightStore::open(&out.join("pytorch_lora_weights.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(adapters.len(), t.params.names().len());
    assert!(adapters
        .names()
        .iter()
        .all(|n| n.starts_with("unet.") && n.contains(".lora_")));
}

#[test]
fn gradient_checkpointing_takes_the_same_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::tiny_dataset(&data, 6, 64, 96);
    let aux = tmp.path().join("judge");
    for lora in [None, Some(LoraConfig::default())] {
        let mut plain = trainer(&data, lora.clone(), Some(&aux));
        let mut ck = trainer(&data, lora.clone(), Some(&aux));
        ck.settings.gradient_checkpointing = true;
        for measure in [true, false] {
            let a = plain.train_step(measure).unwrap();
            let b = ck.train_step(measure).unwrap();
            assert!((a.loss - b.loss).abs() < 1e-6, "{a:?} vs {b:?}");
            assert!(
                (a.grad_norm - b.grad_norm).abs() < 1e-5 * a.grad_norm.max(1.0),
                "{a:?} vs {b:?}"
            );
            assert!(a.aux_loss.is_some(), "{a:?}");
            if measure {
                let (ra, rb) = (a.aux_grad_ratio.unwrap(), b.aux_grad_ratio.unwrap());
                assert!(
                    (ra - rb).abs() <= 1e-4 * ra.abs().max(1e-12),
                    "{ra} vs {rb}"
                );
            }
        }
        let d = max_diff(
            &plain.params.snapshot().unwrap(),
            &ck.params.snapshot().unwrap(),
        );
        assert!(d < 1e-6, "weights differ by {d} (lora {})", lora.is_some());
    }
}

//! `train`: fine-tune (or train from a named config) the UNet on a
//! captioned spectrogram folder, with checkpoints, resume, validation and
//! the optional raga-classifier auxiliary loss; export to OUT/final.

use super::choice::choice;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use candle_core::DType;
use clap::Args;
use ragafusion::diffusion::pipeline::images_to_rgb;
use ragafusion::diffusion::{
    LoadOptions, SampleSettings, SamplerKind, SeededNoise, StableDiffusion,
};
use ragafusion::fsutil::write_bytes_atomic;
use ragafusion::raga::classifier::Classifier;
use ragafusion::spectrogram::{read_png, LoadedImage, Quality, SpectrogramParams};
use ragafusion::train::checkpoint::{list_checkpoints, load_checkpoint};
use ragafusion::train::data::read_entries;
use ragafusion::train::export::export_diffusers;
use ragafusion::train::latent_classifier::LatentClassifier;
use ragafusion::train::options::TrainOptions;
use ragafusion::train::run::{run_training, RunPlan};
use ragafusion::train::setup::{cached_latents, unet_params, UnetStart};
use ragafusion::train::trainer::{AuxSettings, LatentJudge, StepSettings, Trainer};
use ragafusion::train::{LrScheduleKind, Prediction};
use serde_json::json;

use super::progress_bar::Bar;
use super::train_parts::parse_device_dtype;
use ragafusion::engine::{slug, spectrogram_output, write_outputs};

/// Arguments of `train`. Every option can also come from `--options
/// FILE.toml` (same names with underscores); flags override the file.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training folder: images + metadata.jsonl (`file_name`, `text`,
    /// optional `raga`), e.g. `prepare`'s OUT/train.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run folder: checkpoints/, metrics.jsonl, loss.png, validation/,
    /// train_config.toml, final/ (the exported pipeline).
    #[arg(long)]
    out: PathBuf,
    /// Base checkpoint (diffusers folder). With --config it supplies the
    /// VAE, text encoder, tokenizer and scheduler only.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Train the UNet from scratch with a named config: tiny, compact, small, sd15.
    #[arg(long)]
    config: Option<String>,
    /// Options file (TOML); saved with the run as train_config.toml.
    #[arg(long)]
    options: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out (its saved options are
    /// used; --max-steps may extend the run).
    #[arg(long)]
    resume: bool,
    /// Optimiser steps in all (default 1000).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Samples per micro-batch (default 1).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimiser step (default 1).
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Peak learning rate (default 1e-5 full, 1e-4 LoRA or from scratch).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// constant, constant_with_warmup, linear, cosine, cosine_with_restarts,
    /// polynomial (default constant).
    #[arg(long, value_parser = choice::<LrScheduleKind>())]
    lr_scheduler: Option<LrScheduleKind>,
    /// Warm-up steps (default 500; ignored by constant).
    #[arg(long)]
    lr_warmup_steps: Option<u64>,
    /// Clip the gradient norm to this (default 1).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// min-SNR weighting gamma (5 recommended; default off).
    #[arg(long)]
    snr_gamma: Option<f64>,
    /// Noise offset scale (default 0).
    #[arg(long)]
    noise_offset: Option<f64>,
    /// Input perturbation (default 0; 0.1 recommended).
    #[arg(long)]
    input_perturbation: Option<f64>,
    /// Probability of the empty caption (default 0.1).
    #[arg(long)]
    caption_dropout: Option<f64>,
    /// epsilon or v_prediction (default: the scheduler's).
    #[arg(long, value_parser = ["epsilon", "v_prediction"])]
    prediction: Option<String>,
    /// Keep an EMA of the weights with this decay bound (e.g. 0.9999).
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Train LoRA adapters (attention to_q, to_k, to_v, to_out.0).
    #[arg(long)]
    lora: bool,
    /// LoRA rank (default 4).
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA alpha (default: the rank).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// `no` or `bf16` (CUDA: bf16 compute with f32 master weights).
    #[arg(long)]
    mixed_precision: Option<String>,
    /// Gradient checkpointing: keep only the UNet's block boundaries and
    /// recompute each block in the backward (less memory, slower steps).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Seed (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Random time-crop width in pixels (default 512).
    #[arg(long)]
    crop_px: Option<usize>,
    /// Checkpoint every N steps (default 500).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Checkpoints kept (default 3).
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Validate every N steps (default never).
    #[arg(long)]
    validate_every: Option<u64>,
    /// A validation prompt (repeat the flag for several).
    #[arg(long = "validation-prompt")]
    validation_prompts: Vec<String>,
    /// Sampling steps at validation (default 20).
    #[arg(long)]
    validation_steps: Option<usize>,
    /// Latent raga classifier (from train-latent-classifier) for the
    /// auxiliary loss.
    #[arg(long)]
    aux_classifier: Option<PathBuf>,
    /// Auxiliary loss weight (default 0.05).
    #[arg(long)]
    aux_lambda: Option<f64>,
    /// Auxiliary loss only for timesteps up to this (default 200).
    #[arg(long)]
    aux_t_max: Option<usize>,
    /// Share of samples with timesteps drawn from 0..=t_max (default 0).
    #[arg(long)]
    aux_low_t_share: Option<f64>,
    /// `cpu`, or `cuda` / `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn overlay(o: &mut TrainOptions, a: &TrainArgs) {
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { o.$f = v; } )* };
    }
    macro_rules! set_opt {
        ($($f:ident),*) => { $( if a.$f.is_some() { o.$f = a.$f.clone(); } )* };
    }
    set!(
        max_steps,
        batch_size,
        grad_accum,
        lr_scheduler,
        lr_warmup_steps,
        max_grad_norm
    );
    set!(
        noise_offset,
        input_perturbation,
        caption_dropout,
        mixed_precision,
        seed,
        crop_px
    );
    set!(
        checkpoint_every,
        keep_checkpoints,
        validate_every,
        validation_steps
    );
    set!(aux_lambda, aux_t_max, aux_low_t_share);
    set_opt!(
        data,
        model,
        config,
        learning_rate,
        snr_gamma,
        ema_decay,
        aux_classifier
    );
    if let Some(p) = &a.prediction {
        o.prediction = Some(if p == "v_prediction" {
            Prediction::V
        } else {
            Prediction::Epsilon
        });
    }
    if a.gradient_checkpointing {
        o.gradient_checkpointing = true;
    }
    if !a.validation_prompts.is_empty() {
        o.validation_prompts = a.validation_prompts.clone();
    }
    if a.lora || a.lora_rank.is_some() || a.lora_alpha.is_some() {
        let mut l = o.lora.clone().unwrap_or_default();
        if let Some(r) = a.lora_rank {
            l.rank = r;
            l.alpha = r as f64;
        }
        if let Some(al) = a.lora_alpha {
            l.alpha = al;
        }
        o.lora = Some(l);
    }
}

fn options(a: &TrainArgs) -> anyhow::Result<TrainOptions> {
    let saved = a.out.join("train_config.toml");
    if a.resume && saved.is_file() {
        let mut o = TrainOptions::from_toml(&saved)?;
        if let Some(m) = a.max_steps {
            o.max_steps = m;
        }
        return Ok(o);
    }
    let mut o = match &a.options {
        Some(p) => TrainOptions::from_toml(p)?,
        None => TrainOptions::default(),
    };
    overlay(&mut o, a);
    Ok(o)
}

/// Runs `train`.
pub fn train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let o = options(&a)?;
    o.validate()?;
    let compute = if o.mixed_precision == "bf16" {
        "bf16"
    } else {
        "f32"
    };
    let (device, compute_dtype) =
        parse_device_dtype(&a.device, compute).context("--mixed-precision bf16")?;
    let (data, model) = (
        o.data.clone().unwrap_or_default(),
        o.model.clone().unwrap_or_default(),
    );
    let load = LoadOptions {
        dtype: DType::F32,
        vae_dtype: DType::F32,
        device: device.clone(),
        variant: None,
    };
    let sd = StableDiffusion::load(&model, &load)
        .with_context(|| format!("loading the checkpoint {}", model.display()))?;
    let entries = read_entries(&data)?;
    let first = read_png(&data.join(&entries[0].file_name))?;
    let scale = sd.vae_scale();
    if o.crop_px % scale != 0 {
        bail!(
            "--crop-px {} is not a multiple of the VAE scale {scale}",
            o.crop_px
        );
    }
    let bar = Bar::new();
    let latents = cached_latents(
        &data,
        &entries,
        &sd.vae,
        &a.out.join("cache").join("latents.safetensors"),
        &bar,
    )?;
    let start = match &o.config {
        Some(name) => UnetStart::Fresh(name.clone()),
        None => UnetStart::Checkpoint,
    };
    let frozen = if o.lora.is_some() {
        compute_dtype
    } else {
        DType::F32
    };
    let (unet_config, params) = unet_params(&sd, &start, o.lora.clone(), frozen, o.seed)?;
    let judge: Option<Box<dyn LatentJudge>> = match &o.aux_classifier {
        Some(dir) => Some(Box::new(
            LatentClassifier::load(dir, &device)
                .with_context(|| format!("loading --aux-classifier {}", dir.display()))?,
        )),
        None => None,
    };
    let settings = StepSettings {
        batch_size: o.batch_size,
        grad_accum: o.grad_accum,
        crop_w: o.crop_px / scale,
        caption_dropout: o.caption_dropout,
        snr_gamma: o.snr_gamma,
        noise_offset: o.noise_offset,
        input_perturbation: o.input_perturbation,
        max_grad_norm: o.max_grad_norm,
        lr: o.schedule(),
        adam: o.adam,
        ema_decay: o.ema_decay,
        prediction: o
            .prediction
            .unwrap_or_else(|| Prediction::of(&sd.scheduler)),
        compute_dtype,
        gradient_checkpointing: o.gradient_checkpointing,
        seed: o.seed,
        aux: judge.as_ref().map(|_| AuxSettings {
            lambda: o.aux_lambda,
            t_max: o.aux_t_max,
            low_t_share: o.aux_low_t_share,
        }),
    };
    let mut trainer = Trainer::new(sd, unet_config, params, entries, latents, settings, judge)?;
    eprintln!(
        "training {} parameters ({} tensors{}) on {} examples",
        trainer.params.trainable_count(),
        trainer.params.names().len(),
        if trainer.params.lora().is_some() {
            ", LoRA"
        } else {
            ""
        },
        trainer.examples()
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    write_bytes_atomic(&a.out.join("train_config.toml"), o.to_toml()?.as_bytes())?;
    if a.resume {
        match list_checkpoints(&a.out)?.pop() {
            Some((step, dir)) => {
                load_checkpoint(&mut trainer, &dir)?;
                eprintln!("resumed from step {step} ({})", dir.display());
            }
            None => eprintln!("no checkpoint in {}; starting at step 0", a.out.display()),
        }
    }
    let plan = RunPlan {
        max_steps: o.max_steps,
        checkpoint_every: o.checkpoint_every,
        keep_checkpoints: o.keep_checkpoints,
        log_every: o.log_every,
        validate_every: if o.validation_prompts.is_empty() {
            0
        } else {
            o.validate_every
        },
    };
    let classifier = Classifier::builtin()?;
    let mut validate = |t: &mut Trainer| -> ragafusion::Result<serde_json::Value> {
        validation(t, &o, &first, &a.out, &classifier)
            .map_err(|e| ragafusion::Error::param("validation", format!("{e:#}")))
    };
    run_training(&mut trainer, &a.out, &plan, &bar, &mut validate)?;
    let final_dir = a.out.join("final");
    export_diffusers(
        &trainer,
        &final_dir,
        trainer.ema.is_some(),
        Some(&first.params),
    )?;
    println!("{}", final_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Generates every validation prompt with the current (EMA) weights and
/// records the built-in raga classifier's verdict on each.
fn validation(
    t: &mut Trainer,
    o: &TrainOptions,
    first: &LoadedImage,
    out: &Path,
    classifier: &Classifier,
) -> anyhow::Result<serde_json::Value> {
    let unet = t.current_unet(true)?;
    let saved = std::mem::replace(&mut t.sd.unet, unet);
    let params: SpectrogramParams = first.params.clone();
    let h = first.image.height;
    let dir = out.join("validation").join(format!("step-{:06}", t.step));
    let mut records = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for (i, prompt) in o.validation_prompts.iter().enumerate() {
            let settings = SampleSettings {
                sampler: SamplerKind::Pndm,
                steps: o.validation_steps,
                guidance: 7.0,
            };
            let quiet = ragafusion::NoProgress;
            let text = t.sd.conditioning(prompt, None, settings.guidance, &quiet)?;
            let shape = t.sd.latent_shape(1, o.crop_px, h)?;
            let mut noise = SeededNoise::new(o.seed + i as u64);
            let latents =
                t.sd.txt2img(&settings, &text, shape, None, &mut noise, &quiet)?;
            let image = t.sd.decode_latents(&latents)?;
            let name = format!("{i}-{}", slug(prompt));
            let sidecar = json!({"kind": "validation", "prompt": prompt, "step": t.step});
            let made = spectrogram_output(
                name.clone(),
                images_to_rgb(&image)?.remove(0),
                &params,
                Quality::Fast,
                o.seed,
                sidecar,
                &Bar::new(),
            )?;
            println!("{}", write_outputs(&dir, &made)?.display());
            let loaded = read_png(&dir.join(format!("{name}.png")))?;
            let verdict = classifier.classify_image(&loaded, None).ok();
            records.push(json!({
                "prompt": prompt,
                "wav": dir.join(format!("{name}.wav")).display().to_string(),
                "top_raga": verdict.as_ref().and_then(|v| v.ranked.first().map(|r| r.0.clone())),
                "top_score": verdict.as_ref().and_then(|v| v.ranked.first().map(|r| r.1)),
            }));
        }
        Ok(())
    })();
    t.sd.unet = saved;
    result?;
    Ok(serde_json::Value::Array(records))
}

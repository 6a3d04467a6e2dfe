//! The `train` job: a UNet fine-tuned (or trained from a named config) on
//! a captioned spectrogram folder, with checkpoints, resume, validation
//! clips and the optional raga auxiliary loss; exported to `OUT/final`.

use std::path::{Path, PathBuf};

use candle_core::DType;
use serde_json::json;

use super::checkpoint::{list_checkpoints, load_checkpoint};
use super::data::read_entries;
use super::export::export_diffusers;
use super::latent_classifier::LatentClassifier;
use super::options::TrainOptions;
use super::run::{run_training, RunPlan};
use super::setup::{cached_latents, unet_params, UnetStart};
use super::trainer::{AuxSettings, LatentJudge, StepSettings, Trainer};
use super::Prediction;
use crate::diffusion::pipeline::{images_to_rgb, SamplingRun};
use crate::diffusion::{LoadOptions, SampleSettings, SamplerKind, SeededNoise, StableDiffusion};
use crate::engine::{device_and_dtype, slug, spectrogram_output, write_outputs};
use crate::error::{Error, Result};
use crate::fsutil::write_bytes_atomic;
use crate::progress::{NoProgress, Progress};
use crate::raga::classifier::Classifier;
use crate::spectrogram::{read_png, LoadedImage, Quality};

/// Runs a training job into `out` (`resume`: from its newest checkpoint)
/// on the device named `device`; returns the exported pipeline's folder.
pub fn train_unet(
    o: &TrainOptions,
    out: &Path,
    device: &str,
    resume: bool,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    o.validate()?;
    let compute = if o.mixed_precision == "bf16" {
        "bf16"
    } else {
        "f32"
    };
    let (device, compute_dtype) = device_and_dtype(device, compute)?;
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
    let sd = StableDiffusion::load(&model, &load)?;
    let entries = read_entries(&data)?;
    let first = read_png(&data.join(&entries[0].file_name))?;
    let scale = sd.vae_scale();
    if o.crop_px % scale != 0 {
        return Err(Error::param(
            "crop-px",
            format!("{} is not a multiple of the VAE scale {scale}", o.crop_px),
        ));
    }
    let latents = cached_latents(
        &data,
        &entries,
        &sd.vae,
        &out.join("cache").join("latents.safetensors"),
        progress,
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
        Some(dir) => Some(Box::new(LatentClassifier::load(dir, &device)?)),
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
    progress.message(&format!(
        "training {} parameters ({} tensors{}) on {} examples",
        trainer.params.trainable_count(),
        trainer.params.names().len(),
        if trainer.params.lora().is_some() {
            ", LoRA"
        } else {
            ""
        },
        trainer.examples()
    ));
    crate::fsutil::create_dir(out)?;
    write_bytes_atomic(&out.join("train_config.toml"), o.to_toml()?.as_bytes())?;
    if resume {
        match list_checkpoints(out)?.pop() {
            Some((step, dir)) => {
                load_checkpoint(&mut trainer, &dir)?;
                progress.message(&format!("resumed from step {step} ({})", dir.display()));
            }
            None => progress.message(&format!(
                "no checkpoint in {}; starting at step 0",
                out.display()
            )),
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
    let mut validate = |t: &mut Trainer| validation(t, o, &first, out, &classifier, progress);
    run_training(&mut trainer, out, &plan, progress, &mut validate)?;
    let final_dir = out.join("final");
    export_diffusers(
        &trainer,
        &final_dir,
        trainer.ema.is_some(),
        Some(&first.params),
    )?;
    Ok(final_dir)
}

/// Generates every validation prompt with the current (EMA) weights into
/// `OUT/validation/step-N/` and records the built-in raga classifier's
/// verdict on each.
fn validation(
    t: &mut Trainer,
    o: &TrainOptions,
    first: &LoadedImage,
    out: &Path,
    classifier: &Classifier,
    progress: &dyn Progress,
) -> Result<serde_json::Value> {
    let unet = t.current_unet(true)?;
    let saved = std::mem::replace(&mut t.sd.unet, unet);
    let params = first.params.clone();
    let h = first.image.height;
    let dir = out.join("validation").join(format!("step-{:06}", t.step));
    let mut records = Vec::new();
    let settings = SampleSettings {
        sampler: SamplerKind::Pndm,
        steps: o.validation_steps,
        guidance: 7.0,
    };
    let result = (|| -> Result<()> {
        for (i, prompt) in o.validation_prompts.iter().enumerate() {
            let text =
                t.sd.conditioning(prompt, None, settings.guidance, &NoProgress)?;
            let shape = t.sd.latent_shape(1, o.crop_px, h)?;
            let mut noise = SeededNoise::new(o.seed + i as u64);
            let mut run = SamplingRun::new(&settings, &mut noise, &NoProgress);
            let latents = t.sd.txt2img(&mut run, &text, shape, None)?;
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
                &NoProgress,
            )?;
            let wav = write_outputs(&dir, &made)?;
            progress.message(&wav.display().to_string());
            let loaded = read_png(&dir.join(format!("{name}.png")))?;
            let verdict = classifier.classify_image(&loaded, None).ok();
            records.push(json!({
                "prompt": prompt,
                "wav": wav.display().to_string(),
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

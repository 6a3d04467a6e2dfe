//! The `train-text-encoder` job: the text side of a pipeline trained from
//! nothing, a BPE tokenizer learned from the caption vocabulary and a CLIP
//! text encoder taught to read captions' fields.

use std::path::PathBuf;

use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::export::{assemble_pipeline, unet_config_json};
use super::setup::named_config;
use super::text_fit::{fit_text_encoder, text_config_json, TextFitSettings};
use super::ParamSet;
use crate::captions::sampler::{sample_caption, SamplerShares};
use crate::captions::Vocabulary;
use crate::diffusion::bpe::learn_bpe;
use crate::diffusion::config::ClipTextConfig;
use crate::diffusion::tokenizer::ClipTokenizer;
use crate::diffusion::unet::Unet;
use crate::diffusion::{LoadOptions, StableDiffusion};
use crate::error::{Error, Result};
use crate::fsutil::{write_bytes_atomic, write_json_atomic};
use crate::nn::weights::write_safetensors;
use crate::progress::Progress;

/// What `train-text-encoder` is asked to do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextJob {
    /// Run folder: tokenizer/, text_encoder/, training.json, final/.
    pub out: PathBuf,
    /// Base pipeline whose scheduler, VAE, spectrogram parameters and
    /// (when its width fits) UNet go into OUT/final.
    pub model: PathBuf,
    /// A fresh UNet of this named config in OUT/final instead of the
    /// base's.
    pub unet_config: Option<String>,
    /// Width of the encoder (and of the UNet's cross-attention).
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Context length in tokens.
    pub context: usize,
    /// Largest tokenizer vocabulary.
    pub max_tokens: usize,
    /// Captions drawn to learn the tokenizer's merges.
    pub corpus_captions: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Captions per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay).
    pub learning_rate: f64,
    /// Seed of the captions, the initialisation and the fresh UNet.
    pub seed: u64,
}

/// Runs the job; returns the assembled pipeline's folder.
pub fn train_text_encoder(a: &TextJob, progress: &dyn Progress) -> Result<PathBuf> {
    if a.hidden == 0 || a.heads == 0 || a.hidden % a.heads != 0 {
        return Err(Error::param(
            "hidden",
            format!(
                "{} must be a positive multiple of heads {}",
                a.hidden, a.heads
            ),
        ));
    }
    if !(8..=512).contains(&a.context) {
        return Err(Error::param(
            "context",
            format!("{} is outside 8-512 tokens", a.context),
        ));
    }
    let base = StableDiffusion::load(&a.model, &LoadOptions::default())?;
    let vocab = Vocabulary::builtin();
    let device = Device::Cpu;

    let mut rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x70c0);
    let mut corpus: Vec<String> = (0..a.corpus_captions)
        .map(|_| sample_caption(vocab, &SamplerShares::default(), &mut rng).text)
        .collect();
    // every name once more, so rare aliases still merge into whole words
    for r in &vocab.ragas {
        corpus.extend(std::iter::once(r.name.clone()).chain(r.aliases.iter().cloned()));
    }
    let bpe = learn_bpe(corpus.iter().map(String::as_str), a.max_tokens);
    let tok_dir = a.out.join("tokenizer");
    bpe.write(&tok_dir, a.context)?;
    let tokenizer = ClipTokenizer::load(&tok_dir)?;
    progress.message(&format!(
        "tokenizer: {} tokens ({} merges)",
        bpe.tokens.len(),
        bpe.merges.len()
    ));

    let config = ClipTextConfig {
        vocab_size: bpe.tokens.len(),
        hidden_size: a.hidden,
        intermediate_size: 4 * a.hidden,
        num_hidden_layers: a.layers,
        num_attention_heads: a.heads,
        max_position_embeddings: a.context,
        hidden_act: "quick_gelu".into(),
        layer_norm_eps: 1e-5,
    };
    let settings = TextFitSettings {
        steps: a.steps,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        seed: a.seed,
        eval_captions: 2000,
    };
    let (tensors, report) =
        fit_text_encoder(vocab, &tokenizer, &config, &settings, &device, progress)?;
    let te_dir = a.out.join("text_encoder");
    let te_config = serde_json::to_vec_pretty(&text_config_json(&config, bpe.tokens.len()))
        .map_err(|e| Error::invalid_data(&te_dir.join("config.json"), e.to_string()))?;
    write_bytes_atomic(&te_dir.join("config.json"), &te_config)?;
    write_safetensors(&te_dir.join("model.safetensors"), &tensors)?;
    write_json_atomic(
        &a.out.join("training.json"),
        &json!({"settings": settings, "config": {
            "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "context": a.context,
            "tokens": bpe.tokens.len()},
            "raga_accuracy": report.raga_accuracy,
            "segment_accuracy": report.segment_accuracy,
            "tala_accuracy": report.tala_accuracy,
            "instrument_accuracy": report.instrument_accuracy,
            "loss_first_20": report.losses.iter().take(20).sum::<f64>() / 20f64.min(report.losses.len() as f64),
            "loss_last_20": report.losses.iter().rev().take(20).sum::<f64>() / 20f64.min(report.losses.len() as f64),
        }),
    )?;
    progress.message(&format!(
        "held-out accuracy: raga {:.3}, segment {:.3}, tala {:.3}, instrument {:.3}",
        report.raga_accuracy,
        report.segment_accuracy,
        report.tala_accuracy,
        report.instrument_accuracy
    ));

    let fits = base.unet.config().cross_attention_dim == a.hidden;
    let fresh_unet = match (&a.unet_config, fits) {
        (Some(name), _) => {
            let cfg = named_config(name, a.hidden, base.vae.config().latent_channels)?;
            let params = ParamSet::fresh(name, a.seed, &device, |vb| Unet::new(vb, &cfg).map(|_| ()))?;
            Some((cfg, params.named_snapshot()?))
        }
        (None, true) => None,
        (None, false) => {
            return Err(Error::param(
                "unet-config",
                format!(
                    "the base UNet attends to width {} but hidden is {}: name a config for a fresh UNet",
                    base.unet.config().cross_attention_dim,
                    a.hidden
                ),
            ))
        }
    };
    let final_dir = a.out.join("final");
    assemble_pipeline(
        &base.dir,
        &base.weight_files,
        &final_dir,
        "text_encoder",
        |tmp| {
            let tok = tmp.join("tokenizer");
            std::fs::remove_dir_all(&tok).map_err(|e| Error::io(&tok, e))?;
            bpe.write(&tok, a.context)?;
            write_bytes_atomic(&tmp.join("text_encoder/config.json"), &te_config)?;
            write_safetensors(&tmp.join("text_encoder/model.safetensors"), &tensors)?;
            if let Some((cfg, weights)) = &fresh_unet {
                let unet = tmp.join("unet");
                std::fs::remove_dir_all(&unet).map_err(|e| Error::io(&unet, e))?;
                write_bytes_atomic(&unet.join("config.json"), &unet_config_json(cfg)?)?;
                write_safetensors(&unet.join("diffusion_pytorch_model.safetensors"), weights)?;
            }
            Ok(())
        },
    )?;
    // the assembled folder must load
    StableDiffusion::load(&final_dir, &LoadOptions::default())?;
    Ok(final_dir)
}

//! Teaching a fresh CLIP text encoder what captions mean, before a UNet
//! learns to listen to it.
//!
//! Captions are drawn from the vocabulary with their labels
//! ([`sample_caption`]); the encoder's hidden states from the end-of-text
//! token onwards (the end token and the padding after it, which see the
//! whole caption through causal attention) are averaged, and one linear
//! head per field (raga, segment type, tala, instrument; each with a
//! "none" class) is trained with cross-entropy. The heads are dropped
//! afterwards: what remains is a standard `CLIPTextModel` whose states
//! carry the caption's fields, whatever spelling or phrasing named them.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::latent_classifier::cross_entropy;
use super::latent_fit::argmax;
use super::optim::{AdamW, AdamWConfig, GradAccumulator};
use crate::captions::sampler::{sample_caption, LabelledCaption, SamplerShares};
use crate::captions::Vocabulary;
use crate::diffusion::clip::ClipTextModel;
use crate::diffusion::config::ClipTextConfig;
use crate::diffusion::tokenizer::ClipTokenizer;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::nn::layers::linear;
use crate::nn::params::ParamSet;
use crate::progress::Progress;

/// Settings of a text-encoder run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TextFitSettings {
    /// Optimiser steps.
    pub steps: usize,
    /// Captions per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to 5% of it).
    pub learning_rate: f64,
    /// Seed of the initialisation and of the captions.
    pub seed: u64,
    /// Held-out captions scored at the end (drawn from another stream).
    pub eval_captions: usize,
}

/// Held-out accuracy per field, and the losses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextFitReport {
    /// Mean loss (sum of the four cross-entropies) per step.
    pub losses: Vec<f64>,
    /// Fraction of held-out captions whose raga (or "none") was right.
    pub raga_accuracy: f64,
    /// The same for the segment type.
    pub segment_accuracy: f64,
    /// The same for the tala.
    pub tala_accuracy: f64,
    /// The same for the instrument.
    pub instrument_accuracy: f64,
}

/// The four label heads.
struct Heads {
    raga: Linear,
    segment: Linear,
    tala: Linear,
    instrument: Linear,
}

/// Class counts of the heads (each field's list plus "none").
fn class_counts(vocab: &Vocabulary) -> [usize; 4] {
    [
        vocab.ragas.len() + 1,
        vocab.segments.len() + 1,
        vocab.talas.len() + 1,
        vocab.instruments.len() + 1,
    ]
}

fn build(
    vb: &VarBuilder,
    config: &ClipTextConfig,
    vocab: &Vocabulary,
) -> candle_core::Result<(ClipTextModel, Heads)> {
    let model = ClipTextModel::new(vb, config)?;
    let h = vb.pp("heads");
    let d = config.hidden_size;
    let [r, s, t, i] = class_counts(vocab);
    Ok((
        model,
        Heads {
            raga: linear(&h, "raga", d, r)?,
            segment: linear(&h, "segment", d, s)?,
            tala: linear(&h, "tala", d, t)?,
            instrument: linear(&h, "instrument", d, i)?,
        },
    ))
}

/// Token ids `[n, max_len]` and, per caption, the weights `[n, max_len, 1]`
/// that average the positions from the end token on.
fn encode_batch(
    tokenizer: &ClipTokenizer,
    captions: &[LabelledCaption],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let len = tokenizer.max_len();
    let mut ids = Vec::with_capacity(captions.len() * len);
    let mut weights = Vec::with_capacity(captions.len() * len);
    for c in captions {
        let t = tokenizer.encode(&c.text)?;
        // the end token follows the start token and the kept tokens
        let end = len
            - t.ids
                .iter()
                .rev()
                .take_while(|&&i| i == t.ids[len - 1])
                .count();
        let end = end.min(len - 1);
        let n = (len - end) as f32;
        weights.extend((0..len).map(|p| if p >= end { 1.0 / n } else { 0.0 }));
        ids.extend(t.ids);
    }
    let n = captions.len();
    let ids = Tensor::from_vec(ids, (n, len), device).map_err(terr("token ids"))?;
    let weights =
        Tensor::from_vec(weights, (n, len, 1), device).map_err(terr("pooling weights"))?;
    Ok((ids, weights))
}

fn label(v: Option<usize>, none: usize) -> usize {
    v.unwrap_or(none)
}

/// The four logits tensors of a batch.
fn logits(
    model: &ClipTextModel,
    heads: &Heads,
    ids: &Tensor,
    weights: &Tensor,
) -> candle_core::Result<[Tensor; 4]> {
    let hidden = model.forward(ids)?;
    let pooled = hidden.broadcast_mul(weights)?.sum(1)?;
    Ok([
        heads.raga.forward(&pooled)?,
        heads.segment.forward(&pooled)?,
        heads.tala.forward(&pooled)?,
        heads.instrument.forward(&pooled)?,
    ])
}

fn labels(vocab: &Vocabulary, captions: &[LabelledCaption]) -> [Vec<usize>; 4] {
    let [r, s, t, i] = class_counts(vocab);
    [
        captions.iter().map(|c| label(c.raga, r - 1)).collect(),
        captions.iter().map(|c| label(c.segment, s - 1)).collect(),
        captions.iter().map(|c| label(c.tala, t - 1)).collect(),
        captions
            .iter()
            .map(|c| label(c.instrument, i - 1))
            .collect(),
    ]
}

/// Trains a fresh text encoder of `config` for `tokenizer`'s vocabulary.
/// Returns its parameters under transformers' `CLIPTextModel` names
/// (without the heads) and the report.
pub fn fit_text_encoder(
    vocab: &Vocabulary,
    tokenizer: &ClipTokenizer,
    config: &ClipTextConfig,
    settings: &TextFitSettings,
    device: &Device,
    progress: &dyn Progress,
) -> Result<(Vec<(String, Tensor)>, TextFitReport)> {
    if settings.steps == 0 || settings.batch_size == 0 {
        return Err(Error::param("steps/batch_size", "must be positive"));
    }
    let params = ParamSet::fresh("text encoder", settings.seed, device, |vb| {
        build(vb, config, vocab).map(|_| ())
    })?;
    let (model, heads) = build(&params.var_builder(DType::F32, device), config, vocab)
        .map_err(terr("text encoder"))?;
    params.check_all_used()?;
    let mut opt = AdamW::new(params.vars(), AdamWConfig::default())?;
    let shares = SamplerShares::default();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut losses = Vec::with_capacity(settings.steps);
    progress.start(settings.steps as u64, "steps");
    for step in 0..settings.steps {
        let captions: Vec<LabelledCaption> = (0..settings.batch_size)
            .map(|_| sample_caption(vocab, &shares, &mut rng))
            .collect();
        let (ids, weights) = encode_batch(tokenizer, &captions, device)?;
        let out = logits(&model, &heads, &ids, &weights).map_err(terr("text encoder"))?;
        let ys = labels(vocab, &captions);
        let mut loss: Option<Tensor> = None;
        for (l, y) in out.iter().zip(&ys) {
            let ce = cross_entropy(l, y)?;
            loss = Some(match loss {
                None => ce,
                Some(acc) => (acc + ce).map_err(terr("loss"))?,
            });
        }
        let loss = loss.expect("four heads");
        let value = loss.to_scalar::<f32>().map_err(terr("loss"))? as f64;
        if !value.is_finite() {
            return Err(Error::param(
                "loss",
                format!("{value} at step {}", step + 1),
            ));
        }
        let store = loss.backward().map_err(terr("backward"))?;
        let mut acc = GradAccumulator::new(params.vars().len());
        acc.add(params.vars(), &store)?;
        let frac = step as f64 / settings.steps.max(2).saturating_sub(1) as f64;
        let lr = settings.learning_rate
            * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()));
        opt.step(params.vars(), &acc.take(), lr)?;
        losses.push(value);
        progress.status(&format!("loss {value:.3}"));
        if !progress.advance(1) {
            return Err(Error::Cancelled);
        }
    }
    progress.finish();

    // held-out captions from a stream the training never drew from
    let mut eval_rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0xe7a1_u64.rotate_left(32));
    let mut right = [0usize; 4];
    let mut total = 0usize;
    let n_eval = settings.eval_captions.max(1);
    for chunk in (0..n_eval).collect::<Vec<_>>().chunks(256) {
        let captions: Vec<LabelledCaption> = chunk
            .iter()
            .map(|_| sample_caption(vocab, &shares, &mut eval_rng))
            .collect();
        let (ids, weights) = encode_batch(tokenizer, &captions, device)?;
        let out = logits(&model, &heads, &ids, &weights).map_err(terr("text encoder"))?;
        let ys = labels(vocab, &captions);
        for (k, (l, y)) in out.iter().zip(&ys).enumerate() {
            let rows: Vec<Vec<f32>> = l.to_vec2().map_err(terr("logits"))?;
            right[k] += rows.iter().zip(y).filter(|(r, &y)| argmax(r) == y).count();
        }
        total += captions.len();
    }
    let frac = |k: usize| right[k] as f64 / total as f64;
    let report = TextFitReport {
        losses,
        raga_accuracy: frac(0),
        segment_accuracy: frac(1),
        tala_accuracy: frac(2),
        instrument_accuracy: frac(3),
    };
    let tensors = params
        .named_snapshot()?
        .into_iter()
        .filter(|(n, _)| !n.contains("heads."))
        .map(|(n, t)| match n.starts_with("text_model.") {
            true => (n, t),
            false => (format!("text_model.{n}"), t),
        })
        .collect();
    Ok((tensors, report))
}

/// `text_encoder/config.json` of `config` in transformers' layout.
pub fn text_config_json(config: &ClipTextConfig, tokenizer_len: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "max_position_embeddings": config.max_position_embeddings,
        "hidden_act": config.hidden_act,
        "layer_norm_eps": config.layer_norm_eps,
        "projection_dim": config.hidden_size,
        "attention_dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "bos_token_id": tokenizer_len - 2,
        "eos_token_id": tokenizer_len - 1,
        "pad_token_id": tokenizer_len - 1,
        "torch_dtype": "float32",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::bpe::learn_bpe;
    use crate::progress::NoProgress;

    /// A small encoder learns to name the raga of unseen captions far
    /// above chance, and its tensors carry transformers' names only.
    #[test]
    fn learns_the_fields_of_captions() {
        let vocab = Vocabulary::builtin();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let corpus: Vec<String> = (0..3000)
            .map(|_| sample_caption(vocab, &SamplerShares::default(), &mut rng).text)
            .collect();
        let bpe = learn_bpe(corpus.iter().map(String::as_str), 1500);
        let dir = tempfile::tempdir().unwrap();
        bpe.write(dir.path(), 24).unwrap();
        let tok = ClipTokenizer::load(dir.path()).unwrap();
        let config = ClipTextConfig {
            vocab_size: bpe.tokens.len(),
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            max_position_embeddings: 24,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        };
        let settings = TextFitSettings {
            steps: 150,
            batch_size: 32,
            learning_rate: 3e-3,
            seed: 1,
            eval_captions: 300,
        };
        let (tensors, report) =
            fit_text_encoder(vocab, &tok, &config, &settings, &Device::Cpu, &NoProgress).unwrap();
        let first: f64 = report.losses[..10].iter().sum::<f64>() / 10.0;
        let last: f64 = report.losses[140..].iter().sum::<f64>() / 10.0;
        assert!(last < 0.7 * first, "{first} -> {last}");
        // instrument: 15 classes; segment: 15; chance well under 0.3
        assert!(report.instrument_accuracy > 0.5, "{report:?}");
        assert!(report.segment_accuracy > 0.5, "{report:?}");
        assert!(tensors
            .iter()
            .all(|(n, _)| n.starts_with("text_model.") && !n.contains("heads")));
        assert!(tensors
            .iter()
            .any(|(n, _)| n == "text_model.embeddings.token_embedding.weight"));
    }
}

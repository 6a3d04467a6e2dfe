//! Training the raga CNN: mini-batch AdamW on cross-entropy, cosine
//! learning-rate decay, dropout, random time windows, all driven by one
//! seed.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::cnn::{CnnConfig, CnnModel};
use super::pitch_image::PitchImage;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// One training example: a pitch image and its raga index.
#[derive(Debug, Clone)]
pub struct Example {
    /// The input (any number of steps; a random window is taken).
    pub input: PitchImage,
    /// Index into the config's ragas.
    pub label: usize,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainOptions {
    /// Passes over the examples.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (decays to 5% of it on a cosine).
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Dropout before the output layer.
    pub dropout: f32,
    /// Seed for initialisation, shuffling, windows and dropout.
    pub seed: u64,
    /// Augment each window: a random smooth tilt across pitch rows (a
    /// stand-in for unseen timbres and microphones) and up to two masked
    /// time spans.
    pub augment: bool,
}

impl Default for TrainOptions {
    /// 30 epochs of batch 32 at 2e-3, weight decay 1e-3, dropout 0.3, seed
    /// 0, augmentation on.
    fn default() -> Self {
        TrainOptions {
            epochs: 30,
            batch_size: 32,
            learning_rate: 2e-3,
            weight_decay: 1e-3,
            dropout: 0.3,
            seed: 0,
            augment: true,
        }
    }
}

/// Loss and accuracy of one epoch on the training examples (with dropout).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochReport {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of examples whose top logit was right.
    pub accuracy: f64,
    /// Learning rate used.
    pub learning_rate: f64,
}

/// Trains a fresh model with `config` on `examples`; `progress` counts
/// examples over all epochs and may cancel.
pub fn train_cnn(
    config: CnnConfig,
    examples: &[Example],
    opts: &TrainOptions,
    progress: &dyn Progress,
) -> Result<(CnnModel, Vec<EpochReport>)> {
    if examples.is_empty() {
        return Err(Error::param("examples", "no training examples"));
    }
    if opts.epochs == 0 || opts.batch_size == 0 {
        return Err(Error::param("epochs/batch_size", "must be positive"));
    }
    if !(0.0..1.0).contains(&opts.dropout) {
        return Err(Error::param(
            "dropout",
            format!("{} is outside [0, 1)", opts.dropout),
        ));
    }
    let bins = config.axis.num_bins();
    let win = config.window_steps;
    for (i, e) in examples.iter().enumerate() {
        if e.label >= config.ragas.len() {
            return Err(Error::param(
                "label",
                format!(
                    "example {i} has label {} of {} ragas",
                    e.label,
                    config.ragas.len()
                ),
            ));
        }
        if e.input.bins != bins {
            return Err(Error::param(
                "input",
                format!(
                    "example {i} has {} pitch bins, the config {bins}",
                    e.input.bins
                ),
            ));
        }
    }
    let model = CnnModel::new(config, opts.seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5eed_cafe);
    let mut optimizer = AdamW::new(
        model.vars(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: opts.weight_decay,
            ..Default::default()
        },
    )
    .map_err(terr("optimizer"))?;
    let steps_per_epoch = examples.len().div_ceil(opts.batch_size);
    let total_steps = (opts.epochs * steps_per_epoch) as f64;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut reports = Vec::with_capacity(opts.epochs);
    progress.start((opts.epochs * examples.len()) as u64, "examples");
    let mut step = 0usize;
    for epoch in 1..=opts.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut lr = opts.learning_rate;
        for batch in order.chunks(opts.batch_size) {
            let progress_frac = step as f64 / total_steps;
            lr = opts.learning_rate
                * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress_frac).cos()));
            optimizer.set_learning_rate(lr);
            let mut data = Vec::with_capacity(batch.len() * bins * win);
            let mut labels = Vec::with_capacity(batch.len());
            for &i in batch {
                let e = &examples[i];
                let start = if e.input.steps > win {
                    rng.random_range(0..=e.input.steps - win)
                } else {
                    0
                };
                let mut x = e.input.window(start, win);
                if opts.augment {
                    augment(&mut x, bins, win, &mut rng);
                }
                data.extend(x);
                labels.push(e.label as u32);
            }
            // Two halves of the batch run forward and backward on separate
            // threads; their gradients are summed (each loss is weighted
            // by its share of the batch, so the sum is the batch mean's).
            let half = batch.len().div_ceil(2);
            let seeds: [u64; 2] = [rng.random(), rng.random()];
            let run = |part: usize| -> candle_core::Result<Option<(f64, usize, GradStore)>> {
                let (lo, hi) = (part * half, ((part + 1) * half).min(batch.len()));
                if lo >= hi {
                    return Ok(None);
                }
                let n = hi - lo;
                let x = Tensor::from_vec(
                    data[lo * bins * win..hi * bins * win].to_vec(),
                    (n, 1, bins, win),
                    &Device::Cpu,
                )?;
                let y = Tensor::new(&labels[lo..hi], &Device::Cpu)?;
                let mut part_rng = ChaCha8Rng::seed_from_u64(seeds[part]);
                let logits = model.forward(&x, Some((opts.dropout, &mut part_rng)))?;
                let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
                let weighted = (&loss * (n as f64 / batch.len() as f64))?;
                let grads = weighted.backward()?;
                let pred = logits.argmax(1)?.to_vec1::<u32>()?;
                let hits = pred
                    .iter()
                    .zip(&labels[lo..hi])
                    .filter(|(p, l)| p == l)
                    .count();
                Ok(Some((
                    loss.to_scalar::<f32>()? as f64 * n as f64,
                    hits,
                    grads,
                )))
            };
            let (loss, hits) = (|| -> candle_core::Result<(f64, usize)> {
                let (a, b) = rayon::join(|| run(0), || run(1));
                let (mut loss_sum, mut hits) = (0.0, 0);
                let mut total: Option<GradStore> = None;
                for (l, h, g) in [a?, b?].into_iter().flatten() {
                    loss_sum += l;
                    hits += h;
                    total = Some(match total {
                        None => g,
                        Some(mut t) => {
                            for v in model.vars() {
                                if let Some(extra) = g.get(v.as_tensor()) {
                                    let sum = match t.get(v.as_tensor()) {
                                        Some(prev) => (prev + extra)?,
                                        None => extra.clone(),
                                    };
                                    t.insert(v.as_tensor(), sum);
                                }
                            }
                            t
                        }
                    });
                }
                if let Some(g) = total {
                    optimizer.step(&g)?;
                }
                Ok((loss_sum / batch.len() as f64, hits))
            })()
            .map_err(terr("training step"))?;
            if !loss.is_finite() {
                return Err(Error::Numeric {
                    context: format!("training step {step}"),
                    reason: "the loss is not finite (lower the learning rate)".into(),
                });
            }
            loss_sum += loss * batch.len() as f64;
            correct += hits;
            step += 1;
            if !progress.advance(batch.len() as u64) {
                return Err(Error::Cancelled);
            }
        }
        let report = EpochReport {
            epoch,
            loss: loss_sum / examples.len() as f64,
            accuracy: correct as f64 / examples.len() as f64,
            learning_rate: lr,
        };
        progress.message(&format!(
            "epoch {epoch}: loss {:.4}, training accuracy {:.1}%",
            report.loss,
            report.accuracy * 100.0
        ));
        reports.push(report);
    }
    progress.finish();
    Ok((model, reports))
}

/// Adds a random smooth tilt across the `bins` pitch rows of a
/// `bins x steps` window (a slope and one slow ripple, a few tenths of a
/// standard deviation) and blanks up to two time spans of up to a tenth of
/// the window each.
fn augment(x: &mut [f32], bins: usize, steps: usize, rng: &mut ChaCha8Rng) {
    let slope = rng.random_range(-0.6f32..0.6);
    let ripple = rng.random_range(0.0f32..0.4);
    let cycles = rng.random_range(0.5f32..3.0);
    let phase = rng.random_range(0.0f32..std::f32::consts::TAU);
    for b in 0..bins {
        let u = b as f32 / bins as f32;
        let offset =
            slope * (u - 0.5) + ripple * (std::f32::consts::TAU * cycles * u + phase).sin();
        x[b * steps..(b + 1) * steps]
            .iter_mut()
            .for_each(|v| *v += offset);
    }
    for _ in 0..rng.random_range(0..=2) {
        let len = rng.random_range(1..=(steps / 10).max(1));
        let start = rng.random_range(0..=steps - len);
        for b in 0..bins {
            x[b * steps + start..b * steps + start + len].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    /// Two "ragas" told apart by which pitch row carries a line.
    fn toy(n: usize, seed: u64, config: &CnnConfig) -> Vec<Example> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bins = config.axis.num_bins();
        (0..n)
            .map(|i| {
                let label = i % 2;
                let steps = 20;
                let mut data: Vec<f32> = (0..bins * steps)
                    .map(|_| rng.random_range(-0.5..0.5))
                    .collect();
                let row = if label == 0 { 5 } else { 15 };
                for s in 0..steps {
                    data[row * steps + s] += 2.0;
                }
                Example {
                    input: PitchImage { bins, steps, data },
                    label,
                }
            })
            .collect()
    }

    fn tiny() -> CnnConfig {
        let mut c = CnnConfig::new(vec!["A".into(), "B".into()]);
        c.axis.bins_per_octave = 12;
        c.axis.octaves_above = 1;
        c.window_steps = 16;
        c.channels = [4, 4, 8, 8];
        c.hidden = 8;
        c
    }

    #[test]
    fn learns_a_separable_toy_task_and_is_reproducible() {
        let c = tiny();
        let opts = TrainOptions {
            epochs: 15,
            batch_size: 8,
            learning_rate: 5e-3,
            ..Default::default()
        };
        let train = toy(48, 1, &c);
        let (m, reports) = train_cnn(c.clone(), &train, &opts, &NoProgress).unwrap();
        assert!(
            reports.last().unwrap().loss < reports[0].loss * 0.5,
            "{reports:?}"
        );
        let test = toy(20, 2, &c);
        let right = test
            .iter()
            .filter(|e| m.predict_pitch_image(&e.input).unwrap()[0].0 == c.ragas[e.label])
            .count();
        assert!(right >= 18, "{right}/20");
        let (_, again) = train_cnn(c, &train, &opts, &NoProgress).unwrap();
        assert_eq!(reports, again);
    }

    #[test]
    fn bad_examples_are_refused() {
        let c = tiny();
        let mut ex = toy(4, 1, &c);
        ex[2].label = 7;
        let e = train_cnn(c.clone(), &ex, &TrainOptions::default(), &NoProgress).unwrap_err();
        assert!(e.to_string().contains("example 2"), "{e}");
        assert!(train_cnn(c, &[], &TrainOptions::default(), &NoProgress).is_err());
    }
}

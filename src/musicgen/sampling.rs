//! Choosing the next token from a row of logits: argmax, or temperature,
//! top-k and top-p (nucleus) filtering followed by a draw, in that order
//! (transformers' warper order).

use rand::Rng;

use crate::error::{Error, Result};

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Argmax instead of a draw.
    pub greedy: bool,
    /// Logits are divided by this before the draw (> 0).
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p`
    /// (0 or 1: off).
    pub top_p: f64,
}

impl Default for Sampling {
    /// MusicGen's published defaults: sampling, top-k 250, temperature 1.
    fn default() -> Self {
        Self {
            greedy: false,
            temperature: 1.0,
            top_k: 250,
            top_p: 0.0,
        }
    }
}

impl Sampling {
    /// Refuses values that cannot sample.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::param(
                "temperature",
                format!("must be positive, got {}", self.temperature),
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(Error::param(
                "top_p",
                format!("must be in [0, 1], got {}", self.top_p),
            ));
        }
        Ok(())
    }

    /// The token for one row of logits.
    pub fn pick(&self, logits: &[f32], rng: &mut impl Rng) -> Result<u32> {
        if logits.iter().any(|v| v.is_nan()) {
            return Err(Error::Numeric {
                context: "sampling".into(),
                reason: "the logits contain NaN".into(),
            });
        }
        if self.greedy {
            return Ok(argmax(logits));
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.top_k > 0 {
            order.truncate(self.top_k.max(1));
        }
        let t = self.temperature;
        let top = logits[order[0]] as f64;
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i] as f64 - top) / t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.top_p > 0.0 && self.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    acc += p;
                    acc >= self.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            order.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut u = rng.random::<f64>() * total;
        for (p, &i) in probs.iter().zip(&order) {
            if u < *p {
                return Ok(i as u32);
            }
            u -= p;
        }
        Ok(*order.last().unwrap_or(&0) as u32)
    }
}

/// The index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn counts(s: &Sampling, logits: &[f32], n: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.pick(logits, &mut rng).unwrap() as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_is_argmax() {
        let s = Sampling {
            greedy: true,
            ..Sampling::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(s.pick(&[0.1, 3.0, 2.9, 3.0], &mut rng).unwrap(), 1);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_draw() {
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        let k2 = Sampling {
            top_k: 2,
            ..Sampling::default()
        };
        let c = counts(&k2, &logits, 4000);
        assert_eq!(c[2] + c[3], 0);
        // p(0) / p(1) = e within top-2
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((ratio - std::f64::consts::E).abs() < 0.3, "{ratio}");
        // softmax: 0.644, 0.237, 0.087, 0.032 -> top_p 0.7 keeps two
        let p = Sampling {
            top_k: 0,
            top_p: 0.7,
            ..Sampling::default()
        };
        let c = counts(&p, &logits, 2000);
        assert_eq!(c[2] + c[3], 0);
        assert!(c[1] > 0);
    }

    #[test]
    fn low_temperature_sharpens() {
        let logits = [1.0f32, 0.0];
        let cold = Sampling {
            temperature: 0.1,
            top_k: 0,
            ..Sampling::default()
        };
        let c = counts(&cold, &logits, 2000);
        assert!(c[1] < 5, "{c:?}");
        let hot = Sampling {
            temperature: 10.0,
            top_k: 0,
            ..Sampling::default()
        };
        let c = counts(&hot, &logits, 2000);
        assert!(c[1] > 800, "{c:?}");
    }

    #[test]
    fn bad_values_are_refused() {
        let s = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let e = Sampling::default()
            .pick(&[f32::NAN, 1.0], &mut rng)
            .unwrap_err();
        assert!(e.to_string().contains("NaN"));
    }
}

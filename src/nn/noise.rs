//! Sources of Gaussian noise: seeded (the same numbers on every device and
//! platform) or recorded (replaying another implementation's draws).

use std::collections::VecDeque;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Hands out standard-normal tensors.
pub trait NoiseSource: Send {
    /// A `[shape]` tensor of N(0, 1) values (f32) on `device`.
    fn noise(&mut self, shape: &[usize], device: &Device) -> Result<Tensor>;
    /// Where the stream is, for a saved run to pick up at the same draw;
    /// `None` for sources that cannot be resumed.
    fn position(&self) -> Option<u128> {
        None
    }
    /// Moves the stream to a `position` it reported before.
    fn seek(&mut self, _position: u128) -> Result<()> {
        Err(Error::Numeric {
            context: "noise".into(),
            reason: "this noise source cannot be resumed".into(),
        })
    }
}

/// Noise from a seeded ChaCha8 stream (Box-Muller), generated on the CPU so
/// that a seed gives the same latents on every device.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rng: ChaCha8Rng,
}

impl SeededNoise {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// `n` standard-normal values.
    pub fn values(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            // u1 in (0, 1] so that ln(u1) is finite
            let u1: f64 = 1.0 - self.rng.random::<f64>();
            let u2: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            out.push((r * a.cos()) as f32);
            out.push((r * a.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

impl NoiseSource for SeededNoise {
    fn noise(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        let n = shape.iter().product();
        let v = self.values(n);
        Tensor::from_vec(v, shape, device).map_err(|e| Error::Tensor {
            context: "noise".into(),
            source: e,
        })
    }

    fn position(&self) -> Option<u128> {
        Some(self.rng.get_word_pos())
    }

    fn seek(&mut self, position: u128) -> Result<()> {
        self.rng.set_word_pos(position);
        Ok(())
    }
}

/// Replays given tensors in order; asking for more than were recorded, or
/// for another shape, is an error.
#[derive(Debug, Default)]
pub struct RecordedNoise {
    queue: VecDeque<Tensor>,
}

impl RecordedNoise {
    /// Noise to hand out, first to last.
    pub fn new(tensors: Vec<Tensor>) -> Self {
        Self {
            queue: tensors.into(),
        }
    }

    /// How many tensors are left.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl NoiseSource for RecordedNoise {
    fn noise(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        let t = self.queue.pop_front().ok_or_else(|| Error::Numeric {
            context: "recorded noise".into(),
            reason: "asked for more noise than was recorded".into(),
        })?;
        if t.dims() != shape {
            return Err(Error::Numeric {
                context: "recorded noise".into(),
                reason: format!("recorded shape {:?}, asked for {shape:?}", t.dims()),
            });
        }
        t.to_dtype(DType::F32)
            .and_then(|t| t.to_device(device))
            .map_err(|e| Error::Tensor {
                context: "recorded noise".into(),
                source: e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_standard_normal_and_repeatable() {
        let a = SeededNoise::new(5).values(20_001);
        let b = SeededNoise::new(5).values(20_001);
        assert_eq!(a, b);
        assert_ne!(a, SeededNoise::new(6).values(20_001));
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn a_seeded_stream_continues_from_a_saved_position() {
        let mut a = SeededNoise::new(9);
        a.values(37);
        let at = a.position().unwrap();
        let next = a.values(10);
        let mut b = SeededNoise::new(9);
        b.seek(at).unwrap();
        assert_eq!(b.values(10), next);
        assert!(RecordedNoise::default().position().is_none());
        assert!(RecordedNoise::default().seek(0).is_err());
    }

    #[test]
    fn recorded_noise_checks_count_and_shape() {
        let t = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap();
        let mut r = RecordedNoise::new(vec![t.clone(), t]);
        let e = r.noise(&[2, 1], &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("shape"), "{e}");
        assert!(r.noise(&[1, 2], &Device::Cpu).is_ok());
        let e = r.noise(&[1, 2], &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("more noise"), "{e}");
    }
}

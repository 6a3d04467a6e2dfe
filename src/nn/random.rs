//! Random weights of any shape, keyed by tensor name, for benchmarks and
//! tests that need a model of real size without a checkpoint.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// Random weights keyed by tensor name: norm scales 1, biases 0, other
/// weights uniform in +-1/sqrt(fan_in).
#[derive(Debug, Clone, Copy)]
pub struct RandomWeights {
    /// Seed mixed into every tensor's stream.
    pub seed: u64,
}

impl RandomWeights {
    /// A `VarBuilder` handing out random tensors of whatever shape a model
    /// asks for.
    pub fn var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dims = shape.dims();
        let t = if name.ends_with("bias") || (dims.len() == 1 && !name.contains("norm")) {
            Tensor::zeros(dims, DType::F32, &Device::Cpu)?
        } else if dims.len() == 1 {
            Tensor::ones(dims, DType::F32, &Device::Cpu)?
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut h = xxhash_rust::xxh3::xxh3_64(name.as_bytes()) ^ self.seed;
            let n = shape.elem_count();
            // splitmix64: fast, and good enough for benchmark weights
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = h;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^= z >> 31;
                    (((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound) as f32
                })
                .collect();
            Tensor::from_vec(v, dims, &Device::Cpu)?
        };
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "random weights need a shape for `{name}`"
        )))
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

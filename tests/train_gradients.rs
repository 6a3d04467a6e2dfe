//! Gradient checks of the trainable UNet (the tiny fixture in the real SD
//! layout): every parameter tensor receives a non-zero gradient from the
//! training loss, and sampled gradients agree with central finite
//! differences computed in f64; the checkpointed (segment-recomputing)
//! backward gives the same gradients as the plain one.

use ragafusion::fsutil::read_json;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use ragafusion::diffusion::config::UnetConfig;
use ragafusion::diffusion::unet::Unet;
use ragafusion::diffusion::SchedulerConfig;
use ragafusion::nn::segments::Tape;
use ragafusion::nn::weights::WeightStore;
use ragafusion::train::{weighted_mse, NoiseSchedule, ParamSet, Prediction};

const TINY: &str = "tests/data/sd-tiny";

struct Problem {
    params: ParamSet,
    config: UnetConfig,
    x_t: Tensor,
    target: Tensor,
    ts: Vec<usize>,
    ctx: Tensor,
    weights: Vec<f64>,
}

fn problem() -> Problem {
    let dev = Device::Cpu;
    let dir = Path::new(TINY).join("unet");
    let config: UnetConfig = read_json(&dir.join("config.json")).unwrap();
    let store = WeightStore::open(&dir.join("diffusion_pytorch_model.safetensors"), &dev).unwrap();
    let tensors: HashMap<String, Tensor> = store.to_map();
    let params = ParamSet::from_tensors(&dir, tensors, None, DType::F32, 0, &dev).unwrap();
    let schedule = NoiseSchedule::new(&SchedulerConfig::sd15());
    let ts = vec![40, 650];
    let z0 = Tensor::randn(0f64, 1., (2, 4, 8, 8), &dev).unwrap();
    let eps = Tensor::randn(0f64, 1., (2, 4, 8, 8), &dev).unwrap();
    let x_t = schedule.add_noise(&z0, &eps, &ts).unwrap();
    let target = schedule
        .target(&z0, &eps, &ts, Prediction::Epsilon)
        .unwrap();
    let weights = schedule
        .loss_weights(&ts, Some(5.0), Prediction::Epsilon)
        .unwrap();
    let ctx = Tensor::randn(0f64, 1., (2, 7, config.cross_attention_dim), &dev).unwrap();
    Problem {
        params,
        config,
        x_t,
        target,
        ts,
        ctx,
        weights,
    }
}

impl Problem {
    /// The UNet in f64.
    fn unet(&self) -> Unet {
        Unet::new(
            &self.params.var_builder(DType::F64, &Device::Cpu),
            &self.config,
        )
        .unwrap()
    }

    fn t(&self) -> Tensor {
        let ts: Vec<f64> = self.ts.iter().map(|&t| t as f64).collect();
        Tensor::from_vec(ts, 2, &Device::Cpu).unwrap()
    }

    /// The training loss with the UNet computed in f64.
    fn loss(&self) -> Tensor {
        let out = self
            .unet()
            .forward(&self.x_t, &self.t(), &self.ctx)
            .unwrap();
        assert_eq!(out.dtype(), DType::F64);
        weighted_mse(&out, &self.target, &self.weights).unwrap()
    }
}

fn value(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

#[test]
fn every_unet_parameter_gets_a_gradient_matching_finite_differences() {
    let p = problem();
    let loss = p.loss();
    let grads = loss.backward().unwrap();
    p.params.check_all_used().unwrap();
    let n = p.params.names().len();
    assert!(n > 100, "{n} tensors");
    let mut missing = Vec::new();
    let mut grad_of = Vec::new();
    for (name, var) in p.params.names().iter().zip(p.params.vars()) {
        match grads.get(var.as_tensor()) {
            Some(g) => {
                let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                if g.iter().all(|&x| x == 0.0) {
                    missing.push(format!("{name} (all zero)"));
                }
                grad_of.push(g);
            }
            None => {
                missing.push(format!("{name} (none)"));
                grad_of.push(Vec::new());
            }
        }
    }
    assert!(missing.is_empty(), "no gradient for: {missing:?}");

    // finite differences on the largest-gradient element of a spread of
    // tensors: attention q/k/v/out, layer and group norms, convolutions,
    // time embedding, feed-forward, output layer
    let picks = [
        "conv_in.weight",
        "time_embedding.linear_1.weight",
        "down_blocks.0.resnets.0.norm1.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.norm1.weight",
        "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
        "mid_block.attentions.0.transformer_blocks.0.norm3.bias",
        "up_blocks.2.attentions.0.proj_out.weight",
        "up_blocks.0.upsamplers.0.conv.weight",
        "conv_out.bias",
    ];
    let mut checked = 0;
    for pick in picks {
        let i = p
            .params
            .names()
            .iter()
            .position(|n| n == pick)
            .unwrap_or_else(|| panic!("no tensor {pick}"));
        let var = &p.params.vars()[i];
        let g = &grad_of[i];
        let (k, &gk) = g
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let orig: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-3f32 * orig[k].abs().max(0.1);
        let eval = |w: f32| -> (f64, f64) {
            let mut v = orig.clone();
            v[k] = w;
            let actual = v[k] as f64;
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            (actual, value(&p.loss()))
        };
        let (w_plus, l_plus) = eval(orig[k] + h);
        let (w_minus, l_minus) = eval(orig[k] - h);
        var.set(&Tensor::from_vec(orig.clone(), var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        let fd = (l_plus - l_minus) / (w_plus - w_minus);
        let rel = (fd - gk as f64).abs() / fd.abs().max(gk.abs() as f64).max(1e-12);
        assert!(
            rel < 1e-3,
            "{pick}[{k}]: autograd {gk:e}, finite difference {fd:e}, relative {rel:e}"
        );
        checked += 1;
    }
    assert_eq!(checked, picks.len());
}

#[test]
fn checkpointed_backward_gives_every_parameter_the_plain_gradient() {
    let p = problem();
    let plain = p.loss().backward().unwrap();

    let unet = p.unet();
    let segs = unet.segments(&p.ctx);
    assert!(segs.len() > 20, "{} segments", segs.len());
    let tape = Tape::record(&segs, unet.segment_inputs(&p.x_t, &p.t()).unwrap()).unwrap();
    let leaf = Var::from_tensor(tape.output()).unwrap();
    let loss = weighted_mse(leaf.as_tensor(), &p.target, &p.weights).unwrap();
    assert!((value(&loss) - value(&p.loss())).abs() < 1e-12);
    let cot = loss.backward().unwrap();
    let cot = cot.get(leaf.as_tensor()).unwrap();
    let ck = tape.backward(&segs, cot, p.params.vars()).unwrap();

    let mut worst = (0.0f64, String::new());
    for (name, var) in p.params.names().iter().zip(p.params.vars()) {
        let a = plain.get(var.as_tensor()).unwrap();
        let b = ck
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no checkpointed gradient"));
        let scale = value(
            &a.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap(),
        );
        let d = value(
            &(a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap(),
        );
        let rel = d / scale.max(1e-30);
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    assert!(
        worst.0 < 1e-9,
        "largest relative difference {:e} in {}",
        worst.0,
        worst.1
    );
}

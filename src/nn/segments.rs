//! A model forward written as a chain of segments over numbered slots, so
//! that it can run plainly or with gradient checkpointing.
//!
//! Slots hold the values between segments: the first ones are the model's
//! inputs, and each segment reads some slots and appends its outputs. The
//! last slot is the model's output.
//!
//! Gradient checkpointing is a segmented vector-Jacobian product: the
//! forward runs detached and keeps only the slots; the backward re-runs the
//! segments in reverse, each with its input slots as fresh variables, and
//! differentiates `sum(output * cotangent)`. That yields the segment's
//! parameter gradients and the cotangents of its inputs. Peak memory holds
//! the slots plus one segment's activations instead of every activation.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

/// What a segment computes from the values of its input slots.
pub type SegmentFn<'a> = Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>> + 'a>;

/// One piece of a segmented forward.
pub struct Segment<'a> {
    /// The slots it reads, in the order `run` receives them.
    pub inputs: Vec<usize>,
    /// The computation; its outputs become the next slots.
    pub run: SegmentFn<'a>,
}

impl<'a> Segment<'a> {
    /// A segment reading `inputs`.
    pub fn new(inputs: Vec<usize>, run: impl Fn(&[Tensor]) -> Result<Vec<Tensor>> + 'a) -> Self {
        Self {
            inputs,
            run: Box::new(run),
        }
    }
}

impl std::fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("inputs", &self.inputs)
            .finish()
    }
}

fn gather(slots: &[Option<Tensor>], inputs: &[usize], k: usize) -> Result<Vec<Tensor>> {
    inputs
        .iter()
        .map(|&i| {
            slots.get(i).cloned().flatten().ok_or_else(|| {
                candle_core::Error::Msg(format!("segment {k} reads slot {i}, which is not set"))
            })
        })
        .collect()
}

/// Runs the segments on `inputs` with the ordinary autograd graph and
/// returns the last slot; a slot is dropped after its last reader.
pub fn run(segments: &[Segment], inputs: Vec<Tensor>) -> Result<Tensor> {
    let mut last_read = vec![0usize; inputs.len()];
    for (k, s) in segments.iter().enumerate() {
        for &i in &s.inputs {
            if i >= last_read.len() {
                last_read.resize(i + 1, 0);
            }
            last_read[i] = k;
        }
    }
    let mut slots: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
    for (k, s) in segments.iter().enumerate() {
        let outputs = (s.run)(&gather(&slots, &s.inputs, k)?)?;
        for &i in &s.inputs {
            if last_read[i] == k {
                slots[i] = None;
            }
        }
        slots.extend(outputs.into_iter().map(Some));
    }
    slots
        .pop()
        .flatten()
        .ok_or_else(|| candle_core::Error::Msg("segmented forward produced nothing".into()))
}

/// The slots of a detached forward, for [`Tape::backward`].
#[derive(Debug)]
pub struct Tape {
    slots: Vec<Tensor>,
    /// The first slot each segment wrote, and how many.
    written: Vec<(usize, usize)>,
    inputs: usize,
}

impl Tape {
    /// Runs the segments on `inputs` without an autograd graph, keeping
    /// every slot.
    pub fn record(segments: &[Segment], inputs: Vec<Tensor>) -> Result<Self> {
        let n_in = inputs.len();
        let mut slots: Vec<Option<Tensor>> = inputs.into_iter().map(|t| Some(t.detach())).collect();
        let mut written = Vec::with_capacity(segments.len());
        for (k, s) in segments.iter().enumerate() {
            let outputs = (s.run)(&gather(&slots, &s.inputs, k)?)?;
            written.push((slots.len(), outputs.len()));
            slots.extend(outputs.into_iter().map(|t| Some(t.detach())));
        }
        Ok(Self {
            slots: slots.into_iter().flatten().collect(),
            written,
            inputs: n_in,
        })
    }

    /// The model's output (the last slot), detached.
    pub fn output(&self) -> &Tensor {
        self.slots.last().expect("a tape holds its inputs")
    }

    /// Gradients of `sum(output * cotangent)` for `vars`: re-runs the
    /// segments in reverse, each once. The model inputs get no gradient.
    /// `segments` must be those the tape was recorded with.
    pub fn backward(
        &self,
        segments: &[Segment],
        cotangent: &Tensor,
        vars: &[Var],
    ) -> Result<GradStore> {
        if segments.len() != self.written.len() {
            candle_core::bail!(
                "tape of {} segments replayed with {}",
                self.written.len(),
                segments.len()
            );
        }
        let mut cot: Vec<Option<Tensor>> = vec![None; self.slots.len()];
        cot[self.slots.len() - 1] = Some(cotangent.detach());
        let mut sums: Vec<Option<Tensor>> = vec![None; vars.len()];
        for (k, s) in segments.iter().enumerate().rev() {
            let (first, count) = self.written[k];
            let out_cot: Vec<(usize, Tensor)> = (0..count)
                .filter_map(|j| cot[first + j].take().map(|c| (j, c)))
                .collect();
            if out_cot.is_empty() {
                continue;
            }
            let mut leaves = Vec::with_capacity(s.inputs.len());
            let mut args = Vec::with_capacity(s.inputs.len());
            for &i in &s.inputs {
                if i < self.inputs {
                    leaves.push(None);
                    args.push(self.slots[i].clone());
                } else {
                    let v = Var::from_tensor(&self.slots[i])?;
                    args.push(v.as_tensor().clone());
                    leaves.push(Some(v));
                }
            }
            let outputs = (s.run)(&args)?;
            let mut surrogate: Option<Tensor> = None;
            for (j, c) in out_cot {
                let o = outputs.get(j).ok_or_else(|| {
                    candle_core::Error::Msg(format!("segment {k} lost output {j} on replay"))
                })?;
                // half-precision products are summed in f32
                let dt = match o.dtype() {
                    DType::F16 | DType::BF16 => DType::F32,
                    other => other,
                };
                let term = o.to_dtype(dt)?.mul(&c.to_dtype(dt)?)?.sum_all()?;
                surrogate = Some(match surrogate {
                    Some(acc) => (acc + term)?,
                    None => term,
                });
            }
            let grads = match surrogate {
                Some(t) => t.backward()?,
                None => continue,
            };
            for (sum, var) in sums.iter_mut().zip(vars) {
                if let Some(g) = grads.get(var.as_tensor()) {
                    let g = g.detach();
                    *sum = Some(match sum.take() {
                        Some(acc) => (acc + g)?,
                        None => g,
                    });
                }
            }
            for (&i, leaf) in s.inputs.iter().zip(&leaves) {
                let Some(g) = leaf.as_ref().and_then(|v| grads.get(v.as_tensor())) else {
                    continue;
                };
                let g = g.detach();
                cot[i] = Some(match cot[i].take() {
                    Some(acc) => (acc + g)?,
                    None => g,
                });
            }
        }
        let mut store = GradStore::default();
        for (sum, var) in sums.into_iter().zip(vars) {
            if let Some(g) = sum {
                store.insert(var.as_tensor(), g);
            }
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// y = tanh(W2 · tanh(W1 · x)) + W1 · x, written as three segments
    /// with a fan-out (slot 1 read twice) and a shared weight.
    fn chain<'a>(w1: &'a Var, w2: &'a Var) -> Vec<Segment<'a>> {
        vec![
            Segment::new(vec![0], move |a| Ok(vec![w1.as_tensor().matmul(&a[0])?])),
            Segment::new(vec![1], move |a| {
                Ok(vec![w2.as_tensor().matmul(&a[0].tanh()?)?.tanh()?])
            }),
            Segment::new(vec![2, 1], move |a| Ok(vec![(&a[0] + &a[1])?])),
        ]
    }

    fn vars(dev: &Device) -> (Var, Var, Tensor) {
        let w1 = Var::from_tensor(&Tensor::randn(0f64, 1., (3, 4), dev).unwrap()).unwrap();
        let w2 = Var::from_tensor(&Tensor::randn(0f64, 1., (3, 3), dev).unwrap()).unwrap();
        let x = Tensor::randn(0f64, 1., (4, 2), dev).unwrap();
        (w1, w2, x)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn checkpointed_gradients_equal_the_plain_ones() {
        let dev = Device::Cpu;
        let (w1, w2, x) = vars(&dev);
        let segs = chain(&w1, &w2);
        let cot = Tensor::randn(0f64, 1., (3, 2), &dev).unwrap();

        let y = run(&segs, vec![x.clone()]).unwrap();
        let plain = (&y * &cot).unwrap().sum_all().unwrap().backward().unwrap();

        let tape = Tape::record(&segs, vec![x]).unwrap();
        let diff = max_abs_diff(tape.output(), &y);
        assert!(diff < 1e-12, "outputs differ by {diff}");
        let ck = tape
            .backward(&segs, &cot, &[w1.clone(), w2.clone()])
            .unwrap();
        for w in [&w1, &w2] {
            let a = plain.get(w.as_tensor()).unwrap();
            let b = ck.get(w.as_tensor()).unwrap();
            let d = max_abs_diff(a, b);
            assert!(d < 1e-10, "gradients differ by {d}");
        }
    }

    #[test]
    fn a_segment_reading_an_unset_slot_is_an_error() {
        let dev = Device::Cpu;
        let (w1, _, x) = vars(&dev);
        let segs = vec![Segment::new(vec![5], move |a| {
            Ok(vec![w1.as_tensor().matmul(&a[0])?])
        })];
        let e = run(&segs, vec![x]).unwrap_err().to_string();
        assert!(e.contains("slot 5"), "{e}");
    }

    #[test]
    fn replaying_with_other_segments_is_an_error() {
        let dev = Device::Cpu;
        let (w1, w2, x) = vars(&dev);
        let segs = chain(&w1, &w2);
        let tape = Tape::record(&segs, vec![x]).unwrap();
        let cot = Tensor::ones((3, 2), DType::F64, &dev).unwrap();
        assert!(tape
            .backward(&segs[..2], &cot, std::slice::from_ref(&w1))
            .is_err());
    }
}

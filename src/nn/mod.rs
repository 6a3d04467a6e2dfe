//! Neural-network infrastructure shared by every model family (Stable
//! Diffusion, MusicGen, the raga classifiers, training): tensor stores,
//! differentiable layers, segmented forwards, random weights.
//!
//! ```text
//! weights.rs      strict tensor stores (safetensors, PyTorch .bin), writing
//! layers.rs       differentiable building blocks (linear, conv, norms,
//!                 attention, ResNet blocks, resampling)
//! conv_cpu.rs     CPU stride-1 convolution with gradients (im2col + gemm)
//! winograd.rs     its 3x3 forward by Winograd F(2x2, 3x3)
//! disjoint.rs     an output pointer shared by tasks writing disjoint parts
//! strided.rs      one-thread matrix products over strided views (gemm)
//! attention_cpu.rs  fused CPU attention and its gradients (no score matrix)
//! vecmath.rs      vectorised row kernels (max, exp) with AVX2 dispatch
//! channel_ops.rs  per-channel bias / affine with fast gradients
//! ops.rs          3x3 convolution and 2x2 max pooling with exact gradients
//! segments.rs     segmented forwards, gradient checkpointing
//! random.rs       seeded random weights keyed by tensor name
//! noise.rs        seeded (device-independent) and recorded Gaussian noise
//! params.rs       trainable f32 master weights plus frozen tensors, by
//!                 name, as a VarBuilder backend (full or LoRA training)
//! lora.rs         low-rank adapters: targets, initialisation, merging
//! ```

pub mod attention_cpu;
pub mod channel_ops;
pub mod conv_cpu;
mod disjoint;
pub mod layers;
pub mod lora;
pub mod noise;
pub mod ops;
pub mod params;
pub mod random;
pub mod segments;
mod strided;
pub mod vecmath;
pub mod weights;
mod winograd;

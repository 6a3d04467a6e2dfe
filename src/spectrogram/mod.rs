//! Riffusion-compatible mel spectrograms: parameters, STFT, mel filterbank,
//! Griffin-Lim, the image mapping and its EXIF metadata.
//!
//! Layering: [`params`] <- [`stft`], [`mel`], [`griffin_lim`] (maths on
//! slices) <- [`segmented`] (long spectrograms in bounded memory) <-
//! [`converter`] (audio <-> amplitudes) <- [`image`] (pixels and PNG
//! files).

pub mod converter;
pub mod exif;
pub mod griffin_lim;
pub mod image;
pub mod mel;
pub mod metrics;
pub mod params;
pub mod segmented;
pub mod stft;
pub mod transpose;

pub use converter::{
    InversionOptions, InversionSettings, MelInverse, Quality, SpectrogramConverter,
};
pub use griffin_lim::{GriffinLimOptions, PhaseInit};
pub use image::{read_png, write_png, LoadedImage, SpectrogramImage};
pub use params::{Preset, SpectrogramParams};

/// Mel amplitudes for one or two channels.
#[derive(Debug, Clone, PartialEq)]
pub struct MelSpectrogram {
    /// Mel bins (image height).
    pub num_mels: usize,
    /// STFT frames (image width).
    pub num_frames: usize,
    /// Per channel, `num_mels * num_frames` values, mel-major:
    /// `[m * num_frames + t]`.
    pub channels: Vec<Vec<f32>>,
}

//! # ragafusion
//!
//! Carnatic music from text captions with a Riffusion-style spectrogram
//! diffusion model, and measures of whether the result follows the raga.
//!
//! This crate is the library behind the `ragafusion` command. Its lowest
//! layer converts audio to Riffusion-compatible mel-spectrogram images and
//! back ([`spectrogram`]), on top of audio decoding and encoding
//! ([`audio`]). [`captions`] holds the raga / tala / composer vocabulary,
//! [`corpus`] renders labelled clips and prepares datasets, [`raga`]
//! tracks pitch and tonic, measures adherence and classifies ragas (with a
//! built-in CNN), and [`plot`] draws the PNG charts. [`diffusion`] and
//! [`musicgen`] generate; [`backend`] puts both behind one trait, which
//! [`compare`] runs over prompts and seeds to measure and report them.
//!
//! ```no_run
//! use ragafusion::audio::{read_audio_as, ChannelLayout};
//! use ragafusion::spectrogram::{write_png, SpectrogramConverter, SpectrogramParams};
//!
//! # fn main() -> ragafusion::Result<()> {
//! let params = SpectrogramParams::default();
//! let audio = read_audio_as("clip.wav".as_ref(), params.sample_rate_hz, ChannelLayout::Mono)?;
//! let converter = SpectrogramConverter::new(params.clone())?;
//! let (image, max_value) = converter.image_from_audio(&audio)?;
//! write_png("clip.png".as_ref(), &image, &params, max_value)?;
//! # Ok(())
//! # }
//! ```

pub mod audio;
pub mod backend;
pub mod batch;
pub mod captions;
pub mod compare;
pub mod corpus;
pub mod diffusion;
pub mod error;
pub mod fsutil;
pub mod musicgen;
pub mod plot;
pub mod progress;
pub mod raga;
pub mod spectrogram;
pub mod train;

pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};

//! # ragafusion
//!
//! Carnatic music from text captions with a Riffusion-style spectrogram
//! diffusion model, and measures of whether the result follows the raga.
//!
//! This crate is the library behind the `ragafusion` command. The types a
//! caller needs are re-exported here; everything else lives in modules.
//!
//! Make a clip (here with the tiny test pipeline; leave `dir` out for the
//! shipped model):
//!
//! ```
//! use ragafusion::{Engine, GenerateRequest, ModelSpec, NoProgress};
//!
//! # fn main() -> ragafusion::Result<()> {
//! let engine = Engine::load(&ModelSpec {
//!     dir: Some("tests/data/sd-tiny".into()),
//!     ..ModelSpec::default()
//! })?;
//! let request = GenerateRequest {
//!     steps: Some(2),
//!     ..GenerateRequest::new("kalyani raga alapana on violin", 42)
//! };
//! let clip = engine.generate(&request, &NoProgress)?.remove(0);
//! assert!((clip.audio.duration_s() - 5.12).abs() < 0.05);
//! let wav = ragafusion::write_outputs(&std::env::temp_dir().join("ragafusion-doc"), &clip)?;
//! # assert!(wav.is_file());
//! # Ok(())
//! # }
//! ```
//!
//! The layers, lowest first (each uses only those below it):
//!
//! - [`audio`] decoding, resampling and writing; [`spectrogram`]
//!   Riffusion-compatible mel images and back; [`captions`] the raga /
//!   tala / composer vocabulary; [`plot`] PNG charts.
//! - [`nn`] tensor stores, layers and segments shared by the models;
//!   [`diffusion`] Stable Diffusion and [`musicgen`] MusicGen;
//!   [`raga`] pitch, tonic, adherence and raga classifiers; [`corpus`]
//!   rendered and prepared datasets.
//! - [`engine`] one request type, one generation loop per backend, output
//!   writing and a job queue; [`train`] fine-tuning; [`compare`]
//!   experiments over backends, prompts and seeds.
//! - [`video`] ffmpeg and ffprobe as child processes (probe, decode, mux).
//! - [`server`] the web studio and its JSON API.
//!
//! Converting audio to a spectrogram image:
//!
//! ```no_run
//! use ragafusion::audio::{read_audio_as, ChannelLayout};
//! use ragafusion::spectrogram::write_png;
//! use ragafusion::{SpectrogramConverter, SpectrogramParams};
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
pub mod batch;
pub mod captions;
pub mod choice;
pub mod compare;
pub mod corpus;
pub mod diffusion;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod limits;
pub mod memory;
pub mod musicgen;
pub mod nn;
pub mod overlay;
pub mod panic_guard;
pub mod plot;
pub mod progress;
pub mod raga;
pub mod server;
pub mod spectrogram;
pub mod train;
pub mod video;

pub use captions::Vocabulary;
pub use choice::Choice;
pub use engine::{
    write_outputs, Backend, Engine, GenerateRequest, Generated, JobQueue, ModelSpec,
    MusicgenOptions, Task,
};
pub use error::{Error, Result};
pub use progress::{CancelFlag, NoProgress, Progress};
pub use spectrogram::{SpectrogramConverter, SpectrogramParams};

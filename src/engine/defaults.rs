//! Every default of a generation request, in one place: the command line,
//! `compare` and the library's [`GenerateRequest::new`] all read these.
//!
//! A model's own `ragafusion.json` (sampler, steps, guidance) comes
//! before [`SAMPLING`]; flags and request fields come before both.
//!
//! [`GenerateRequest::new`]: super::GenerateRequest::new

use crate::diffusion::{SampleSettings, SamplerKind};
use crate::spectrogram::Quality;

/// Seed of every random draw when none is given.
pub const SEED: u64 = 42;

/// Sampler settings for diffusion models without their own: riffusion's
/// (PNDM, 50 steps, guidance 7).
pub const SAMPLING: SampleSettings = SampleSettings {
    sampler: SamplerKind::Pndm,
    steps: 50,
    guidance: 7.0,
};

/// Length of one clip, seconds: riffusion's 512 columns at 10 ms, and
/// MusicGen's length when none is asked for.
pub const CLIP_SECONDS: f64 = 5.12;

/// Columns shared by consecutive long-form windows or joined clips, ms.
pub const OVERLAP_MS: u32 = 1280;

/// How much of an input audio-to-audio re-generates (riffusion's default).
pub const STRENGTH: f64 = 0.75;

/// Clips from one end of an interpolation to the other.
pub const INTERPOLATION_CLIPS: usize = 5;

/// Spectrogram-to-audio trade-off.
pub const QUALITY: Quality = Quality::Fast;

/// Seconds between saves of a denoising loop's state (finished clips are
/// saved as they finish, and the current step when a run is cancelled).
pub const CHECKPOINT_EVERY_S: f64 = 30.0;

/// Fade-in of a video's music, seconds.
pub const FADE_IN_S: f64 = 2.0;

/// Fade-out of a video's music, seconds.
pub const FADE_OUT_S: f64 = 3.0;

/// Device name of a model run.
pub const DEVICE: &str = "cpu";

/// Compute dtype name of a model run.
pub const DTYPE: &str = "f32";

/// MusicGen's classifier-free guidance scale (audiocraft's).
pub const MUSICGEN_GUIDANCE: f64 = 3.0;

/// MusicGen's top-k token sampling (audiocraft's).
pub const MUSICGEN_TOP_K: usize = 250;

/// MusicGen's top-p token sampling; 0 is off.
pub const MUSICGEN_TOP_P: f64 = 0.0;

/// MusicGen's sampling temperature.
pub const MUSICGEN_TEMPERATURE: f64 = 1.0;

/// The longest stretch MusicGen sees at once, seconds (its training
/// length).
pub const MUSICGEN_WINDOW_S: f64 = 30.0;

/// New seconds per later MusicGen window.
pub const MUSICGEN_STRIDE_S: f64 = 18.0;

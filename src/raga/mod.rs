//! Raga analysis: pitch tracking (and, to come, tonic, features,
//! adherence metrics, classifiers).

pub mod pitch;

pub use pitch::{pyin, PitchTrack, PyinParams};

//! Raga analysis: pitch tracking, tonic estimation, tonic-relative
//! features and adherence measures (classifiers to come).

pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod knn;
pub mod pitch;
pub mod tonic;

pub use pitch::{pyin, PitchTrack, PyinParams};
pub use tonic::{estimate_tonic, TonicEstimate};

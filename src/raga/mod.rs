//! Raga analysis: pitch tracking, tonic estimation, tonic-relative
//! features and adherence measures and two raga classifiers.

pub mod adherence;
pub mod analyze;
pub mod classifier;
pub mod cnn;
pub mod cnn_train;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod figure;
pub mod fused;
pub mod grammar;
pub mod inspect;
pub mod jobs;
pub mod knn;
pub mod melody;
pub mod pitch;
pub mod pitch_image;
pub mod rhythm;
pub mod tonic;
pub mod verdict;

pub use pitch::{pyin, PitchTrack, PyinParams};
pub use tonic::{estimate_tonic, TonicEstimate};
pub use verdict::{PitchedContent, Verdict};

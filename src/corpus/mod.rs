//! The Carnatic corpus: labelled synthetic renders and dataset preparation
//! from recordings.

pub mod metadata;
pub mod prepare;
pub mod synth;
pub mod synth_set;

//! The Carnatic corpus: labelled synthetic renders and (later) dataset
//! preparation from recordings.

pub mod synth;
pub mod synth_set;

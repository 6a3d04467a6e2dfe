//! PNG charts: a raster [`canvas`] with bitmap text, and [`charts`]
//! (confusion matrices, bars) built on it.

pub mod canvas;
pub mod charts;

pub use canvas::{heat, Canvas, Rgb};

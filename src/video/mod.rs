//! Video files through ffmpeg and ffprobe (Debian's `ffmpeg` package),
//! run as child processes with argument lists: what a video holds, its
//! sound as samples, and a new sound track muxed beside its picture.

mod ffmpeg;

pub use ffmpeg::{container_for, file_arg, Container, Probe, Tools, PACKAGE};

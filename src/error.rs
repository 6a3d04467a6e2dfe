//! The library's error type.
//!
//! Every fallible library function returns [`Result`]. Variants carry the
//! file and the field at fault so that a user reading the message knows what
//! to fix; the CLI adds context on top with `anyhow`.

use std::path::PathBuf;

/// Errors raised by the ragafusion library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed at the operating-system level.
    #[error("{path}: {cause}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error (shown in the message, so not chained
        /// as a source).
        cause: std::io::Error,
    },

    /// An audio file could not be decoded.
    #[error("{path}: cannot decode audio: {reason}")]
    AudioDecode {
        /// The file involved.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },

    /// Audio data is unusable (empty, non-finite samples, bad channel layout).
    #[error("{context}: invalid audio: {reason}")]
    InvalidAudio {
        /// The file or buffer the audio came from.
        context: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A spectrogram image could not be read or does not fit the parameters.
    #[error("{path}: invalid spectrogram image: {reason}")]
    InvalidImage {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// EXIF metadata is present but malformed.
    #[error("{context}: invalid EXIF data: {reason}")]
    InvalidExif {
        /// The file or buffer involved.
        context: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A parameter value is out of range or inconsistent with another.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The parameter's name, as spelled in the API or CLI.
        field: &'static str,
        /// Why the value was refused.
        reason: String,
    },

    /// A name (raga, tala, composer, ...) is not in the vocabulary.
    #[error("unknown {kind} `{name}`{}", suggest(suggestions))]
    UnknownName {
        /// What kind of name: "raga", "tala", ...
        kind: &'static str,
        /// The name as given.
        name: String,
        /// The nearest known names, closest first.
        suggestions: Vec<String>,
    },

    /// A data file (captions, metadata, labels) is malformed.
    #[error("{file}: {reason}")]
    InvalidData {
        /// The file (or embedded data set) involved.
        file: String,
        /// What is wrong, naming the entry and field.
        reason: String,
    },

    /// Resampling failed.
    #[error("resampling failed: {0}")]
    Resample(String),

    /// A tensor computation failed (shape mismatch, out of memory, ...);
    /// the tensor library's error is kept as the source.
    #[error("{context}: tensor operation failed")]
    Tensor {
        /// What was being computed.
        context: String,
        /// The tensor library's error.
        #[source]
        source: candle_core::Error,
    },

    /// Numbers went wrong without a tensor library error: NaN or infinite
    /// values, a shape or count that a step cannot use.
    #[error("{context}: {reason}")]
    Numeric {
        /// What was being computed.
        context: String,
        /// What is wrong with the numbers.
        reason: String,
    },

    /// A model checkpoint file is missing, unreadable or does not match its
    /// config.
    #[error("{file}: {reason}")]
    Checkpoint {
        /// The file (or folder) at fault.
        file: PathBuf,
        /// What is wrong, naming the tensor or key.
        reason: String,
    },

    /// An error inside a named part of a larger job (a backend of an
    /// experiment): the part, then the cause as the source.
    #[error("{context}")]
    Within {
        /// The part at fault, e.g. `exp.toml: backend[1] (`mg`)`.
        context: String,
        /// What went wrong there.
        #[source]
        source: Box<Error>,
    },

    /// A video file cannot be used (unreadable, no picture, no frames).
    #[error("{path}: {reason}")]
    InvalidVideo {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An external program (ffmpeg, ffprobe) is missing or failed.
    #[error("{program}: {reason}")]
    Tool {
        /// The program.
        program: &'static str,
        /// What went wrong, with what to install when it is missing.
        reason: String,
    },

    /// A long job was cancelled through its progress callback.
    #[error("cancelled")]
    Cancelled,

    /// A job queue is full.
    #[error("{waiting} jobs are already waiting; try again later")]
    QueueFull {
        /// Jobs waiting.
        waiting: usize,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    /// Builds an [`Error::Tensor`] from a candle error and what was being
    /// computed.
    pub fn tensor(context: impl Into<String>, source: candle_core::Error) -> Self {
        Error::Tensor {
            context: context.into(),
            source,
        }
    }

    /// Builds an [`Error::Numeric`].
    pub fn numeric(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Numeric {
            context: context.into(),
            reason: reason.into(),
        }
    }

    /// The message with every source after it, joined by `: ` (what the
    /// command line prints), for callers that keep errors as text.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }

    /// Builds an [`Error::Checkpoint`] for `file`.
    pub fn checkpoint(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            file: file.into(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::InvalidData`] for the data file `file`.
    pub fn invalid_data(file: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::InvalidData {
            file: file.display().to_string(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::InvalidParameter`].
    pub fn param(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            field,
            reason: reason.into(),
        }
    }
}

/// Wraps a candle error as [`Error::Tensor`] with what was being computed:
/// `op.map_err(terr("VAE decode"))?`.
pub(crate) fn terr<C: std::fmt::Display>(context: C) -> impl Fn(candle_core::Error) -> Error {
    move |source| Error::Tensor {
        context: context.to_string(),
        source,
    }
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", names.join(", "))
    }
}

/// The library's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

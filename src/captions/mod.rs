//! Caption vocabulary and templates: ragas (the 72 melakartas by rule plus
//! janya ragas from data), talas, composers, instruments, segment types,
//! with name lookup that folds spellings and suggests near names, and a
//! search for pickers.
//!
//! The data lives in the repository's `captions/` folder and is built into
//! the binary; [`Vocabulary::load_dir`] reads an edited copy.

pub mod caption;
pub mod fold;
pub mod indic;
pub mod sampler;
pub mod search;
pub mod shruti;
pub mod swara;
pub mod templates;
pub mod vocab;

pub use swara::{melakarta_scale, Note, Swara};
pub use templates::{stable_hash, CaptionFields, Template};
pub use vocab::{
    Anga, Composer, Instrument, Percussion, Raga, Role, SegmentType, Tala, Vocabulary,
};

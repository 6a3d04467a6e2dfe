//! An analysis job: a clip (audio or spectrogram PNG) through the built-in
//! raga ear, written as a labelled figure and the facts as JSON.

use std::path::{Path, PathBuf};

use crate::captions::Vocabulary;
use crate::error::Result;
use crate::fsutil::{create_dir, write_bytes_atomic, write_json_atomic};
use crate::progress::Progress;
use crate::raga::classifier::Classifier;
use crate::raga::inspect::{inspect_file, InspectOptions};

/// The figure's file name in a job's folder.
pub const FIGURE_FILE: &str = "analysis.png";
/// The facts' file name in a job's folder.
pub const FACTS_FILE: &str = "analysis.json";

/// What to analyse and how.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeRequest {
    /// Audio file or spectrogram PNG.
    pub input: PathBuf,
    /// The classifier folder; the built-in raga ear when `None`.
    pub model: Option<PathBuf>,
    /// Tonic, Hz, the options of [`inspect_file`].
    pub options: InspectOptions,
}

/// Analyses `request.input` into `out_dir`, writing [`FIGURE_FILE`] and
/// [`FACTS_FILE`]; returns both paths.
pub fn analyze_into(
    request: &AnalyzeRequest,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>> {
    progress.start(1, "analysing");
    let classifier = Classifier::load_or_builtin(request.model.as_deref())?;
    let found = inspect_file(
        &request.input,
        &classifier,
        Vocabulary::builtin(),
        &request.options,
    )?;
    create_dir(out_dir)?;
    let figure = out_dir.join(FIGURE_FILE);
    let facts = out_dir.join(FACTS_FILE);
    write_bytes_atomic(&figure, &found.figure_png)?;
    let mut json = found.json(Path::new(FIGURE_FILE), Path::new(FIGURE_FILE))?;
    json["file"] = serde_json::json!(request.input.file_name().map(|n| n.to_string_lossy()));
    json["cut_from_s"] = serde_json::json!(found.cut_from_s);
    write_json_atomic(&facts, &json)?;
    progress.advance(1);
    Ok(vec![figure, facts])
}

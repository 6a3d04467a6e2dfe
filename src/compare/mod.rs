//! Model comparison experiments: backends x prompts x seeds, every clip
//! measured for raga adherence, judged by both raga classifiers and
//! compared with the reference clips; results as CSV, JSON and a
//! self-contained HTML report.
//!
//! [`experiment`] reads the experiment file, [`run`] makes and measures
//! the clips (resumable), [`analysis`] measures one clip, [`summary`]
//! turns the clips into per-backend results, [`metrics`] holds the maths
//! and [`report`] writes the outputs.

pub mod analysis;
pub mod experiment;
pub mod metrics;
pub mod report;
pub mod results;
pub mod run;
pub mod setup;
pub mod summary;

pub use experiment::{load_experiment, Experiment, Resolved};
pub use run::{clip_request, load_engine, run_experiment, ClipRecord, RunOutput};

use std::path::Path;

use crate::captions::Vocabulary;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::raga::classifier::Classifier;
use analysis::Judges;
use experiment::BackendSpec;
use results::{JudgesInfo, Results};
use summary::{knn_verdicts, summarise, ClipResult};

/// Loads the judges an experiment names: its CNN folder or the built-in
/// CNN, and its kNN folder when it gives one.
pub fn load_judges(exp: &Resolved) -> Result<(Judges, JudgesInfo)> {
    let spec = &exp.experiment.classifiers;
    let within = |field: &str| {
        let context = format!("{}: classifiers.{field}", exp.file.display());
        move |e: Error| Error::Within {
            context,
            source: Box::new(e),
        }
    };
    let cnn =
        match spec
            .cnn
            .as_deref()
            .map_or_else(
                || Classifier::builtin_cnn_model().map(Classifier::Cnn),
                Classifier::load,
            )
            .map_err(within("cnn"))?
        {
            Classifier::Cnn(m) => m,
            Classifier::Knn(_) => return Err(Error::invalid_data(
                &exp.file,
                "classifiers.cnn: that folder holds a kNN classifier; name it as classifiers.knn",
            )),
            other @ (Classifier::Grammar(_) | Classifier::Fused(_)) => {
                return Err(Error::invalid_data(
                    &exp.file,
                    format!(
                        "classifiers.cnn: that folder holds a {} classifier, not a CNN",
                        other.kind()
                    ),
                ))
            }
        };
    let knn =
        match spec
            .knn
            .as_deref()
            .map(Classifier::load)
            .transpose()
            .map_err(within("knn"))?
        {
            None => None,
            Some(Classifier::Knn(m)) => Some(m),
            Some(Classifier::Cnn(_)) => return Err(Error::invalid_data(
                &exp.file,
                "classifiers.knn: that folder holds a CNN classifier; name it as classifiers.cnn",
            )),
            Some(other @ (Classifier::Grammar(_) | Classifier::Fused(_))) => {
                return Err(Error::invalid_data(
                    &exp.file,
                    format!(
                        "classifiers.knn: that folder holds a {} classifier, not a kNN",
                        other.kind()
                    ),
                ))
            }
        };
    let reference = exp.reference().map(|b| b.name.clone());
    let info = JudgesInfo {
        cnn: spec
            .cnn
            .as_ref()
            .map_or("built-in".into(), |p| p.display().to_string()),
        cnn_ragas: cnn.config.ragas.len(),
        knn: match (&spec.knn, &reference) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(r)) => format!("fitted on the `{r}` clips (which it judges leave-one-out)"),
            (None, None) => "none".into(),
        },
        reference,
    };
    Ok((Judges { cnn, knn }, info))
}

/// Runs the experiment (resuming what is already in `out`), summarises it
/// and writes `results.csv`, `summary.csv`, `results.json`, `charts/` and
/// `report.html` into `out`.
pub fn compare(
    exp: &Resolved,
    out: &Path,
    vocab: &Vocabulary,
    load: &dyn Fn(&BackendSpec) -> Result<Engine>,
    progress: &dyn Progress,
) -> Result<Results> {
    let (judges, info) = load_judges(exp)?;
    let run = run_experiment(exp, out, &judges, vocab, load, progress)?;
    let verdicts = knn_verdicts(&run.clips, judges.knn.as_ref(), info.reference.as_deref())?;
    let clips: Vec<ClipResult> = run
        .clips
        .into_iter()
        .zip(verdicts)
        .map(|(record, knn_ranked)| ClipResult { record, knn_ranked })
        .collect();
    let backends = summarise(
        &clips,
        &run.backends,
        info.reference.as_deref(),
        &judges.cnn.config.ragas,
    )?;
    let results = Results::new(exp, info, run.backends, backends, &clips);
    results::write_results(out, &results)?;
    report::write_report(out, &results)?;
    Ok(results)
}

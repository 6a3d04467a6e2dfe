//! `compare EXPERIMENT.toml --out DIR`: run the experiment's setup steps
//! (each once per output folder), then make, measure and report every
//! backend's clips (docs/experiments.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::captions::Vocabulary;
use ragafusion::compare::setup::run_setup;
use ragafusion::compare::{compare as run_compare, load_engine, load_experiment};

use super::progress_bar::Bar;

/// Arguments of `compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The experiment file (TOML: backends, prompts, seeds, classifiers,
    /// setup steps; docs/experiments.md).
    experiment: PathBuf,
    /// Output folder: clips/, results.csv, summary.csv, results.json,
    /// charts/, report.html. A rerun into the same folder keeps finished
    /// clips and makes only the missing ones.
    #[arg(long)]
    out: PathBuf,
    /// Skip the setup steps (when what they build is already in place).
    #[arg(long)]
    no_setup: bool,
}

/// Runs `compare`.
pub fn compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    ragafusion::fsutil::create_dir(&a.out)?;
    let out = std::path::absolute(&a.out)?;
    let vocab = Vocabulary::builtin();
    let exp = load_experiment(&a.experiment, &out, vocab)?;
    let bar = Bar::new();
    if !a.no_setup {
        let exe = std::env::current_exe().context("finding the ragafusion executable")?;
        run_setup(&exp, &out, &exe, &bar)?;
    }
    let results = run_compare(&exp, &out, vocab, &load_engine, &bar)?;
    println!("{}", results.table());
    println!("{}", out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

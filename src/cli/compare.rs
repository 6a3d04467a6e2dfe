//! `compare EXPERIMENT.toml --out DIR`: run the experiment's setup steps
//! (each once per output folder), then make, measure and report every
//! backend's clips (docs/experiments.md).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use clap::Args;
use ragafusion::captions::{stable_hash, Vocabulary};
use ragafusion::compare::{compare as run_compare, load_engine, load_experiment};
use ragafusion::fsutil::write_json_atomic;

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

/// File recording which setup steps finished, by a hash of their
/// arguments.
const SETUP_DONE: &str = "setup-done.json";

/// Runs each setup step that has not finished before, with this program,
/// in `dir` (the experiment's folder).
fn run_setup(steps: &[Vec<String>], dir: &Path, out: &Path) -> anyhow::Result<()> {
    let done_file = out.join(SETUP_DONE);
    let mut done: Vec<String> = std::fs::read_to_string(&done_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let exe = std::env::current_exe().context("finding the ragafusion executable")?;
    for (i, args) in steps.iter().enumerate() {
        let key = format!("{:016x}", stable_hash(&args.join("\u{1f}")));
        if done.contains(&key) {
            continue;
        }
        eprintln!(
            "setup step {}/{}: ragafusion {}",
            i + 1,
            steps.len(),
            args.join(" ")
        );
        let status = Command::new(&exe)
            .args(args)
            .current_dir(dir)
            .status()
            .with_context(|| format!("starting setup step {i}"))?;
        if !status.success() {
            bail!(
                "setup[{i}] (`ragafusion {}`) failed with {status}",
                args.join(" ")
            );
        }
        done.push(key);
        write_json_atomic(&done_file, &done)?;
    }
    Ok(())
}

/// Runs `compare`.
pub fn compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let out = std::path::absolute(&a.out)?;
    let vocab = Vocabulary::builtin();
    let exp = load_experiment(&a.experiment, &out, vocab)?;
    if !a.no_setup {
        let steps: Vec<Vec<String>> = exp.experiment.setup.iter().map(|s| s.run.clone()).collect();
        let dir = exp
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        run_setup(&steps, dir, &out)?;
    }
    let bar = Bar::new();
    let results = run_compare(&exp, &out, vocab, &load_engine, &bar)?;
    println!("{}", results.table());
    println!("{}", out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

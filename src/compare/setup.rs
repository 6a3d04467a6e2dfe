//! An experiment's setup steps: commands of the `ragafusion` program
//! (render a dataset, train a model ...) run once per output folder before
//! the clips are made. A step that finished is remembered, by a hash of its
//! arguments, in `OUT/setup-done.json`, so a rerun skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::experiment::Resolved;
use crate::captions::stable_hash;
use crate::error::{Error, Result};
use crate::fsutil::write_json_atomic;
use crate::progress::Progress;

/// File in the output folder recording which setup steps finished.
pub const SETUP_DONE: &str = "setup-done.json";

/// Environment variable carrying how deeply setup steps are nested (a step
/// that runs another experiment's `compare`).
pub const SETUP_DEPTH_VAR: &str = "RAGAFUSION_SETUP_DEPTH";

/// Most nested setup levels: an experiment whose setup compares another
/// experiment, whose setup compares a third.
pub const MAX_SETUP_DEPTH: u32 = 3;

/// Refuses a step that runs `compare` on `exp`'s own file (it would run
/// itself forever), and nesting deeper than [`MAX_SETUP_DEPTH`].
fn check_recursion(exp: &Resolved, dir: &Path, depth: u32) -> Result<()> {
    if depth >= MAX_SETUP_DEPTH {
        return Err(Error::invalid_data(
            &exp.file,
            format!(
                "setup steps are nested {depth} deep ({SETUP_DEPTH_VAR}); the limit is \
                 {MAX_SETUP_DEPTH}: does a setup step run compare on an experiment that runs it back?"
            ),
        ));
    }
    let own = exp.file.canonicalize().ok();
    for (i, step) in exp.experiment.setup.iter().enumerate() {
        if step.run.first().map(String::as_str) != Some("compare") {
            continue;
        }
        let itself = step.run[1..]
            .iter()
            .any(|a| own.is_some() && dir.join(a).canonicalize().ok() == own);
        if itself {
            return Err(Error::invalid_data(
                &exp.file,
                format!(
                    "setup[{i}].run: runs compare on this experiment itself, which would never end"
                ),
            ));
        }
    }
    Ok(())
}

/// The folder setup steps run in: the experiment file's own.
pub fn setup_dir(exp: &Resolved) -> PathBuf {
    exp.file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Runs each of `exp`'s setup steps that has not finished before in
/// `out`, as `program ARGS...` in the experiment's folder; stops at the
/// first step that fails.
pub fn run_setup(
    exp: &Resolved,
    out: &Path,
    program: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let steps = &exp.experiment.setup;
    let done_file = out.join(SETUP_DONE);
    let mut done: Vec<String> = std::fs::read_to_string(&done_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let dir = setup_dir(exp);
    let depth: u32 = std::env::var(SETUP_DEPTH_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !steps.is_empty() {
        check_recursion(exp, &dir, depth)?;
    }
    for (i, step) in steps.iter().enumerate() {
        let args = &step.run;
        let key = format!("{:016x}", stable_hash(&args.join("\u{1f}")));
        if done.contains(&key) {
            continue;
        }
        let shown = format!("ragafusion {}", args.join(" "));
        progress.message(&format!("setup step {}/{}: {shown}", i + 1, steps.len()));
        let status = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .env(SETUP_DEPTH_VAR, (depth + 1).to_string())
            .status()
            .map_err(|e| Error::io(program, e))?;
        if !status.success() {
            let reason = format!("setup[{i}] (`{shown}`) failed with {status}");
            return Err(Error::invalid_data(&exp.file, reason));
        }
        done.push(key);
        write_json_atomic(&done_file, &done)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::Vocabulary;
    use crate::compare::experiment::{resolve, Experiment};
    use crate::progress::NoProgress;

    fn experiment(dir: &Path, step: &str) -> Resolved {
        let text = format!(
            "name = \"s\"\nseeds = [1]\n[[setup]]\nrun = [\"-c\", \"{step}\"]\n\
             [[backend]]\nname = \"ref\"\nkind = \"reference\"\nclips = \"ref\"\n\
             [[prompt]]\nraga = \"mohanam\"\n"
        );
        let e: Experiment = toml::from_str(&text).unwrap();
        let file = dir.join("x.toml");
        resolve(e, &file, dir, dir, Vocabulary::builtin()).unwrap()
    }

    #[test]
    fn finished_steps_are_skipped_and_failures_name_the_step() {
        let d = tempfile::tempdir().unwrap();
        let exp = experiment(d.path(), "echo ran >> log.txt");
        for _ in 0..2 {
            run_setup(&exp, d.path(), Path::new("sh"), &NoProgress).unwrap();
        }
        let log = std::fs::read_to_string(d.path().join("log.txt")).unwrap();
        assert_eq!(log, "ran\n");
        assert!(d.path().join(SETUP_DONE).is_file());
        let failing = experiment(d.path(), "exit 3");
        let e = run_setup(&failing, d.path(), Path::new("sh"), &NoProgress).unwrap_err();
        assert!(e.to_string().contains("setup[0]"), "{e}");
    }

    #[test]
    fn setup_steps_may_not_recurse() {
        let d = tempfile::tempdir().unwrap();
        let mut exp = experiment(d.path(), "true");
        std::fs::write(&exp.file, "").unwrap();
        exp.experiment.setup[0].run = vec!["compare".into(), "./x.toml".into(), "--out".into()];
        let e = check_recursion(&exp, d.path(), 0).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("setup[0]"), "{e}");
        exp.experiment.setup[0].run = vec!["compare".into(), "other.toml".into()];
        check_recursion(&exp, d.path(), 0).unwrap();
        let e = check_recursion(&exp, d.path(), MAX_SETUP_DEPTH)
            .unwrap_err()
            .to_string();
        assert!(e.contains(SETUP_DEPTH_VAR), "{e}");
    }
}

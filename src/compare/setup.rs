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
}

//! `regress`: the regression corpus (`sim/regressions.toml`) — seeds that once failed, each
//! run whole in a process of its own under a wall-clock bound (a defect that stops simulated
//! time hangs a run instead of failing it), with a table and, for CI, JUnit XML.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::sweep::child_within;
use super::*;
use crate::report::junit::{self, Failure, Suite};

#[derive(Debug, Deserialize)]
struct Corpus {
    #[serde(default)]
    seed: Vec<Entry>,
}

/// One seed of the corpus.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    scenario: PathBuf,
    seed: u64,
    /// What it found, in a line.
    found: String,
    /// The commit that fixed it.
    fixed: String,
}

pub(super) fn regress(corpus: &Path, timeout_s: u64, junit_out: Option<&Path>) -> ExitCode {
    let parsed = std::fs::read_to_string(corpus)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str::<Corpus>(&t).map_err(|e| e.to_string()));
    let corpus_entries = match parsed {
        Ok(c) => c.seed,
        Err(e) => {
            eprintln!("sim: {}: {e}", corpus.display());
            return ExitCode::from(2);
        }
    };
    if let Some(missing) = corpus_entries.iter().find(|e| !e.scenario.is_file()) {
        eprintln!(
            "sim: {}: no scenario {} (seed {})",
            corpus.display(),
            missing.scenario.display(),
            missing.seed
        );
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let mut suite = Suite {
        name: "regressions".into(),
        properties: vec![("corpus".into(), corpus.display().to_string())],
        passed: Vec::new(),
        failed: Vec::new(),
        time_s: 0.0,
    };
    for e in &corpus_entries {
        let one = Instant::now();
        let outcome = child_within(&e.scenario, e.seed, Some(Duration::from_secs(timeout_s)));
        let took = one.elapsed().as_secs_f64();
        let case = format!("{} seed {}", e.scenario.display(), e.seed);
        let why = match outcome {
            Ok(s) if s.as_expected => None,
            Ok(s) => Some(s.first_finding),
            Err(e) => Some(e),
        };
        match why {
            None => {
                println!(
                    "ok      {case} in {took:.0} s ({}; fixed in {})",
                    e.found, e.fixed
                );
                suite.passed.push((case, took));
            }
            Some(why) => {
                println!("FAILED  {case} in {took:.0} s: {why}");
                let text = format!(
                    "{}\nThis seed once found: {} (fixed in {}). If the scenario changed since \
                     then, the seed may draw another run: git log --oneline {}.. -- {}",
                    junit::failure_text(
                        &why,
                        &replay(&e.scenario, e.seed),
                        &format!(
                            "cargo xtask sim shrink {} --seed {}",
                            e.scenario.display(),
                            e.seed
                        ),
                        None,
                    ),
                    e.found,
                    e.fixed,
                    e.fixed,
                    e.scenario.display()
                );
                suite.failed.push(Failure {
                    name: case,
                    message: why.lines().next().unwrap_or("").to_string(),
                    text,
                });
            }
        }
    }
    suite.time_s = started.elapsed().as_secs_f64();
    let failed = suite.failed.len();
    println!(
        "sim: {} regression seeds, {failed} failed, in {:.0} s",
        corpus_entries.len(),
        suite.time_s
    );
    if let Some(out) = junit_out {
        if let Err(e) = write(out, &junit::render("sim regress", &[suite])) {
            eprintln!("sim: {e}");
            return ExitCode::FAILURE;
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Write `text` to `path`, its folder made first.
pub(super) fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("sim: JUnit report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The corpus anyone appends to parses, and names scenarios that exist, each seed once.
    #[test]
    fn the_corpus_reads_and_names_scenarios_that_exist() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("sim/regressions.toml")).unwrap();
        let corpus: Corpus = toml::from_str(&text).unwrap();
        assert!(corpus.seed.len() >= 3);
        let mut seen = std::collections::BTreeSet::new();
        for e in &corpus.seed {
            assert!(root.join(&e.scenario).is_file(), "{}", e.scenario.display());
            assert!(!e.found.is_empty() && !e.fixed.is_empty(), "{e:?}");
            assert!(seen.insert((e.scenario.clone(), e.seed)), "{e:?} twice");
        }
        // A key misspelt is refused, not ignored.
        let bad = "[[seed]]\nscenario = \"x.toml\"\nseed = 1\nfound = \"f\"\nfixd = \"a\"\n";
        assert!(toml::from_str::<Corpus>(bad).is_err());
    }
}

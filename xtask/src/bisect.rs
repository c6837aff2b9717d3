//! `cargo xtask sim bisect <scenario> --seed N --good REV --bad REV`: the first commit at which
//! a seed of a scenario fails. At each step the simulator is built from that commit (a git
//! worktree under `<target>/bisect/worktrees`, one target directory shared by every step so
//! that the dependencies build once) and runs the seed with the scenario file as that commit
//! has it. A commit whose scenario file differs from the bad commit's is marked: the same seed
//! may draw another run there (its meaning changed), so a verdict that rests on it says so. A
//! commit where the simulator does not build, or the scenario does not exist, is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::{repo_root, target_dir};

#[derive(Parser, Debug)]
#[command(name = "bisect")]
struct Args {
    /// The scenario file (a path in the repository).
    scenario: PathBuf,
    #[arg(long)]
    seed: u64,
    /// A commit at which the seed ends as the scenario expects.
    #[arg(long)]
    good: String,
    /// A later commit at which it does not.
    #[arg(long)]
    bad: String,
    /// Wall-clock seconds a run may take (a hung run counts as failing).
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// What one commit did with the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Failed, with its first finding.
    Fail(String),
    /// Not judged (the simulator did not build, the scenario is not there), and why.
    Skip(String),
}

/// One step of a bisection: the commit, its outcome, and whether its scenario file is the bad
/// commit's.
#[derive(Debug, Clone)]
pub struct Step {
    pub commit: String,
    pub outcome: Outcome,
    pub same_scenario: bool,
}

/// The search over `commits` (oldest first; the good commit before them, the bad one last,
/// both already judged): the first failing commit, by halving, each step asked of `probe`.
/// Commits that are skipped are left out and the search goes on among the others; the answer
/// is the first failing commit after the last passing one.
pub fn search(commits: &[String], probe: &mut dyn FnMut(&str) -> Outcome) -> (String, Vec<Step>) {
    let mut steps = Vec::new();
    // `lo`: the last index known to pass (-1: the good commit); `hi`: the first known to fail.
    let mut candidates: Vec<usize> = (0..commits.len()).collect();
    let (mut lo, mut hi): (isize, usize) = (-1, commits.len() - 1);
    loop {
        let between: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| i as isize > lo && i < hi)
            .collect();
        if between.is_empty() {
            return (commits[hi].clone(), steps);
        }
        let mid = between[between.len() / 2];
        let outcome = probe(&commits[mid]);
        steps.push(Step {
            commit: commits[mid].clone(),
            outcome: outcome.clone(),
            same_scenario: true,
        });
        match outcome {
            Outcome::Pass => lo = mid as isize,
            Outcome::Fail(_) => hi = mid,
            Outcome::Skip(_) => candidates.retain(|&i| i != mid),
        }
    }
}

pub(crate) fn git(args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The scenario file's blob at `commit` (`None`: not there).
fn scenario_blob(commit: &str, scenario: &Path) -> Option<String> {
    git(&["rev-parse", &format!("{commit}:{}", scenario.display())]).ok()
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// Build the simulator at `commit` and run the seed there.
fn probe(commit: &str, args: &Args, dir: &Path) -> Outcome {
    if scenario_blob(commit, &args.scenario).is_none() {
        return Outcome::Skip(format!("no {} at this commit", args.scenario.display()));
    }
    let tree = dir.join("worktrees").join(short(commit));
    if !tree.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&tree);
        let path = tree.display().to_string();
        if let Err(e) = git(&["worktree", "add", "--detach", "--force", &path, commit]) {
            return Outcome::Skip(format!("no worktree: {e:#}"));
        }
    }
    let sim = match simulator_at(commit, &tree, dir) {
        Ok(sim) => sim,
        Err(e) => return Outcome::Skip(format!("{e:#}")),
    };
    run_seed(&sim, &tree, args)
}

/// The simulator built from `commit` (checked out in `tree`): built once, into the shared
/// target directory, then kept as `<dir>/bins/<commit>/sim` — the target directory's own
/// `sim/sim` is whichever commit built last, and cargo does not put it back for a commit whose
/// build is already there.
pub fn simulator_at(commit: &str, tree: &Path, dir: &Path) -> Result<PathBuf> {
    let kept = dir.join("bins").join(short(commit)).join("sim");
    if kept.is_file() {
        return Ok(kept);
    }
    eprintln!("xtask: bisect: building the simulator at {}", short(commit));
    let built = crate::sim::build_at(tree, &dir.join("target"))?;
    std::fs::create_dir_all(kept.parent().expect("a parent"))?;
    let partial = kept.with_extension("partial");
    std::fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &kept)?;
    Ok(kept)
}

/// Run the seed with the simulator `sim` in `tree`, bounded in wall-clock time.
fn run_seed(sim: &Path, tree: &Path, args: &Args) -> Outcome {
    let out_file = tree.join("bisect-run.out");
    let Ok(out) = std::fs::File::create(&out_file) else {
        return Outcome::Skip(format!("cannot write {}", out_file.display()));
    };
    let child = Command::new(sim)
        .arg("run")
        .arg(&args.scenario)
        .args(["--seed", &args.seed.to_string(), "--summary"])
        .current_dir(tree)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Outcome::Skip(format!("the simulator did not start: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Fail(format!(
                    "still running after {} s of wall-clock time",
                    args.timeout_s
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Outcome::Skip(e.to_string()),
        }
    }
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("SUMMARY\t")) else {
        return Outcome::Fail("the run ended without a summary (a panic?)".into());
    };
    let summary: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Outcome::Skip(format!("an unreadable summary: {e}")),
    };
    if summary["as_expected"].as_bool() == Some(true) {
        Outcome::Pass
    } else {
        Outcome::Fail(
            summary["first_finding"]
                .as_str()
                .unwrap_or("(no finding)")
                .to_string(),
        )
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => "passes".into(),
        Outcome::Fail(why) => format!("fails: {why}"),
        Outcome::Skip(why) => format!("skipped: {why}"),
    }
}

pub fn run(raw: &[String]) -> Result<()> {
    first_failing(raw).map(|_| ())
}

/// The bisection `raw` (its command line) asks for; the first failing commit's full id.
pub fn first_failing(raw: &[String]) -> Result<String> {
    let args = Args::try_parse_from(raw.iter().map(String::as_str))?;
    let good = git(&["rev-parse", &format!("{}^{{commit}}", args.good)])?;
    let bad = git(&["rev-parse", &format!("{}^{{commit}}", args.bad)])?;
    git(&["merge-base", "--is-ancestor", &good, &bad])
        .with_context(|| format!("{} is not an ancestor of {}", args.good, args.bad))?;
    let list = git(&[
        "rev-list",
        "--reverse",
        "--ancestry-path",
        &format!("{good}..{bad}"),
    ])?;
    let commits: Vec<String> = list.lines().map(str::to_string).collect();
    if commits.is_empty() {
        bail!("no commit between {} and {}", args.good, args.bad);
    }
    let dir = target_dir().join("bisect");
    std::fs::create_dir_all(&dir)?;
    let bad_blob = scenario_blob(&bad, &args.scenario)
        .with_context(|| format!("{} is not in {}", args.scenario.display(), args.bad))?;
    let same = |c: &str| scenario_blob(c, &args.scenario).as_deref() == Some(bad_blob.as_str());
    println!(
        "xtask: bisect {} seed {} over {} commits ({}..{})",
        args.scenario.display(),
        args.seed,
        commits.len(),
        short(&good),
        short(&bad)
    );
    for (commit, want_pass) in [(&good, true), (&bad, false)] {
        let outcome = probe(commit, &args, &dir);
        println!("  {} {}", short(commit), describe(&outcome));
        match (&outcome, want_pass) {
            (Outcome::Pass, true) | (Outcome::Fail(_), false) => {}
            _ => bail!(
                "the seed {} at {} (expected it to {}): nothing to bisect",
                describe(&outcome),
                short(commit),
                if want_pass { "pass" } else { "fail" }
            ),
        }
    }
    let (first, mut steps) = search(&commits, &mut |c| {
        let outcome = probe(c, &args, &dir);
        println!("  {} {}", short(c), describe(&outcome));
        outcome
    });
    for s in &mut steps {
        s.same_scenario = same(&s.commit);
    }
    let subject = git(&["log", "-1", "--format=%s", &first])?;
    println!("\nsteps:");
    for s in &steps {
        println!(
            "  {} {}{}",
            short(&s.commit),
            describe(&s.outcome),
            if s.same_scenario {
                ""
            } else {
                " (its scenario file differs from the bad commit's: the seed may be another run)"
            }
        );
    }
    println!("\nfirst failing commit: {} {subject}", short(&first));
    let changed: Vec<&Step> = steps
        .iter()
        .filter(|s| !s.same_scenario && s.outcome == Outcome::Pass)
        .collect();
    if !same(&first) {
        println!("  (the scenario file there is not the bad commit's)");
    }
    let skipped: Vec<&str> = steps
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Skip(_)))
        .map(|s| short(&s.commit))
        .collect();
    if !skipped.is_empty() {
        println!(
            "  skipped, not judged (the culprit may be among those just before it): {}",
            skipped.join(", ")
        );
    }
    if let Some(last_pass) = changed.last() {
        println!(
            "  note: {} passed with another version of the scenario file: the seed's meaning \
             changed there, so the pass may not clear it (git log -- {})",
            short(&last_pass.commit),
            args.scenario.display()
        );
    }
    let _ = git(&["worktree", "prune"]);
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commits(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    fn probe_with(first_bad: usize, skip: &[usize]) -> impl FnMut(&str) -> Outcome + '_ {
        move |c: &str| {
            let i: usize = c[1..].parse().unwrap();
            if skip.contains(&i) {
                Outcome::Skip("does not build".into())
            } else if i >= first_bad {
                Outcome::Fail("lost-write".into())
            } else {
                Outcome::Pass
            }
        }
    }

    #[test]
    fn the_first_failing_commit_is_found_by_halving() {
        for n in 1..40 {
            for first_bad in 0..n {
                let mut probe = probe_with(first_bad, &[]);
                let (found, steps) = search(&commits(n), &mut probe);
                assert_eq!(found, format!("c{first_bad}"), "n={n}");
                assert!(
                    steps.len() <= (usize::BITS - n.leading_zeros()) as usize,
                    "n={n}: {} steps",
                    steps.len()
                );
            }
        }
    }

    #[test]
    fn skipped_commits_are_stepped_over() {
        // c3 does not build: the first failing commit is still found around it.
        let mut probe = probe_with(5, &[3]);
        assert_eq!(search(&commits(10), &mut probe).0, "c5");
        // The first failing commit's parent does not build: the answer is the first failing
        // commit after the last that passed (the skipped one may be the culprit).
        let mut probe = probe_with(5, &[4]);
        assert_eq!(search(&commits(10), &mut probe).0, "c5");
        let mut probe = probe_with(4, &[4]);
        assert_eq!(search(&commits(10), &mut probe).0, "c5");
    }
}

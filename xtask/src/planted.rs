//! `cargo xtask planted`: a defect planted in a scratch commit, taken through the whole path a
//! failing seed takes — the sweep's JUnit report names the seed with its replay command, the
//! run's explorable page opened in headless Chromium shows the finding, `sim explain` names a
//! fault as the likely cause, and bisection between the planted commit and its parent names
//! the planted commit. The scratch commit is made in a worktree of the repository under
//! `<target>/bisect/worktrees` (no branch, nothing in the working tree changes); its
//! simulator build is the one bisection reuses. About three simulator builds: minutes, so it
//! is not part of `cargo xtask test` (the nightly workflow in `docs/ci/` runs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::bisect::git;
use crate::test::step;
use crate::{repo_root, target_dir};

#[derive(Args, Debug)]
pub struct PlantedArgs {
    /// A patch of `sim/tests/fixtures/defects/` (its name without `.patch`).
    #[arg(long, default_value = "deadline-counts-paused-time")]
    defect: String,
    /// The scenario that finds it.
    #[arg(long, default_value = "scenarios/pause-mid-write.toml")]
    scenario: PathBuf,
    /// The seed that finds it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Run the whole path; fails naming the first part that does not hold.
pub fn run(args: &PlantedArgs) -> Result<()> {
    let root = repo_root();
    let patch = root
        .join("sim/tests/fixtures/defects")
        .join(format!("{}.patch", args.defect));
    if !patch.is_file() {
        bail!("no defect {} ({} missing)", args.defect, patch.display());
    }
    let scenario = args.scenario.display().to_string();
    let seed = args.seed.to_string();
    let head = git(&["rev-parse", "HEAD"])?;
    // The planted commit: HEAD and the patch, in a worktree of its own.
    let bisect = target_dir().join("bisect");
    let scratch = bisect.join("worktrees").join("planted");
    let _ = git(&[
        "worktree",
        "remove",
        "--force",
        &scratch.display().to_string(),
    ]);
    let _ = std::fs::remove_dir_all(&scratch);
    git(&[
        "worktree",
        "add",
        "--detach",
        "--force",
        &scratch.display().to_string(),
        &head,
    ])?;
    let in_scratch = |args: &[&str]| -> Result<()> {
        let status = Command::new("git")
            .args(args)
            .current_dir(&scratch)
            .status()
            .with_context(|| format!("git {}", args.join(" ")))?;
        if !status.success() {
            bail!("git {} failed in {}", args.join(" "), scratch.display());
        }
        Ok(())
    };
    in_scratch(&["apply", &patch.display().to_string()])?;
    in_scratch(&[
        "-c",
        "user.name=xtask planted",
        "-c",
        "user.email=planted@localhost",
        "commit",
        "--quiet",
        "--all",
        "-m",
        &format!("planted: {} (a defect put back on purpose)", args.defect),
    ])?;
    let planted = String::from_utf8_lossy(
        &Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&scratch)
            .output()?
            .stdout,
    )
    .trim()
    .to_string();
    println!("xtask: planted {} as {}", args.defect, &planted[..10]);
    // Where bisection looks for the commit's worktree: its build is then bisection's too.
    let tree = bisect.join("worktrees").join(&planted[..10]);
    let _ = git(&["worktree", "remove", "--force", &tree.display().to_string()]);
    let _ = std::fs::remove_dir_all(&tree);
    git(&[
        "worktree",
        "move",
        &scratch.display().to_string(),
        &tree.display().to_string(),
    ])?;
    let scratch = tree;
    let sim = crate::bisect::simulator_at(&planted, &scratch, &bisect)?;
    let out = target_dir().join("planted");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;

    // 1. The sweep's JUnit report names the seed and its replay command.
    let junit = out.join("junit.xml");
    let mut sweep = failing(&sim, &scratch);
    sweep
        .args(["sweep", &scenario, "--seeds"])
        .arg(format!("{seed}..{}", args.seed + 1))
        .arg("--junit")
        .arg(&junit);
    step("the planted seed swept (sim sweep --junit)", sweep)?;
    let report = std::fs::read_to_string(&junit)?;
    let replay = format!("replay: cargo xtask sim run {scenario} --seed {seed}");
    for needed in ["failures=\"1\"", &format!("name=\"seed {seed}\""), &replay] {
        if !report.contains(needed) {
            bail!("the JUnit report should hold {needed:?}:\n{report}");
        }
    }

    // 2. Its page, opened in headless Chromium, shows the finding.
    let page = out.join("planted.html");
    let mut run = failing(&sim, &scratch);
    run.args(["run", &scenario, "--seed", &seed, "--html"])
        .arg(&page);
    step("the planted seed's page (sim run --html)", run)?;
    crate::seed_path::open_page(&page, &out.join("planted.png"), None, None, &|name, c| {
        step(name, c)
    })?;

    // 3. Explained: a fault named as the likely cause.
    let explained = Command::new(&sim)
        .args(["explain", &scenario, "--seed", &seed])
        .current_dir(&scratch)
        .output()
        .context("running sim explain")?;
    let chain = String::from_utf8_lossy(&explained.stdout);
    println!("{chain}");
    if !chain.contains("likely cause: ") || chain.contains("no fault touches this span") {
        bail!("the explanation should name a fault as the likely cause:\n{chain}");
    }

    // 4. Bisection between the planted commit's parent and it names it.
    let found = crate::bisect::first_failing(&[
        "bisect".into(),
        scenario.clone(),
        "--seed".into(),
        seed.clone(),
        "--good".into(),
        head.clone(),
        "--bad".into(),
        planted.clone(),
    ])?;
    if found != planted {
        bail!("bisection named {found}, not the planted commit {planted}");
    }
    let _ = git(&[
        "worktree",
        "remove",
        "--force",
        &scratch.display().to_string(),
    ]);
    println!(
        "xtask: the planted defect {} went through the whole path: JUnit, page, explain, bisect \
         (outputs in {})",
        args.defect,
        out.display()
    );
    Ok(())
}

/// `sim` with arguments to come, run in `tree`, expected to exit 1 (the seed fails); any other
/// exit is a failure of the step.
fn failing(sim: &Path, tree: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("\"$0\" \"$@\" > /dev/null; test $? -eq 1")
        .arg(sim)
        .current_dir(tree);
    c
}

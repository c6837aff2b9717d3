//! The path a failing seed takes in CI, checked end to end by `cargo xtask test`'s simulation
//! lane: a fixture that fails, swept with a JUnit report and its failure shrunk, explained,
//! drawn as an explorable page opened in a real headless browser; and the regression corpus.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::test::ensure_installed;
use crate::{repo_root, target_dir};

/// The regression corpus (`sim/regressions.toml`: seeds that once found a defect the quick
/// sweep's seeds do not reach, each with the commit that fixed it), each run whole under a
/// bound of wall-clock time, its JUnit report in `<target>/xtask-test/junit/`.
pub fn regression_seeds(bin: &Path, step: &dyn Fn(&str, Command) -> Result<()>) -> Result<()> {
    let mut run = Command::new(bin);
    run.args(["regress", "sim/regressions.toml", "--timeout-s", "300"])
        .arg("--junit")
        .arg(junit_dir().join("regressions.xml"))
        .current_dir(repo_root());
    step("regression corpus (sim regress sim/regressions.toml)", run)
}

/// Where `cargo xtask test` writes the simulation steps' JUnit reports, for CI systems.
pub fn junit_dir() -> std::path::PathBuf {
    target_dir().join("xtask-test").join("junit")
}

/// A failing seed through the path CI takes, end to end: a fixture that fails (the legacy
/// broker, deadlines off, in a swarm of thirteen faults, wrongly expected to pass) swept with
/// a JUnit report and its failures shrunk; the report must name the seed with its replay
/// command, and the shrunk scenario hold the one fsync stall that hangs it, with one producer
/// and nothing else.
pub fn shrink_check(bin: &Path, step: &dyn Fn(&str, Command) -> Result<()>) -> Result<()> {
    let dir = target_dir().join("shrink-check");
    let _ = std::fs::remove_dir_all(&dir);
    let junit = dir.join("junit.xml");
    let out = dir.join("shrunk").join("legacy-swarm-seed2.toml");
    // The sweep fails (exit 1) on the seed; anything else is a failure of the step.
    let mut sweep = Command::new("sh");
    sweep
        .arg("-c")
        .arg("\"$0\" \"$@\"; test $? -eq 1")
        .arg(bin)
        .args([
            "sweep",
            "sim/tests/fixtures/legacy-swarm.toml",
            "--seeds",
            "2..3",
            "--jobs",
            "1",
            "--shrink-failures",
        ])
        .arg("--junit")
        .arg(&junit)
        .current_dir(repo_root());
    step(
        "a failing seed swept, shrunk and reported (sim sweep legacy-swarm --seeds 2..3 --junit --shrink-failures)",
        sweep,
    )?;
    let report = std::fs::read_to_string(&junit)
        .with_context(|| format!("reading the JUnit report {}", junit.display()))?;
    for needed in [
        "failures=\"1\"",
        "name=\"seed 2\"",
        "replay: cargo xtask sim run sim/tests/fixtures/legacy-swarm.toml --seed 2",
        "kind = &quot;fsync-stall&quot;",
    ] {
        if !report.contains(needed) {
            bail!("the JUnit report should hold {needed:?}:\n{report}");
        }
    }
    // And explained: the chain names the stall as the likely cause.
    let explained = dir.join("explain.out");
    let mut explain = Command::new("sh");
    explain
        .arg("-c")
        .arg("\"$0\" \"$@\" > \"$EXPLAIN_OUT\"")
        .arg(bin)
        .args([
            "explain",
            "sim/tests/fixtures/legacy-swarm.toml",
            "--seed",
            "2",
        ])
        .env("EXPLAIN_OUT", &explained)
        .current_dir(repo_root());
    step(
        "a failing seed explained (sim explain legacy-swarm --seed 2)",
        explain,
    )?;
    let chain = std::fs::read_to_string(&explained).unwrap_or_default();
    if !chain.contains("likely cause: fsync-stall") {
        bail!("the explanation should name the fsync stall as the likely cause:\n{chain}");
    }
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("reading the shrunk scenario {}", out.display()))?;
    let faults = text.matches("[[faults]]").count();
    if faults != 1
        || !text.contains("kind = \"fsync-stall\"")
        || !text.contains("producers = 1\n")
        || !text.contains("# Replay: cargo xtask sim run")
    {
        bail!(
            "the shrunk scenario should hold one fsync stall, one producer and its replay \
             command; it holds {faults} fault(s):\n{text}"
        );
    }
    Ok(())
}

/// The fixture's failing seed drawn as its explorable page (`sim run --html`), opened in
/// headless Chromium through Playwright (`sim/tests/page/check_page.py`): the page loads
/// without a console error, shows the finding and the fault that caused it, its filters and
/// zoom work, a click on an operation shows its trace line; a screenshot is kept in
/// `<target>/xtask-test/page/`.
pub fn page_check(bin: &Path, step: &dyn Fn(&str, Command) -> Result<()>) -> Result<()> {
    let dir = target_dir().join("xtask-test").join("page");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let page = dir.join("legacy-swarm-seed2.html");
    // The seed fails (exit 1); anything else is a failure of the step.
    let mut run = Command::new("sh");
    run.arg("-c")
        .arg("\"$0\" \"$@\" > /dev/null; test $? -eq 1")
        .arg(bin)
        .args([
            "run",
            "sim/tests/fixtures/legacy-swarm.toml",
            "--seed",
            "2",
            "--html",
        ])
        .arg(&page)
        .current_dir(repo_root());
    step(
        "a failing seed's explorable page (sim run legacy-swarm --seed 2 --html)",
        run,
    )?;
    open_page(
        &page,
        &dir.join("legacy-swarm-seed2.png"),
        Some("did not answer a produce"),
        Some("fsync-stall"),
        step,
    )
}

/// Open `page` in headless Chromium through Playwright (`sim/tests/page/check_page.py`, in a
/// virtual environment of its own, `<target>/pageenv`): it must load without a console error
/// and show the finding (with `finding` in it, and `fault` named as the likely cause, when
/// given); its filters, zoom and links must work; `screenshot` is written.
pub fn open_page(
    page: &Path,
    screenshot: &Path,
    finding: Option<&str>,
    fault: Option<&str>,
    step: &dyn Fn(&str, Command) -> Result<()>,
) -> Result<()> {
    if !Path::new(CHROMIUM).is_file() {
        bail!(
            "the explorable page's test needs Chromium (Debian: `sudo apt-get install chromium`)"
        );
    }
    let requirements = repo_root().join("sim/tests/page/requirements.txt");
    let python = crate::test::python_env_at(&target_dir().join("pageenv"), &requirements)?;
    let mut check = Command::new(python);
    check
        .arg("sim/tests/page/check_page.py")
        .arg(page)
        .arg("--chromium")
        .arg(CHROMIUM)
        .arg("--screenshot")
        .arg(screenshot)
        .current_dir(repo_root());
    if let Some(f) = finding {
        check.arg("--finding").arg(f);
    }
    if let Some(f) = fault {
        check.arg("--fault").arg(f);
    }
    step(
        "the page in headless Chromium (sim/tests/page/check_page.py)",
        check,
    )
}

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium, installed with apt-get when missing and this user may (before the lane starts:
/// two apt-gets at once would fight over its lock); `Some(why)` if it is missing.
pub fn ensure_chromium() -> Option<String> {
    ensure_installed(
        "Chromium, for the explorable page's test",
        || Path::new(CHROMIUM).is_file(),
        "chromium",
        "the page's test fails",
    )
}

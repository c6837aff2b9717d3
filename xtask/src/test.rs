//! `cargo xtask test`: the project's one test command.
//!
//! Two lanes, each stopping at its first failure:
//! - the simulation lane, from the start, at the lowest priority (`nice -n 19`: the simulation
//!   is deterministic whatever the load; its output in `<target>/xtask-test/sim-lane.log`):
//!   `cargo test -p sim` built with `--cfg madsim` in their own target directory
//!   (`<target>/madsim`, so the two builds never invalidate each other) and run, the simulator
//!   built, a failing fixture swept into JUnit, shrunk, explained and drawn as a page opened in
//!   headless Chromium (`seed_path.rs`), the regression seeds, a quick sweep of every scenario
//!   (10 seeds; the costliest, which set `quick_sweep_seeds`, fewer) that also runs each
//!   scenario's first seed twice and compares the traces; then the Java client's tests
//!   (`tests/java`, Maven: see `java.rs`) with each kafka-clients version, against the debug
//!   broker (in the foreground with `--skip-sim`);
//! - the foreground: the unit, property and simulation-in-process tests (`cargo nextest run
//!   --workspace`, or `cargo test --workspace` when cargo-nextest is not installed; both keep
//!   the multi-node tests to one at a time: nextest by its test group, `cargo test` by a lock
//!   in the tests); the broker binary (`cargo build -p broker --bin broker`); the twin smoke
//!   run on real processes; kafka-python's own integration tests (see `kafka_python.rs`); the
//!   differential suite against Apache Kafka (`kafka.rs`); then the integration tests: pytest
//!   in a virtual environment of its own under the target directory (`<target>/pyenv`, made
//!   from `tests/integration/requirements.txt` once and remade when that file changes), kcat
//!   installed through apt-get when it is missing and this user may, KafkaJS through npm
//!   (`<target>/kafkajs`, given as `NODE_PATH`), and `STILLWATER_BROKER_BIN` pointing at the
//!   binary.
//!
//! Before both, iptables, libfaketime and Chromium are installed the same way when missing (the
//! twin runner's packet loss and clock skew, the page's test, need them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{cargo, repo_root, target_dir};

#[derive(Args, Clone, Debug)]
pub struct TestArgs {
    /// Skip the unit tests (nextest / cargo test).
    #[arg(long)]
    skip_unit: bool,
    /// Skip the simulation tests (the `sim` crate under `--cfg madsim`).
    #[arg(long)]
    skip_sim: bool,
    /// Skip building the broker and running the pytest integration tests (and the Java ones).
    #[arg(long)]
    skip_integration: bool,
    /// Skip the Java client's tests (tests/java, Maven).
    #[arg(long)]
    skip_java: bool,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let started = Instant::now();
    let chromium = (!args.skip_sim)
        .then(crate::seed_path::ensure_chromium)
        .flatten();
    let missing: Vec<String> = [ensure_iptables(), ensure_faketime(), chromium]
        .into_iter()
        .flatten()
        .collect();
    let lane = if args.skip_sim {
        println!("xtask: skipping simulation tests (--skip-sim)");
        None
    } else {
        // The Java client suites go in the lane (after the sweep), beside the integration
        // tests: in the foreground they made the run ~5 minutes longer.
        let java = if args.skip_integration || args.skip_java {
            Vec::new()
        } else {
            crate::java::tools()?;
            crate::java::CLIENT_VERSIONS
                .iter()
                .map(|version| crate::java::suite(&broker_path(), version, true))
                .collect()
        };
        Some(SimLane { java })
    };
    if args.skip_integration {
        println!("xtask: skipping integration tests (--skip-integration)");
        if !args.skip_unit {
            unit_tests()?;
        }
        if let Some(lane) = lane {
            Background::start(lane)?.finish()?;
        }
    } else {
        // The simulation is deterministic whatever the machine's load, and the tests leave
        // more than a core idle (they wait on brokers): the simulation lane (its builds too)
        // runs beside them from the start, at the lowest priority so that their timing is not
        // disturbed.
        let background = lane.map(Background::start).transpose()?;
        if args.skip_unit {
            println!("xtask: skipping unit tests (--skip-unit)");
        } else {
            unit_tests()?;
        }
        let broker_bin = build_broker()?;
        let python = python_env(&repo_root().join("tests/integration/requirements.txt"))?;
        twin_smoke(&broker_bin, &python)?;
        // kafka-python's suite and the differential suite before the long pytest run: the
        // lane's Java suites (many JVMs and brokers) come later, beside pytest only.
        let integration = crate::test::step_result(
            "kafka-python's own integration tests (cargo xtask kafka-python)",
            || crate::kafka_python::suite(&python, &broker_bin, None, None),
        )
        .and_then(|()| crate::kafka::differential(&python, &broker_bin))
        .and_then(|()| integration_tests(&broker_bin));
        let java = if args.skip_java {
            println!("xtask: skipping the Java client tests (--skip-java)");
            Ok(())
        } else if args.skip_sim {
            crate::java::tests(&broker_bin, crate::java::CLIENT_VERSIONS, true)
        } else {
            // The Java suites are the simulation lane's last steps.
            Ok(())
        };
        let swept = background.map(Background::finish).transpose();
        integration?;
        java?;
        swept?;
    }
    for why in missing {
        println!("xtask: NOTE: {why}");
    }
    println!(
        "xtask: all test steps passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The quick sweep of every scenario (the costly ones fewer seeds, `quick_sweep_seeds`): each
/// seed must end as its scenario expects, every coverage event must be reached, and each
/// scenario's first seed, run a second time in a process of its own, must give the same
/// trace. All runs share one queue of two workers.
const SWEEP_STEP: &str =
    "scenario sweep (sim sweep all --seeds 1..11 --require-coverage --quick --check-determinism)";

/// The simulation lane: its steps run one after another in a thread of their own, each at
/// nice 19 with its output in `<target>/xtask-test/sim-lane.log` (the sweep's table also in
/// `sweep.out`, shown when it ends).
struct Background {
    thread: std::thread::JoinHandle<Result<()>>,
}

/// What the simulation lane runs: the simulator, built.
struct SimLane {
    /// The Java client suites to run after the sweep, each whatever the others' outcome.
    java: Vec<(String, Command)>,
}

impl SimLane {
    fn run(self, dir: &Path) -> Result<()> {
        let log = dir.join("sim-lane.log");
        std::fs::write(&log, "")?;
        let lane = |name: &str, command: Command| niced_step(&log, name, command, None);
        // Built here too, beside the broker's build and the integration tests (at nice 19 a
        // build takes what they leave of the cores). Nobody types RUSTFLAGS.
        let mut build = cargo();
        build
            .args(["test", "--profile", "sim", "-p", "sim", "--no-run"])
            .env("RUSTFLAGS", "--cfg madsim")
            .env("CARGO_TARGET_DIR", sim_target_dir());
        lane(
            "simulation tests, built (cargo test --profile sim -p sim --no-run, --cfg madsim)",
            build,
        )?;
        let mut build = cargo();
        build
            .args(["build", "--profile", "sim", "-p", "sim", "--bin", "sim"])
            .env("RUSTFLAGS", "--cfg madsim")
            .env("CARGO_TARGET_DIR", sim_target_dir());
        lane(
            "the simulator, built (cargo build --profile sim -p sim)",
            build,
        )?;
        let sim = sim_target_dir().join("sim").join("sim");
        let mut tests = cargo();
        tests
            .args(["test", "--profile", "sim", "-p", "sim"])
            .env("RUSTFLAGS", "--cfg madsim")
            .env("CARGO_TARGET_DIR", sim_target_dir());
        lane(
            "simulation tests (cargo test --profile sim -p sim, --cfg madsim)",
            tests,
        )?;
        crate::seed_path::shrink_check(&sim, &lane)?;
        crate::seed_path::page_check(&sim, &lane)?;
        crate::seed_path::regression_seeds(&sim, &lane)?;
        let out = dir.join("sweep.out");
        let mut sweep = Command::new(&sim);
        sweep.args([
            "sweep",
            "all",
            "--seeds",
            "1..11",
            "--jobs",
            "2",
            "--require-coverage",
            "--quick",
            "--check-determinism",
        ]);
        sweep
            .arg("--junit")
            .arg(crate::seed_path::junit_dir().join("sweep.xml"));
        let swept = niced_step(&log, SWEEP_STEP, sweep, Some(&out));
        print!("{}", std::fs::read_to_string(&out).unwrap_or_default());
        swept?;
        let mut failed = Vec::new();
        for (name, command) in self.java {
            if let Err(e) = niced_step(&log, &name, command, None) {
                println!("xtask: {e}");
                failed.push(name);
            }
        }
        if !failed.is_empty() {
            bail!(
                "failed in the simulation lane: {} (reports in {})",
                failed.join("; "),
                target_dir().join("java").display()
            );
        }
        Ok(())
    }
}

impl Background {
    fn start(lane: SimLane) -> Result<Background> {
        let dir = target_dir().join("xtask-test");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        println!(
            "xtask: ==> the simulation lane (tests, shrinking, regression seeds, sweep), beside the integration tests at nice 19 (output in {})",
            dir.join("sim-lane.log").display()
        );
        let thread = std::thread::spawn(move || lane.run(&dir));
        Ok(Background { thread })
    }

    fn finish(self) -> Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the simulation lane's thread panicked"))?
    }
}

/// Run `command` at nice 19 from the repository's root, its output appended to `log` (its
/// standard output to `out` instead, when given); on failure the log's last lines are shown.
fn niced_step(log: &Path, name: &str, command: Command, out: Option<&Path>) -> Result<()> {
    let mut niced = Command::new("nice");
    niced
        .args(["-n", "19"])
        .arg(command.get_program())
        .args(command.get_args())
        .current_dir(command.get_current_dir().unwrap_or(&repo_root()));
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => niced.env(key, v),
            None => niced.env_remove(key),
        };
    }
    let append = || std::fs::File::options().append(true).create(true).open(log);
    let stdout = match out {
        Some(path) => std::fs::File::create(path)?,
        None => append()?,
    };
    niced.stdout(stdout).stderr(append()?);
    println!("xtask: ==> {name} (simulation lane)");
    let started = Instant::now();
    let status = niced
        .status()
        .with_context(|| format!("could not start {:?}", command.get_program()))?;
    let elapsed_s = started.elapsed().as_secs_f64();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        for line in tail.iter().rev() {
            println!("{line}");
        }
        bail!("step failed after {elapsed_s:.1} s ({status}): {name}");
    }
    println!("xtask: <== {name}: ok in {elapsed_s:.1} s (simulation lane)");
    Ok(())
}

/// Flush the page cache's dirty pages to disk before tests that fsync against deadlines: a
/// build just wrote gigabytes, and the kernel's writeback of them made the tests' fsyncs wait
/// past their I/O deadlines (seen on a fresh clone: a commit round over 1.5 s, a directory
/// lock over 400 ms; the same tests pass once the writeback is done).
fn settle_disk() {
    let _ = Command::new("sync").status();
}

fn unit_tests() -> Result<()> {
    if nextest_available() {
        let mut build = cargo();
        build.args(["nextest", "run", "--workspace", "--no-run"]);
        step(
            "unit tests, built (cargo nextest run --workspace --no-run)",
            build,
        )?;
        settle_disk();
        let mut command = cargo();
        command.args(["nextest", "run", "--workspace"]);
        step("unit tests (cargo nextest run --workspace)", command)
    } else {
        println!(
            "xtask: cargo-nextest not found; using cargo test (the same tests; \
             `cargo install cargo-nextest --locked` runs them in parallel across binaries)"
        );
        let mut command = cargo();
        command.args(["test", "--workspace"]);
        step("unit tests (cargo test --workspace)", command)
    }
}

/// Where `--cfg madsim` builds go: beside the normal ones, never mixed with them.
pub fn sim_target_dir() -> std::path::PathBuf {
    target_dir().join("madsim")
}

fn nextest_available() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// The short twin scenario on real (debug) broker processes, judged by the simulator's
/// checkers; the sweep runs it in simulation.
const TWIN_SMOKE: &str = "scenarios/twin-smoke.toml";

/// The short twin scenario on real debug brokers, joined by one real librdkafka producer (the
/// test clients' Python), so both the simulator's clients and librdkafka's are judged.
fn twin_smoke(broker_bin: &Path, python: &Path) -> Result<()> {
    let (sim, _) = crate::sim::build_real("dev")?;
    let mut run = Command::new("timeout");
    run.arg("300")
        .arg(sim)
        .args([
            "real",
            TWIN_SMOKE,
            "--librdkafka-producers",
            "1",
            "--python",
        ])
        .arg(python)
        .arg("--broker-bin")
        .arg(broker_bin)
        .arg("--work-dir")
        .arg(target_dir().join("xtask-test").join("twin"))
        .current_dir(repo_root());
    step(
        &format!("twin run on real processes (sim real {TWIN_SMOKE} --librdkafka-producers 1)"),
        run,
    )
}

/// Builds the debug broker binary and returns its path.
/// Where [`build_broker`] puts the broker.
fn broker_path() -> std::path::PathBuf {
    target_dir().join("debug").join("broker")
}

pub(crate) fn build_broker() -> Result<std::path::PathBuf> {
    let mut command = cargo();
    command.args(["build", "-p", "broker", "--bin", "broker"]);
    step(
        "broker binary (cargo build -p broker --bin broker)",
        command,
    )?;
    let binary = broker_path();
    if !binary.is_file() {
        bail!(
            "cargo built the broker but {} does not exist; is the target directory \
             configured somewhere other than CARGO_TARGET_DIR?",
            binary.display()
        );
    }
    Ok(binary)
}

/// The differential suite (`test_differential.py`) runs in a step of its own, beside Kafka.
const PYTEST_ARGS: &[&str] = &[
    "-m",
    "pytest",
    "tests/integration",
    "-q",
    "--durations=15",
    "--ignore=tests/integration/test_differential.py",
];

fn integration_tests(broker_bin: &Path) -> Result<()> {
    let root = repo_root();
    let suite = root.join("tests").join("integration");
    if !suite.is_dir() {
        bail!("integration test suite {} not found", suite.display());
    }
    let python = python_env(&suite.join("requirements.txt"))?;
    // The rolling-upgrade test's earlier version (built once, then kept in the target directory).
    let old_broker = crate::upgrade::old_broker()?;
    let kcat_missing = ensure_kcat();
    let prometheus_missing = ensure_prometheus();
    let kafkajs = kafkajs(&suite.join("kafkajs"))?;
    settle_disk();
    let mut command = Command::new(&python);
    // One worker: on two cores, two (pytest-xdist, `-n 2 --dist loadfile`) made timing-bound
    // tests flaky (2 of 131 failed in one of three runs).
    command
        .args(PYTEST_ARGS)
        .current_dir(&root)
        .env("STILLWATER_BROKER_BIN", broker_bin)
        .env(crate::upgrade::OLD_BROKER_ENV, &old_broker);
    if let Some(modules) = &kafkajs {
        command.env("NODE_PATH", modules);
    }
    let outcome = step(
        &format!(
            "integration tests (STILLWATER_BROKER_BIN={} {} {})",
            broker_bin.display(),
            python.display(),
            PYTEST_ARGS.join(" ")
        ),
        command,
    );
    if let Some(why) = kcat_missing {
        println!("xtask: NOTE: the kcat tests were skipped: {why}");
    }
    if let Some(why) = prometheus_missing {
        println!("xtask: NOTE: {why}");
    }
    if kafkajs.is_none() {
        println!(
            "xtask: NOTE: the KafkaJS tests were skipped: Node.js and npm are not installed \
             (Debian: `sudo apt-get install nodejs npm`)"
        );
    }
    outcome
}

/// KafkaJS, installed with `npm ci` from `package` (its package.json and lock file, copied)
/// into `<target>/kafkajs` when the lock file changed; the `node_modules` to give as
/// `NODE_PATH`; `None` where Node.js or npm is missing.
fn kafkajs(package: &Path) -> Result<Option<std::path::PathBuf>> {
    if !found("npm", "--version") || !found("node", "--version") {
        return Ok(None);
    }
    let dir = target_dir().join("kafkajs");
    let modules = dir.join("node_modules");
    let lock = std::fs::read_to_string(package.join("package-lock.json"))?;
    let stamp = dir.join("installed-package-lock.json");
    if modules.is_dir() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&*lock) {
        return Ok(Some(modules));
    }
    std::fs::create_dir_all(&dir)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(package.join(file), dir.join(file))?;
    }
    let mut install = Command::new("npm");
    install
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir);
    step("KafkaJS (npm ci, tests/integration/kafkajs)", install)
        .context("cannot install KafkaJS (is the npm registry reachable?)")?;
    std::fs::write(&stamp, &lock)?;
    Ok(Some(modules))
}

/// The Python of the test clients' virtual environment, `<target>/pyenv`: made with
/// `python3 -m venv` and filled from `requirements` on first use, and filled again whenever
/// `requirements` changes (a copy of the file kept beside it says what it holds).
pub(crate) fn python_env(requirements: &Path) -> Result<std::path::PathBuf> {
    python_env_at(&target_dir().join("pyenv"), requirements)
}

/// As [`python_env`], in the virtual environment `venv`.
pub(crate) fn python_env_at(venv: &Path, requirements: &Path) -> Result<std::path::PathBuf> {
    let venv = venv.to_path_buf();
    let python = venv.join("bin").join("python");
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.join("installed-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&*wanted) {
        return Ok(python);
    }
    if !python.is_file() {
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(&venv);
        step(
            &format!(
                "Python environment for the test clients ({})",
                venv.display()
            ),
            create,
        )
        .context(
            "cannot create a Python virtual environment: install Python 3 with its venv module \
             (Debian: `sudo apt-get install python3 python3-venv`), or pass --skip-integration",
        )?;
    }
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    step(
        &format!(
            "Python test clients (pip install -r {})",
            requirements.display()
        ),
        install,
    )
    .context("cannot install the Python test clients (is PyPI reachable?)")?;
    std::fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}

/// kcat comes from the system's package manager, not from PyPI: install it with apt-get when
/// it is missing and this user is root; otherwise say what to run. `Some(why)` if it is missing.
fn ensure_kcat() -> Option<String> {
    if found("kafkacat", "-V") {
        return None;
    }
    ensure_package("kcat", "-V", "kcat", "the kcat tests were skipped")
}

/// iptables drops packets for real in a twin run (packet loss) and in the twin runner's own
/// test of it; without it those are skipped with a note.
fn ensure_iptables() -> Option<String> {
    ensure_package(
        "iptables",
        "-V",
        "iptables",
        "twin runs cannot strike packet loss, and its test is skipped",
    )
}

/// libfaketime skews a broker's clock for real in a twin run (clock skew and drift) and in the
/// twin runner's own test of it; without it those are skipped with a note.
fn ensure_faketime() -> Option<String> {
    ensure_package(
        "faketime",
        "--version",
        "faketime libfaketime",
        "twin runs cannot skew clocks, and its test is skipped",
    )
}

/// Prometheus and promtool (Debian's prometheus package) check the alerting rules and scrape a
/// cluster in `test_monitoring.py`; without them those tests are skipped with a note.
fn ensure_prometheus() -> Option<String> {
    ensure_package(
        "promtool",
        "--version",
        "prometheus",
        "the monitoring tests (promtool, a Prometheus server) were skipped",
    )
}

/// Whether `name` runs (with `arg`).
pub(crate) fn found(name: &str, arg: &str) -> bool {
    Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A tool from the system's package manager: installed with apt-get when it is missing and
/// this user is root; otherwise say what to run and what is lost. `Some(why)` if missing.
pub(crate) fn ensure_package(bin: &str, arg: &str, package: &str, lost: &str) -> Option<String> {
    ensure_installed(bin, || found(bin, arg), package, lost)
}

/// As [`ensure_package`], for something `present` says is there (a tool, a header, …).
pub(crate) fn ensure_installed(
    what: &str,
    present: impl Fn() -> bool,
    package: &str,
    lost: &str,
) -> Option<String> {
    if present() {
        return None;
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root && found("apt-get", "-v") {
        let mut install = Command::new("sh");
        install
            .args([
                "-c",
                &format!("apt-get update -qq && apt-get install -y -qq {package} >/dev/null"),
            ])
            .env("DEBIAN_FRONTEND", "noninteractive");
        if step(&format!("{what} (apt-get install {package})"), install).is_ok() && present() {
            return None;
        }
    }
    let why = format!(
        "{what} is not installed and this user cannot install it ({lost}); install it with \
         `sudo apt-get install {package}` (Debian/Ubuntu)"
    );
    println!("xtask: NOTE: {why}");
    Some(why)
}

/// Runs `body` as a named step: its start, end and time printed, its error named.
pub(crate) fn step_result(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("xtask: ==> {name}");
    let started = Instant::now();
    let outcome = body();
    let elapsed_s = started.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            println!("xtask: <== {name}: ok in {elapsed_s:.1} s");
            Ok(())
        }
        Err(e) => Err(e.context(format!("step failed after {elapsed_s:.1} s: {name}"))),
    }
}

/// Runs one step with its output streaming through, and fails with the step's name.
pub(crate) fn step(name: &str, mut command: Command) -> Result<()> {
    step_result(name, || {
        let status = command
            .status()
            .with_context(|| format!("could not start {:?}", command.get_program()))?;
        if !status.success() {
            bail!("{status}");
        }
        Ok(())
    })
}

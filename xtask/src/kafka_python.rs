//! `cargo xtask kafka-python`: kafka-python's own integration tests (its `test/integration`:
//! the producer's, the consumer's and the admin client's) against a single broker.
//!
//! The tests come from kafka-python's source distribution on PyPI, at the version the
//! integration tests pin (`tests/integration/requirements.txt`), downloaded once into
//! `<target>/kafka-python/<version>`. The distribution lacks one module of the tests' harness
//! (`test.service`, which spawns Kafka); `xtask/kafka-python/service.py` stands in for it, with
//! only the external service the tests use when `KAFKA_URI` names a running broker. The broker
//! is started as kafka-python's own test broker is configured: node id 0, four partitions per
//! auto-created topic, the authorizer on with everything allowed where no ACL names it, a
//! minimum session timeout below the tests' 3 s and no initial rebalance delay. The suite is
//! told it faces Kafka 4.1 (`KAFKA_VERSION`): the version kafka-python infers from the requests
//! the broker serves, and whose behaviour the broker follows where the tests look (config
//! sources, KRaft-only paths, ListConfigResources).
//!
//! The tests that fail for a feature the broker does not serve are listed, each with its
//! reason, in `xtask/kafka-python/expected-failures.tsv`; any other failure fails the command,
//! and so does a listed test that passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::franz_go::Brokers;
use crate::{repo_root, target_dir};

/// The suite's test files.
const FILES: &[&str] = &[
    "test/integration/test_producer_integration.py",
    "test/integration/test_consumer_integration.py",
    "test/integration/test_admin_integration.py",
];
/// The Kafka version the suite is told it runs against.
const KAFKA_VERSION: &str = "4.1.0";
/// The broker's settings, as kafka-python's test broker is configured.
const BROKER_ARGS: &[&str] = &[
    "--node-id",
    "0",
    "--set",
    "default_partitions=4",
    "--set",
    "group_min_session_timeout_ms=1000",
    "--set",
    "group_initial_rebalance_delay_ms=0",
    "--set",
    "authorizer_enabled=true",
    "--set",
    "allow_everyone_if_no_acl_found=true",
];

#[derive(Args, Clone, Debug)]
pub struct KafkaPythonArgs {
    /// The broker binary (default: the release build, built first).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Only the tests pytest selects with this expression (`-k`).
    #[arg(short = 'k', long)]
    select: Option<String>,
    /// Where the broker's data and the log go (default `<target>/kafka-python/run`).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &KafkaPythonArgs) -> Result<()> {
    let broker_bin = match &args.broker_bin {
        Some(b) => b.clone(),
        None => crate::cluster::release_broker()?,
    };
    let python = crate::test::python_env(&repo_root().join("tests/integration/requirements.txt"))?;
    suite(
        &python,
        &broker_bin,
        args.select.as_deref(),
        args.out.clone(),
    )
}

/// The suite against a broker of `broker_bin`, started for it and stopped after it.
pub fn suite(
    python: &Path,
    broker_bin: &Path,
    select: Option<&str>,
    out: Option<PathBuf>,
) -> Result<()> {
    let source = source(python)?;
    let out = out.unwrap_or_else(|| target_dir().join("kafka-python").join("run"));
    std::fs::create_dir_all(&out)?;
    let brokers = Brokers::start_with(&out, 1, broker_bin, BROKER_ARGS)?;
    let result = run_tests(python, &source, &brokers.seeds, select, &out);
    let dead = brokers.dead();
    brokers.stop();
    if let Some(dead) = dead {
        bail!(
            "{dead} exited during kafka-python's tests: see its log under {}",
            out.display()
        );
    }
    result
}

/// kafka-python's version, as the integration tests pin it.
fn version() -> Result<String> {
    let requirements =
        std::fs::read_to_string(repo_root().join("tests/integration/requirements.txt"))?;
    requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("kafka-python=="))
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string())
        .context("tests/integration/requirements.txt pins no kafka-python version")
}

/// The source distribution, unpacked with the stand-in harness module in place.
fn source(python: &Path) -> Result<PathBuf> {
    let version = version()?;
    let dir = target_dir().join("kafka-python").join(&version);
    let source = dir.join(format!("kafka_python-{version}"));
    if !source.join("test").join("integration").is_dir() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut download = Command::new(python);
        download
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
            ])
            .arg(format!("kafka-python=={version}"))
            .arg("-d")
            .arg(&dir)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
        crate::test::step(
            &format!("kafka-python {version}'s source (pip download)"),
            download,
        )?;
        let mut unpack = Command::new("tar");
        unpack
            .arg("xzf")
            .arg(format!("kafka_python-{version}.tar.gz"))
            .current_dir(&dir);
        crate::test::step("unpack kafka-python's source", unpack)?;
    }
    let tests = source.join("test");
    std::fs::write(tests.join("__init__.py"), "")?;
    std::fs::write(tests.join("integration").join("__init__.py"), "")?;
    std::fs::copy(
        repo_root()
            .join("xtask")
            .join("kafka-python")
            .join("service.py"),
        tests.join("service.py"),
    )?;
    Ok(source)
}

/// The tests, one pytest run; the outcome of each compared with the list of expected failures.
/// A test that fails unexpectedly is run once more, alone: one that then passes is reported as
/// flaky (with both logs) rather than failing the step; one that fails again fails it.
fn run_tests(
    python: &Path,
    source: &Path,
    seeds: &str,
    select: Option<&str>,
    out: &Path,
) -> Result<()> {
    let log_path = out.join("pytest.log");
    println!(
        "xtask: kafka-python's own integration tests against {seeds} (log: {})",
        log_path.display()
    );
    let mut args: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
    if let Some(select) = select {
        args.extend(["-k".to_string(), select.to_string()]);
    }
    let outcomes = pytest(python, source, seeds, &args, &log_path)?;
    let expected = expected_failures()?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut unexpected_failures = Vec::new();
    for (test, outcome) in &outcomes {
        *counts.entry(outcome).or_default() += 1;
        let failed = matches!(*outcome, "FAILED" | "ERROR");
        match (failed, expected.get(test)) {
            (true, None) => unexpected_failures.push(test.clone()),
            (false, Some(_)) if *outcome == "PASSED" => wrong.push(format!(
                "PASSED {test}, listed as failing in xtask/kafka-python/expected-failures.tsv: \
                 take it off the list"
            )),
            (true, Some(why)) => println!("  expected: {outcome} {test} ({why})"),
            _ => {}
        }
    }
    let summary: Vec<String> = counts.iter().map(|(o, n)| format!("{n} {o}")).collect();
    println!("  kafka-python's tests: {}", summary.join(", "));
    if !unexpected_failures.is_empty() {
        let rerun_log = out.join("pytest-rerun.log");
        let again = pytest(python, source, seeds, &unexpected_failures, &rerun_log)?;
        for test in &unexpected_failures {
            match again.iter().find(|(t, _)| t == test).map(|(_, o)| *o) {
                Some("PASSED") => println!(
                    "  flaky: {test} failed, then passed when run again alone (logs: {}, {})",
                    log_path.display(),
                    rerun_log.display()
                ),
                other => wrong.push(format!(
                    "FAILED {test} (run again alone: {})",
                    other.unwrap_or("not run")
                )),
            }
        }
    }
    if !wrong.is_empty() {
        for line in &wrong {
            println!("  {line}");
        }
        bail!(
            "kafka-python's tests: {} unexpected outcome(s): see {}",
            wrong.len(),
            log_path.display()
        );
    }
    Ok(())
}

/// One pytest run of `args` (files, `-k`, or test ids), its output in `log_path`; every
/// test's outcome.
fn pytest(
    python: &Path,
    source: &Path,
    seeds: &str,
    args: &[String],
    log_path: &Path,
) -> Result<Vec<(String, &'static str)>> {
    let log = std::fs::File::create(log_path)?;
    let mut command = Command::new(python);
    command
        .args([
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore",
            "-q",
            "-rA",
        ])
        .args([
            "-o",
            "addopts=",
            "-o",
            "log_level=WARNING",
            "--timeout",
            "120",
        ])
        .args(args)
        .current_dir(source)
        // The harness checks that a Kafka installation exists even when it starts none.
        .env("KAFKA_ROOT", source)
        .env("KAFKA_URI", format!("PLAINTEXT://{seeds}"))
        .env("KAFKA_VERSION", KAFKA_VERSION)
        .stdout(log.try_clone()?)
        .stderr(log);
    let status = command.status().context("running pytest")?;
    let text = std::fs::read_to_string(log_path)?;
    let outcomes = outcomes(&text);
    if outcomes.is_empty() {
        bail!(
            "pytest reported no test ({status}): see {}",
            log_path.display()
        );
    }
    Ok(outcomes)
}

/// Every test's outcome from pytest's `-rA` summary: `PASSED path::name`, `FAILED path::name -
/// why`, `ERROR …`, `SKIPPED [n] path:line: why` (skips are counted under their file).
fn outcomes(text: &str) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    for line in text.lines() {
        for outcome in ["PASSED", "FAILED", "ERROR", "XFAIL", "XPASS"] {
            if let Some(rest) = line.strip_prefix(outcome).and_then(|r| r.strip_prefix(' ')) {
                let test = rest.split(" - ").next().unwrap_or(rest).trim();
                if test.contains("::") {
                    found.push((test.to_string(), outcome));
                }
            }
        }
        if let Some(rest) = line.strip_prefix("SKIPPED [") {
            let count = rest.split(']').next().and_then(|n| n.parse::<usize>().ok());
            for _ in 0..count.unwrap_or(1) {
                found.push((line.to_string(), "SKIPPED"));
            }
        }
    }
    found
}

/// The expected failures: test id → reason.
fn expected_failures() -> Result<BTreeMap<String, String>> {
    let path = repo_root().join("xtask/kafka-python/expected-failures.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(t, why)| (t.trim().to_string(), why.trim().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_read_from_the_short_summary() {
        let text = "\
=========================== short test summary info ============================
PASSED test/integration/test_producer_integration.py::test_end_to_end[None]
SKIPPED [2] test/testutil.py:52: Compression libraries not installed for snappy
FAILED test/integration/test_admin_integration.py::test_x - kafka.errors.Foo: bar
ERROR test/integration/test_admin_integration.py::test_y
3 failed, 42 passed, 11 skipped in 14.57s";
        let found = outcomes(text);
        assert_eq!(found.len(), 5);
        assert_eq!(
            found[0],
            (
                "test/integration/test_producer_integration.py::test_end_to_end[None]".to_string(),
                "PASSED"
            )
        );
        assert_eq!(found[1].1, "SKIPPED");
        assert_eq!(
            found[3],
            (
                "test/integration/test_admin_integration.py::test_x".to_string(),
                "FAILED"
            )
        );
        assert_eq!(found[4].1, "ERROR");
    }

    #[test]
    fn every_expected_failure_has_a_reason() {
        let expected = expected_failures().unwrap();
        assert!(!expected.is_empty());
        for (test, why) in expected {
            assert!(test.contains("::"), "{test}");
            assert!(why.len() > 20, "{test}: {why}");
        }
    }
}

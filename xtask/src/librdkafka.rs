//! `cargo xtask librdkafka`: librdkafka's own test suite (its `tests/` directory, in the source
//! the `rdkafka-sys` crate of this workspace carries: the librdkafka `loadgen` is built with)
//! against the broker — by default the tests that exercise transactions and `read_committed`
//! against a real broker, on a three-node cluster (their topics have three replicas).
//!
//! The source is copied once into `<target>/librdkafka-tests/<version>` and built there
//! (`./configure` without TLS, SASL, zstd or curl; the library, then the test runner), so a
//! second run builds nothing. Each run writes the suite's `test.conf` with the brokers'
//! addresses, runs `test-runner` for the chosen tests, one at a time, with its output in
//! `<out>/test-runner.log`, and prints the suite's own table of results; any failed test fails
//! the command. The suite reads the broker's version from `TEST_KAFKA_VERSION` to choose what
//! it may expect; the broker serves Kafka 3.9's requests, so that is what it is told.
//!
//! Some tests run a Java program of the suite's own (`tests/java`: 0098's transactional
//! producer) through a Kafka installation named by `KAFKA_PATH`. Only two things of it are
//! used: `libs/kafka-clients-*.jar` to compile the program against, and
//! `bin/kafka-run-class.sh` to run it. The command makes such a directory,
//! `<target>/librdkafka-tests/kafka-<version>`: Kafka's Java client and the logging API it
//! needs, from Maven Central (the Java tests' local repository), and
//! `xtask/librdkafka/kafka-run-class.sh`, which runs a class with those jars.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::franz_go::Brokers;
use crate::{repo_root, target_dir};

/// The tests run by default: 0103 (transactions: misuse, basic commits and aborts with and
/// without compression, consume-transform-produce, fencing, empty transactions, the
/// watermarks at each isolation level, an abort marker's leader epoch), 0129 (a
/// read_committed consumer fetching past aborted messages), 0061 (consumer lag with
/// transactions), 0137 (batch consumption across transactions' markers), 0055 (producer
/// latency, transactional too), 0098 (a read_committed consumer of what a Java transactional
/// producer wrote: commits and aborts interleaved with plain messages, across partitions).
const DEFAULT_TESTS: &str = "0103,0129,0061,0137,0055,0098";
/// `--tests groups`: the suite's consumer-group tests that talk to a broker (termination,
/// batch consumption, commits, subscription updates and regular expressions, max poll
/// interval, static members, session timeouts, cooperative rebalances, close, commits in a
/// rebalance, asymmetric subscriptions, buffers after a rebalance, assignor order, member ids).
const GROUP_TESTS: &str = "0018,0022,0030,0045,0089,0102,0106,0113,0116,0118,0120,0122,0132,0153";
/// The Java client the suite's Java programs run with, and the logging API it needs.
const JAVA_JARS: &[&str] = &[
    "org.apache.kafka:kafka-clients:3.9.1",
    "org.slf4j:slf4j-api:1.7.36",
];
/// The Kafka version the suite is told it runs against: 3.9 with the classic group protocol,
/// 4.0 (where KIP-848's protocol is generally available) with the consumer protocol.
fn kafka_version(protocol: GroupProtocol) -> &'static str {
    match protocol {
        GroupProtocol::Classic => "3.9.0",
        GroupProtocol::Consumer => "4.0.0",
    }
}

/// The group protocol the suite's consumers use (its `TEST_CONSUMER_GROUP_PROTOCOL`).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum GroupProtocol {
    Classic,
    Consumer,
}

#[derive(Args, Clone, Debug)]
pub struct LibrdkafkaArgs {
    /// The suite's tests to run, by number (its `TESTS`), or `groups` for its consumer-group
    /// tests.
    #[arg(long, default_value = DEFAULT_TESTS)]
    tests: String,
    /// The group protocol of the suite's consumers (`consumer`: KIP-848's).
    #[arg(long, value_enum, default_value = "classic")]
    group_protocol: GroupProtocol,
    /// Brokers: 1 (a single node) or 3 (a cluster, RF 3: what the transaction tests need).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// The broker binary (default: the release build, built first).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Where the brokers' data and the log go (default `<target>/librdkafka-tests/run`).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &LibrdkafkaArgs) -> Result<()> {
    if !matches!(args.nodes, 1 | 3) {
        bail!("--nodes is 1 or 3");
    }
    let (version, source) = source()?;
    let build = target_dir().join("librdkafka-tests").join(&version);
    let runner = test_runner(&source, &build)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("librdkafka-tests").join("run"));
    std::fs::create_dir_all(&out)?;
    let broker_bin = match &args.broker_bin {
        Some(b) => b.clone(),
        None => crate::cluster::release_broker()?,
    };
    let kafka_path = kafka_path()?;
    // Four partitions for a topic made without a count, as the suite's Kafka clusters have
    // (its group tests produce to partitions 0 to 3 of topics made on first use).
    let brokers = Brokers::start_with(
        &out,
        args.nodes,
        &broker_bin,
        &["--set", "default_partitions=4"],
    )?;
    let tests = match args.tests.as_str() {
        "groups" => GROUP_TESTS,
        tests => tests,
    };
    let result = run_tests(
        &runner,
        &brokers.seeds,
        tests,
        args.group_protocol,
        &kafka_path,
        &out,
    );
    if let Some(dead) = brokers.dead() {
        brokers.stop();
        bail!(
            "{dead} exited during the tests: see its log under {}",
            out.display()
        );
    }
    brokers.stop();
    result
}

/// The librdkafka version `rdkafka-sys` carries (from Cargo.lock) and its source, fetched into
/// cargo's registry if it is not there yet.
fn source() -> Result<(String, PathBuf)> {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock"))?;
    let crate_version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"rdkafka-sys\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .context("Cargo.lock has no rdkafka-sys")?;
    // 4.10.0+2.12.1: the crate's version, then librdkafka's.
    let version = crate_version
        .split_once('+')
        .map_or(crate_version.as_str(), |(_, v)| v)
        .to_string();
    let find = || -> Option<PathBuf> {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        std::fs::read_dir(home.join("registry").join("src"))
            .ok()?
            .flatten()
            .map(|index| {
                index
                    .path()
                    .join(format!("rdkafka-sys-{crate_version}"))
                    .join("librdkafka")
            })
            .find(|dir| dir.join("tests").join("Makefile").is_file())
    };
    if let Some(dir) = find() {
        return Ok((version, dir));
    }
    let mut fetch = crate::cargo();
    fetch.arg("fetch").current_dir(repo_root());
    crate::test::step("cargo fetch", fetch)?;
    let dir = find().context("rdkafka-sys's librdkafka source is not in cargo's registry")?;
    Ok((version, dir))
}

/// The header by which librdkafka's `./configure` finds RapidJSON, without which the suite
/// skips the tests that check JSON (0098 among them).
const RAPIDJSON_HEADER: &str = "/usr/include/rapidjson/schema.h";

/// The suite's test runner, built once in `build` from a copy of `source` (again when
/// RapidJSON has come or gone since).
fn test_runner(source: &Path, build: &Path) -> Result<PathBuf> {
    let tests = build.join("tests");
    let runner = tests.join("test-runner");
    crate::test::ensure_installed(
        "RapidJSON",
        || Path::new(RAPIDJSON_HEADER).is_file(),
        "rapidjson-dev",
        "the suite skips the tests that check JSON, 0098 among them",
    );
    let with_rapidjson = std::fs::read_to_string(build.join("config.h"))
        .is_ok_and(|h| h.contains("#define WITH_RAPIDJSON 1"));
    if runner.is_file() && with_rapidjson == Path::new(RAPIDJSON_HEADER).is_file() {
        return Ok(runner);
    }
    let _ = std::fs::remove_dir_all(build);
    std::fs::create_dir_all(build.parent().expect("under the target directory"))?;
    let status = Command::new("cp")
        .arg("-r")
        .arg(source)
        .arg(build)
        .status()?;
    if !status.success() {
        bail!("copying {} failed", source.display());
    }
    Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(build)
        .status()?;
    let mut configure = Command::new("./configure");
    configure
        .args([
            "--disable-ssl",
            "--disable-gssapi",
            "--disable-sasl",
            "--disable-zstd",
            "--disable-curl",
            "--disable-lz4-ext",
        ])
        .current_dir(build);
    crate::test::step("librdkafka ./configure", configure)?;
    let mut libs = Command::new("make");
    libs.args(["-j2", "libs"]).current_dir(build);
    crate::test::step("librdkafka make libs", libs)?;
    let mut runner_build = Command::new("make");
    runner_build
        .args(["-j2", "test-runner"])
        .current_dir(&tests);
    crate::test::step("librdkafka make -C tests test-runner", runner_build)?;
    Ok(runner)
}

/// The directory given as `KAFKA_PATH`: `libs/` with [`JAVA_JARS`] and `bin/kafka-run-class.sh`.
fn kafka_path() -> Result<PathBuf> {
    let dir = target_dir().join("librdkafka-tests").join("kafka-java");
    let libs = dir.join("libs");
    for artifact in JAVA_JARS {
        let mut parts = artifact.split(':').skip(1);
        let (name, version) = (parts.next(), parts.next());
        let jar = libs.join(format!(
            "{}-{}.jar",
            name.context("artifact")?,
            version.context("version")?
        ));
        if jar.is_file() {
            continue;
        }
        std::fs::create_dir_all(&libs)?;
        let mut copy = Command::new("mvn");
        copy.args(["-B", "-ntp", "-q", "dependency:copy"])
            .arg(format!("-Dartifact={artifact}"))
            .arg(format!("-DoutputDirectory={}", libs.display()))
            .arg(format!(
                "-Dmaven.repo.local={}",
                target_dir().join("m2").display()
            ))
            .current_dir(&dir);
        crate::test::step(&format!("{artifact} (Maven) for KAFKA_PATH"), copy)?;
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(
        repo_root().join("xtask/librdkafka/kafka-run-class.sh"),
        bin.join("kafka-run-class.sh"),
    )?;
    Ok(dir)
}

/// Run `tests` against `seeds`; the suite's table of results printed, an error if any failed.
fn run_tests(
    runner: &Path,
    seeds: &str,
    tests: &str,
    protocol: GroupProtocol,
    kafka_path: &Path,
    out: &Path,
) -> Result<()> {
    let dir = runner.parent().expect("in the tests directory");
    std::fs::write(
        dir.join("test.conf"),
        format!("bootstrap.servers={seeds}\n"),
    )?;
    let log_path = out.join("test-runner.log");
    let log = std::fs::File::create(&log_path)?;
    let lib = dir.parent().expect("in the source").to_path_buf();
    println!(
        "xtask: librdkafka's tests {tests} against {seeds}, {protocol:?} group protocol (log: {})",
        log_path.display()
    );
    let status = Command::new(runner)
        .arg("-p1")
        .current_dir(dir)
        .env("TESTS", tests)
        .env("TEST_KAFKA_VERSION", kafka_version(protocol))
        .env(
            "TEST_CONSUMER_GROUP_PROTOCOL",
            match protocol {
                GroupProtocol::Classic => "classic",
                GroupProtocol::Consumer => "consumer",
            },
        )
        .env("KAFKA_PATH", kafka_path)
        .env(
            "LD_LIBRARY_PATH",
            format!(
                "{}:{}",
                lib.join("src").display(),
                lib.join("src-cpp").display()
            ),
        )
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {}", runner.display()))?;
    let text = std::fs::read_to_string(&log_path)?;
    // The suite's closing table: `| <name> | PASSED | 12.3s |`, in colour.
    let mut table: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(strip_colour)
        .collect();
    table.dedup();
    for line in &table {
        println!("  {line}");
    }
    if !status.success() || table.iter().any(|l| l.contains("FAILED")) {
        bail!(
            "librdkafka's tests failed ({status}): see {}",
            log_path.display()
        );
    }
    Ok(())
}

/// `line` without its terminal colour codes.
fn strip_colour(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

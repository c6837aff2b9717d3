//! The Java client's tests (`tests/java`): JUnit 5 through Maven, once per version of Apache
//! Kafka's `kafka-clients` in [`CLIENT_VERSIONS`], against the broker binary the integration
//! tests use. Maven's downloads are kept under the target directory (`<target>/m2`), and each
//! version's build under `<target>/java/<version>`, so a second run downloads nothing and the
//! clone stays clean.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};
use clap::Args;

use crate::test::{ensure_package, found, step};
use crate::{repo_root, target_dir};

/// The newest client, and the last of the 3.x line (still the most deployed).
pub const CLIENT_VERSIONS: &[&str] = &["4.4.0", "3.9.1"];

/// What `cargo xtask test` leaves out of a version's run, as a surefire `-Dtest` filter: the
/// Streams, Connect and transaction tests run with the newest client only (about 110 s a
/// version on two cores); `cargo xtask java --kafka-version V` runs everything.
fn left_out_in_test(version: &str) -> Option<&'static str> {
    (version != CLIENT_VERSIONS[0]).then_some("!StreamsTest,!ConnectTest,!TransactionsTest")
}

#[derive(Args, Clone, Debug)]
pub struct JavaArgs {
    /// One kafka-clients version (default: each of 4.4.0 and 3.9.1).
    #[arg(long)]
    kafka_version: Option<String>,
    /// The broker binary (default: the debug build, built first).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
}

/// `cargo xtask java`: the suite alone.
pub fn run(args: &JavaArgs) -> Result<()> {
    let broker_bin = match &args.broker_bin {
        Some(bin) => bin.clone(),
        None => crate::test::build_broker()?,
    };
    match &args.kafka_version {
        Some(version) => tests(&broker_bin, &[version.as_str()], false),
        None => tests(&broker_bin, CLIENT_VERSIONS, false),
    }
}

/// Runs the suite once per client version (for `cargo xtask test`, `in_test`, without what
/// [`left_out_in_test`] says); all versions run, and a failure of any is returned.
pub fn tests(broker_bin: &Path, versions: &[&str], in_test: bool) -> Result<()> {
    tools()?;
    let mut failed = Vec::new();
    for version in versions {
        let (name, command) = suite(broker_bin, version, in_test);
        if let Err(e) = step(&name, command) {
            println!("xtask: {e}");
            failed.push(*version);
        }
    }
    if !failed.is_empty() {
        bail!(
            "the Java client tests failed with kafka-clients {} (reports in {})",
            failed.join(", "),
            target_dir().join("java").display()
        );
    }
    Ok(())
}

/// Maven (installed when missing) and openssl, which the suite needs.
pub fn tools() -> Result<()> {
    if let Some(why) = ensure_package("mvn", "-v", "maven", "the Java client tests cannot run") {
        bail!("{why}; or pass --skip-java");
    }
    if !found("openssl", "version") {
        bail!("openssl is needed to make the Java TLS tests' certificates; or pass --skip-java");
    }
    Ok(())
}

/// The suite's run with kafka-clients `version` (for `cargo xtask test`, `in_test`, without
/// what [`left_out_in_test`] says), and its name as a step.
pub fn suite(broker_bin: &Path, version: &str, in_test: bool) -> (String, Command) {
    let filter = left_out_in_test(version).filter(|_| in_test);
    let name = format!(
        "Java client tests, kafka-clients {version} (cd tests/java && mvn test \
         -Dkafka.version={version}{})",
        filter.map(|f| format!(" -Dtest='{f}'")).unwrap_or_default()
    );
    let mut command = maven(broker_bin, version);
    if let Some(filter) = filter {
        command.arg(format!("-Dtest={filter}"));
    }
    (name, command)
}

fn maven(broker_bin: &Path, version: &str) -> Command {
    let target = target_dir();
    let mut command = Command::new("mvn");
    command
        .args(["-B", "-ntp", "test"])
        .arg(format!("-Dkafka.version={version}"))
        .arg(format!(
            "-Dmaven.repo.local={}",
            target.join("m2").display()
        ))
        .arg(format!(
            "-Dstillwater.build={}",
            target.join("java").join(version).display()
        ))
        .current_dir(repo_root().join("tests").join("java"))
        .env("STILLWATER_BROKER_BIN", broker_bin);
    command
}

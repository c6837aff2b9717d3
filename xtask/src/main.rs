//! `cargo xtask …`: the commands people type to test and benchmark Stillwater.
//!
//! - `cargo xtask test` (alias `ci`): unit tests, the broker binary, the integration tests.
//! - `cargo xtask bench produce | fetch`: load a running broker (or one it spawns) and print a
//!   table of throughput, latency, group-commit batching and how busy the machine was.
//! - `cargo xtask sim run | sweep …`: the deterministic simulator (built with `--cfg madsim`).
//! - `cargo xtask cluster up | down | status`: a local three-node cluster.
//! - `cargo xtask java [--kafka-version V] [--broker-bin B]`: only the Java client's tests.
//! - `cargo xtask franz-go [--nodes 1|3]`: franz-go's own integration tests, with a table.
//! - `cargo xtask librdkafka [--tests 0103,…]`: librdkafka's own tests (transactions and
//!   read_committed by default) against a three-node cluster.
//! - `cargo xtask kafka up | down | status`: Apache Kafka itself, beside the broker.
//! - `cargo xtask differential`: the same requests to Kafka and to the broker, compared.
//! - `cargo xtask kafka-python`: kafka-python's own integration tests against a single node.
//!
//! xtask runs the other crates as processes; it never links the broker.

mod bench;
mod bisect;
mod cluster;
mod franz_go;
mod java;
mod kafka;
mod kafka_python;
mod librdkafka;
mod package;
mod planted;
mod secure;
mod seed_path;
mod sim;
mod test;
#[cfg(test)]
mod tidy;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Stillwater project automation",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every test: unit and property tests (nextest), then the integration tests (pytest)
    /// against a freshly built broker binary.
    Test(test::TestArgs),
    /// What CI runs: the same as `test`.
    Ci(test::TestArgs),
    /// Load a broker and report throughput, latency and commit batching.
    Bench(Box<bench::BenchArgs>),
    /// Run the simulator: `run <scenario> --seed N`, `sweep <scenario|all> --seeds A..B`.
    Sim(sim::SimArgs),
    /// A local three-node cluster: `up` (on 127.0.0.1:9092-9094), `down`, `status`.
    Cluster(cluster::ClusterArgs),
    /// Only the Java client's tests (tests/java), as `test` runs them.
    Java(java::JavaArgs),
    /// franz-go's own integration tests (pkg/kgo) against one node or three, with a table.
    FranzGo(franz_go::FranzGoArgs),
    /// librdkafka's own tests (its transaction and read_committed tests by default) against
    /// three nodes, or one.
    Librdkafka(librdkafka::LibrdkafkaArgs),
    /// Apache Kafka itself (KRaft, one node or three), resolved with Maven, beside the broker.
    Kafka(kafka::KafkaArgs),
    /// The differential suite: the same requests to Apache Kafka and to the broker, compared.
    Differential(kafka::DifferentialArgs),
    /// kafka-python's own integration tests (producer, consumer, admin) against a single node.
    KafkaPython(kafka_python::KafkaPythonArgs),
    /// A defect planted in a scratch commit, through the failing seed's whole path: JUnit,
    /// the explorable page in headless Chromium, explain, bisection.
    Planted(planted::PlantedArgs),
    /// The rolling-upgrade test: a three-node cluster of an earlier version's release broker
    /// (built once) rolled to this one under load, the format level raised, the earlier
    /// version then refused.
    Upgrade(upgrade::UpgradeArgs),
    /// The Debian package (dpkg-deb): the release broker, its systemd unit, a commented
    /// configuration, the stillwater user.
    Package(package::PackageArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) | Command::Ci(args) => test::run(&args),
        Command::Bench(args) => {
            if cfg!(debug_assertions) {
                optimised_self()
            } else {
                bench::run(*args)
            }
        }
        Command::Sim(args) => sim::run(&args),
        Command::Cluster(args) => cluster::run(&args),
        Command::Java(args) => java::run(&args),
        Command::FranzGo(args) => franz_go::run(&args),
        Command::Librdkafka(args) => librdkafka::run(&args),
        Command::Kafka(args) => kafka::run(&args),
        Command::Differential(args) => kafka::run_differential(&args),
        Command::KafkaPython(args) => kafka_python::run(&args),
        Command::Planted(args) => planted::run(&args),
        Command::Upgrade(args) => upgrade::run(&args),
        Command::Package(args) => package::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line with the whole cause chain; a backtrace would only show xtask's own code.
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask` is a debug build (the alias is `cargo run`). A load generator compiled without
/// optimisation spent more CPU than the broker it measured, on the same 2 cores; so the bench
/// runs in a release build of xtask, with the same arguments.
fn optimised_self() -> anyhow::Result<()> {
    use anyhow::Context;
    let status = cargo()
        .args(["build", "--quiet", "--release", "-p", "xtask"])
        .status()
        .context("building the release xtask for the benchmark")?;
    if !status.success() {
        anyhow::bail!("building the release xtask failed ({status})");
    }
    let exe = target_dir().join("release").join("xtask");
    let status = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    if !status.success() {
        anyhow::bail!("the benchmark failed ({status})");
    }
    Ok(())
}

/// The workspace root: xtask lives one directory below it.
///
/// Taken from `CARGO_MANIFEST_DIR` as `cargo run` sets it when xtask runs, not as it was when
/// xtask was compiled: with one target directory shared by two checkouts (CI's cache), cargo
/// may reuse an xtask built in the other one, and everything would then run there.
pub(crate) fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set (relative paths are relative to the
/// workspace root, where xtask runs cargo), else `<repo>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// The cargo that invoked us (`cargo xtask` sets `CARGO`), so toolchain overrides carry over.
///
/// Without the variables `cargo run` set for xtask itself (its manifest directory, its
/// package's name and version, …): a build script that reads one (ring's reads
/// `CARGO_MANIFEST_DIR`) would see it change between a build from here and the same build from
/// a shell, and cargo would rebuild it and everything above it — ring, rustls, the broker —
/// each time one follows the other. With them gone, `cargo xtask cluster up` and
/// `cargo run --release -p broker` share one release broker.
fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(repo_root());
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let ours = name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if ours {
            command.env_remove(name);
        }
    }
    command
}

/// The command line as the user typed it, for pasting next to the figures it produced.
pub(crate) fn invocation() -> String {
    let mut line = String::from("cargo xtask");
    for arg in std::env::args().skip(1) {
        line.push(' ');
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
        if plain {
            line.push_str(&arg);
        } else {
            line.push('\'');
            line.push_str(&arg.replace('\'', r"'\''"));
            line.push('\'');
        }
    }
    line
}

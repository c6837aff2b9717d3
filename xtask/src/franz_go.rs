//! `cargo xtask franz-go`: franz-go's own integration tests (`pkg/kgo` of
//! `github.com/twmb/franz-go` at [`VERSION`]) against the broker, one node or three.
//!
//! The module comes from the Go module proxy into `<target>/go` (module cache, build cache, a
//! writable copy of the source, the compiled test binary), so a second run downloads and builds
//! nothing. Every top-level test runs alone (`-test.run '^Name$'`) with a time limit, its output
//! in `<out>/logs/<Name>.log`; the table of results (pass / fail / skip / timeout, seconds, and
//! the first thing a failing or skipped test said) goes to `<out>/results.md` and
//! `<out>/results.tsv`. The suite reads its broker from `KGO_SEEDS` and its replication factor
//! from `KGO_TEST_RF`; it runs outside `cargo xtask test` (about 8 minutes a run, most of it
//! one transactional test that spins until its limit while transactions are not served).

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{repo_root, target_dir};

/// The franz-go release whose tests run.
const VERSION: &str = "v1.22.3";
const MODULE: &str = "github.com/twmb/franz-go";
/// The single node's ports (the local cluster's are 9092–9100).
const SINGLE_PORT: u16 = 9392;
const SINGLE_METRICS_PORT: u16 = 9393;
/// The single node's SASL_PLAINTEXT listener, for the suite's SCRAM tests.
const SINGLE_SASL_PORT: u16 = 9394;
/// The user the SCRAM tests log in as (`KGO_TEST_SCRAM`), made with `--add-scram`.
const SCRAM_USER: (&str, &str) = ("kgo", "kgo-secret");
/// A test's log is cut to its first and last lines past this size (a test that fails in a loop
/// writes hundreds of MB).
const LOG_KEEP_BYTES: u64 = 4 << 20;

#[derive(Args, Clone, Debug)]
pub struct FranzGoArgs {
    /// Brokers: 1 (a single node, the broker's default mode) or 3 (a cluster, RF 3).
    #[arg(long, default_value_t = 1)]
    nodes: u16,
    /// The broker binary (default: the release build, built first).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Each test's time limit.
    #[arg(long, default_value_t = 300)]
    test_timeout_s: u64,
    /// Only the tests whose names match this regular expression (Go's syntax).
    #[arg(long, default_value = "^Test")]
    run: String,
    /// Where the logs and the table go (default `<target>/franz-go/<N>-node`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One test's outcome.
struct Outcome {
    name: String,
    result: &'static str,
    seconds: f64,
    note: String,
}

pub fn run(args: &FranzGoArgs) -> Result<()> {
    if !matches!(args.nodes, 1 | 3) {
        bail!("--nodes is 1 or 3");
    }
    if !crate::test::found("go", "version") {
        bail!("Go is needed (the go command, with the module proxy reachable)");
    }
    let go_dir = target_dir().join("go");
    let source = source(&go_dir)?;
    let binary = test_binary(&go_dir, &source)?;
    let out = args.out.clone().unwrap_or_else(|| {
        target_dir()
            .join("franz-go")
            .join(format!("{}-node", args.nodes))
    });
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let tests = list(&binary, &source, &args.run)?;
    println!("xtask: {} tests of franz-go {VERSION} pkg/kgo", tests.len());
    let broker_bin = match &args.broker_bin {
        Some(b) => b.clone(),
        None => crate::cluster::release_broker()?,
    };
    let brokers = Brokers::start(&out, args.nodes, &broker_bin)?;
    let mut outcomes = Vec::new();
    let result = (|| -> Result<()> {
        for name in &tests {
            let outcome = run_one(&binary, &source, name, &brokers, &logs, args.test_timeout_s)?;
            println!(
                "xtask: {:<60} {:<7} {:>6.1} s  {}",
                outcome.name, outcome.result, outcome.seconds, outcome.note
            );
            outcomes.push(outcome);
            if let Some(dead) = brokers.dead() {
                bail!(
                    "{dead} exited during {name}: see its log under {}",
                    out.display()
                );
            }
        }
        Ok(())
    })();
    brokers.stop();
    write_results(&out, args, &outcomes)?;
    result
}

/// The module's source, downloaded once and copied where it may be built (the module cache is
/// read-only).
fn source(go_dir: &Path) -> Result<PathBuf> {
    let copy = go_dir.join(format!("franz-go-{VERSION}"));
    if copy.join("go.mod").is_file() {
        return Ok(copy);
    }
    // A fresh target directory has no go directory yet (the command's working directory).
    std::fs::create_dir_all(go_dir)?;
    let mut download = go(go_dir);
    download
        .args(["mod", "download", &format!("{MODULE}@{VERSION}")])
        .current_dir(go_dir);
    crate::test::step(&format!("go mod download {MODULE}@{VERSION}"), download)?;
    let cached = go_dir.join("mod").join(format!("{MODULE}@{VERSION}"));
    let status = Command::new("cp")
        .arg("-r")
        .arg(&cached)
        .arg(&copy)
        .status()?;
    if !status.success() {
        bail!("copying {} failed", cached.display());
    }
    Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&copy)
        .status()?;
    Ok(copy)
}

/// `go test -c` of `pkg/kgo`, once.
fn test_binary(go_dir: &Path, source: &Path) -> Result<PathBuf> {
    let binary = go_dir.join(format!("kgo-{VERSION}.test"));
    if binary.is_file() {
        return Ok(binary);
    }
    let mut build = go(go_dir);
    build
        .args(["test", "-c", "-o"])
        .arg(&binary)
        .arg("./pkg/kgo")
        .current_dir(source);
    crate::test::step("go test -c ./pkg/kgo", build)?;
    Ok(binary)
}

/// The go command with its caches under the target directory.
fn go(go_dir: &Path) -> Command {
    let mut command = Command::new("go");
    command
        .env("GOMODCACHE", go_dir.join("mod"))
        .env("GOCACHE", go_dir.join("cache"))
        .env("GOFLAGS", "-mod=mod");
    command
}

fn list(binary: &Path, source: &Path, run: &str) -> Result<Vec<String>> {
    let output = Command::new(binary)
        .args(["-test.list", run])
        .current_dir(source.join("pkg").join("kgo"))
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("{} -test.list failed", binary.display());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("Test"))
        .map(str::to_string)
        .collect())
}

fn run_one(
    binary: &Path,
    source: &Path,
    name: &str,
    brokers: &Brokers,
    logs: &Path,
    timeout_s: u64,
) -> Result<Outcome> {
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["-test.run", &format!("^{name}$"), "-test.v"])
        .arg(format!("-test.timeout={timeout_s}s"))
        .current_dir(source.join("pkg").join("kgo"))
        .env("KGO_SEEDS", &brokers.seeds)
        .env("KGO_TEST_RF", brokers.nodes.to_string())
        .env("KGO_LOG_LEVEL", "none")
        .envs(brokers.scram.iter().flat_map(|seeds| {
            [
                ("KGO_TEST_SCRAM_SEEDS", seeds.clone()),
                (
                    "KGO_TEST_SCRAM",
                    format!("{}:{}:256", SCRAM_USER.0, SCRAM_USER.1),
                ),
            ]
        }))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    // Go's own limit panics the test binary; this one is for a binary that hangs past it.
    let hard = Duration::from_secs(timeout_s + 60);
    let killed = loop {
        if child.try_wait()?.is_some() {
            break false;
        }
        if started.elapsed() > hard {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seconds = started.elapsed().as_secs_f64();
    let (result, note) = classify(&log_path, name, killed)?;
    trim(&log_path)?;
    Ok(Outcome {
        name: name.to_string(),
        result,
        seconds,
        note,
    })
}

/// The outcome of a test from its `-test.v` output (read line by line: a test failing in a
/// loop writes hundreds of MB), and the first thing it said that is not a skipped KIP-848
/// variant: its failure, or why it skipped.
fn classify(log: &Path, name: &str, killed: bool) -> Result<(&'static str, String)> {
    use std::io::BufRead as _;
    let reader = std::io::BufReader::new(std::fs::File::open(log)?);
    let (mut timed_out, mut failed, mut skipped, mut passed) = (killed, false, false, false);
    let (mut first_said, mut first_any, mut subtests_skipped) = (None::<String>, None, 0usize);
    for line in reader.lines() {
        let line = line.unwrap_or_default();
        let l = line.trim();
        timed_out |= l.starts_with("panic: test timed out");
        failed |= l.starts_with(&format!("--- FAIL: {name} "));
        skipped |= l.starts_with(&format!("--- SKIP: {name} "));
        passed |= l.starts_with(&format!("--- PASS: {name} "));
        if l.starts_with("--- SKIP:") && !l.starts_with(&format!("--- SKIP: {name} ")) {
            subtests_skipped += 1;
        }
        // What a test logged ("helpers_test.go:866: …"), not a stack frame of a timeout's dump.
        let logged = l
            .split_once(".go:")
            .is_some_and(|(file, _)| !file.is_empty() && !file.contains(['/', ' ', '\t']));
        if logged && !l.contains("completed in") {
            let said = || l.chars().take(200).collect::<String>();
            if first_any.is_none() {
                first_any = Some(said());
            }
            if first_said.is_none() && !l.contains("does not support KIP-848") {
                first_said = Some(said());
            }
        }
    }
    let said = first_said.unwrap_or_default();
    Ok(if timed_out {
        ("TIMEOUT", said)
    } else if failed {
        ("FAIL", said)
    } else if skipped {
        ("SKIP", first_any.unwrap_or_default())
    } else if passed {
        let note = if subtests_skipped > 0 {
            format!("{subtests_skipped} subtests skipped (KIP-848 variants and the like)")
        } else {
            String::new()
        };
        ("PASS", note)
    } else {
        ("FAIL", said)
    })
}

/// Cuts a log past [`LOG_KEEP_BYTES`] to its first 2,000 and last 500 lines.
fn trim(path: &Path) -> Result<()> {
    if std::fs::metadata(path)?.len() <= LOG_KEEP_BYTES {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = std::fs::File::create(path)?;
    for l in lines.iter().take(2_000) {
        writeln!(out, "{l}")?;
    }
    writeln!(
        out,
        "... ({} lines cut by xtask) ...",
        lines.len().saturating_sub(2_500)
    )?;
    for l in lines.iter().skip(lines.len().saturating_sub(500)) {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

fn write_results(out: &Path, args: &FranzGoArgs, outcomes: &[Outcome]) -> Result<()> {
    let mut tsv = String::from("test\tresult\tseconds\tnote\n");
    let against = if args.nodes == 1 {
        "one node".to_string()
    } else {
        format!("{} nodes, KGO_TEST_RF={}", args.nodes, args.nodes)
    };
    let mut md = format!(
        "franz-go {VERSION} `pkg/kgo` against {against}, at most {} s per test: `{}`\n\n\
         | test | result | s | note |\n|---|---|---|---|\n",
        args.test_timeout_s,
        crate::invocation()
    );
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for o in outcomes {
        *counts.entry(o.result).or_default() += 1;
        tsv.push_str(&format!(
            "{}\t{}\t{:.1}\t{}\n",
            o.name, o.result, o.seconds, o.note
        ));
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} |\n",
            o.name,
            o.result,
            o.seconds,
            o.note.replace('|', "\\|")
        ));
    }
    std::fs::write(out.join("results.tsv"), tsv)?;
    std::fs::write(out.join("results.md"), md)?;
    let summary: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    println!(
        "xtask: franz-go {VERSION}: {} (table in {})",
        summary.join(", "),
        out.join("results.md").display()
    );
    Ok(())
}

/// The `KEY=VALUE` of each `--set KEY=VALUE` among a broker's arguments.
fn extra_settings<'a>(args: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    args.windows(2).filter(|w| w[0] == "--set").map(|w| w[1])
}

/// The brokers a client's suite runs against: a single node (with a SASL_PLAINTEXT listener
/// beside its PLAINTEXT one) or the local cluster.
pub(crate) struct Brokers {
    nodes: u16,
    pub seeds: String,
    /// The SASL_PLAINTEXT listener, where there is one (the single node).
    scram: Option<String>,
    dir: PathBuf,
    single: Option<std::cell::RefCell<Child>>,
}

impl Brokers {
    pub fn start(out: &Path, nodes: u16, binary: &Path) -> Result<Brokers> {
        Brokers::start_with(out, nodes, binary, &[])
    }

    /// As [`Brokers::start`], the brokers given `extra` arguments too (a cluster's nodes take
    /// only its `--set KEY=VALUE` settings).
    pub fn start_with(out: &Path, nodes: u16, binary: &Path, extra: &[&str]) -> Result<Brokers> {
        let dir = out.join("brokers");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if nodes == 1 {
            let log = std::fs::File::create(dir.join("broker.log"))?;
            let addr = format!("127.0.0.1:{SINGLE_PORT}");
            let listeners =
                format!("PLAINTEXT://{addr},SASL_PLAINTEXT://127.0.0.1:{SINGLE_SASL_PORT}");
            let (user, password) = SCRAM_USER;
            let child = Command::new(binary)
                .args(["--set", &format!("listeners={listeners}")])
                .args(["--set", &format!("advertised_listeners={listeners}")])
                .args([
                    "--set",
                    "sasl_enabled_mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
                ])
                .args([
                    "--add-scram",
                    &format!("SCRAM-SHA-256=[name={user},password={password}]"),
                ])
                .args([
                    "--metrics-listen",
                    &format!("127.0.0.1:{SINGLE_METRICS_PORT}"),
                ])
                .arg("--data-dir")
                .arg(dir.join("data"))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while TcpStream::connect(&addr).is_err() {
                if Instant::now() > deadline {
                    bail!("the broker did not listen on {addr} within 30 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return Ok(Brokers {
                nodes,
                seeds: addr,
                scram: Some(format!("127.0.0.1:{SINGLE_SASL_PORT}")),
                dir,
                single: Some(std::cell::RefCell::new(child)),
            });
        }
        let status = Command::new(std::env::current_exe()?)
            .args(["cluster", "up", "--nodes", &nodes.to_string(), "--dir"])
            .arg(&dir)
            .arg("--broker-bin")
            .arg(binary)
            .args(extra_settings(extra).flat_map(|kv| ["--set", kv]))
            .current_dir(repo_root())
            .status()?;
        if !status.success() {
            bail!("cargo xtask cluster up failed ({status})");
        }
        let seeds = (1..=nodes)
            .map(|n| format!("127.0.0.1:{}", crate::cluster::client_port(n)))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Brokers {
            nodes,
            seeds,
            scram: None,
            dir,
            single: None,
        })
    }

    /// A broker that is no longer running, named.
    pub fn dead(&self) -> Option<String> {
        match &self.single {
            Some(child) => match child.borrow_mut().try_wait() {
                Ok(Some(status)) => Some(format!("the broker ({status})")),
                _ => None,
            },
            None => (1..=self.nodes)
                .find(|&n| crate::cluster::running(&self.dir, n).is_none())
                .map(|n| format!("node {n}")),
        }
    }

    pub fn stop(&self) {
        match &self.single {
            Some(child) => {
                let mut child = child.borrow_mut();
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = child.wait();
            }
            None => {
                for n in 1..=self.nodes {
                    let _ = crate::cluster::stop_node(&self.dir, n);
                }
            }
        }
    }
}

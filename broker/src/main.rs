//! The `broker` binary: configuration from a TOML file, `STILLWATER_*` environment variables
//! and flags; logs to stderr (`STILLWATER_LOG` or `RUST_LOG` set the filter).

#![cfg_attr(madsim, allow(dead_code, unused_imports))]

use std::path::PathBuf;
use std::process::ExitCode;

use broker::config::{Config, ConfigError, Sources};
use clap::{Parser, Subcommand};
use io_backend::Env;

#[derive(Parser, Debug)]
#[command(
    name = "broker",
    version,
    about = "Stillwater: a Kafka-compatible broker"
)]
struct Cli {
    /// An operator's tool instead of serving (the settings below are read by `config`).
    #[command(subcommand)]
    tool: Option<Tool>,
    /// TOML configuration file (keys as in `Config`, e.g. `listen = "0.0.0.0:9092"`).
    #[arg(global = true, long, env = "STILLWATER_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the Kafka listener.
    #[arg(global = true, long)]
    listen: Option<String>,
    /// host:port given to clients in Metadata.
    #[arg(global = true, long)]
    advertised_listener: Option<String>,
    /// Data directory.
    #[arg(global = true, long)]
    data_dir: Option<String>,
    /// Disk engine: uring, blocking or auto.
    #[arg(global = true, long)]
    io_engine: Option<String>,
    /// Address of the Prometheus endpoint ("" disables it).
    #[arg(global = true, long)]
    metrics_listen: Option<String>,
    #[arg(global = true, long)]
    node_id: Option<String>,
    /// Deadline of every disk operation in ms.
    #[arg(global = true, long)]
    io_deadline_ms: Option<String>,
    /// A SCRAM user made at start unless it exists, Kafka's form:
    /// `SCRAM-SHA-512=[name=admin,password=...]` (repeatable).
    #[arg(
        long = "add-scram",
        global = true,
        value_name = "MECHANISM=[name=...,password=...]"
    )]
    add_scram: Vec<String>,
    /// Any other setting, as key=value (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// The operator's tools: each reads, none serves.
#[derive(Subcommand, Debug)]
enum Tool {
    /// Print the effective configuration (file, `STILLWATER_*` variables and flags over the
    /// defaults) as TOML, each value with its source; exit 2 when it would not start.
    Config,
    /// Print what files of a data directory hold, like kafka-dump-log.sh: a segment's batches
    /// (`.log`), its index files, producer state (`.snapshot`), `raft-states`, any small file.
    Dump {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Each record of a segment too (kafka-dump-log.sh's --print-data-log).
        #[arg(long, alias = "print-data-log")]
        records: bool,
        /// At most this many characters of a key or value.
        #[arg(long, default_value_t = 200)]
        max_chars: usize,
    },
    /// Check a data directory offline (the configuration's `data_dir`, or DIR): CRCs, index
    /// files against their segments, Raft terms against the log. Exit 0: sound (warnings are
    /// what the broker repairs at start); 1: damage; 2: in use or not a directory; 3: a later
    /// version's format.
    Verify {
        /// The data directory (default: the configuration's).
        dir: Option<PathBuf>,
    },
}

impl Cli {
    fn flags(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let named = [
            ("listen", &self.listen),
            ("advertised_listener", &self.advertised_listener),
            ("data_dir", &self.data_dir),
            ("io_engine", &self.io_engine),
            ("metrics_listen", &self.metrics_listen),
            ("node_id", &self.node_id),
            ("io_deadline_ms", &self.io_deadline_ms),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                out.push((k.to_string(), v.clone()));
            }
        }
        if !self.add_scram.is_empty() {
            out.push(("add_scram".to_string(), self.add_scram.join(" ")));
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(out)
    }
}

/// Under `--cfg madsim` the broker runs inside the simulator (the `sim` crate), not as a binary.
#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!("broker: this build is for simulation (--cfg madsim); run the simulator instead");
    ExitCode::FAILURE
}

#[cfg(not(madsim))]
fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(tool) = &cli.tool {
        return run_tool(tool, &cli);
    }
    let filter = std::env::var("STILLWATER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        // raft-rs says at info what every group of thousands does (elections, votes, term
        // changes: ~95 % of a cluster node's log); the broker logs each leadership change once.
        .unwrap_or_else(|_| "info,raft=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A panic anywhere ends the process once its message is out: a broker one of whose tasks
    // died (a Raft loop, the commit pipeline) would go on half alive, answering some requests
    // and never others — the silent-node class this project exists against. Whoever runs it
    // restarts it, and recovery makes that safe.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(101);
    }));
    #[cfg(target_os = "linux")]
    if let Err(e) = broker::alloc::disable_transparent_huge_pages() {
        tracing::warn!(error = %e, "could not turn transparent huge pages off for this process");
    }
    match raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            open_files = limit,
            "open-file limit (every segment of every partition holds a file open; raise the hard limit for more partitions)"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let loaded = sources(&cli).and_then(|s| Config::load(&s));
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("broker: {e}");
            return ExitCode::from(2);
        }
    };

    // A testing aid (twin runs): what the locks do on real threads, to a file.
    if let Some(path) = std::env::var_os(broker::sync::audit::ENV) {
        if let Err(e) = broker::sync::audit::start(std::path::Path::new(&path)) {
            eprintln!(
                "broker: {}={}: {e}",
                broker::sync::audit::ENV,
                std::path::Path::new(&path).display()
            );
            return ExitCode::from(2);
        }
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let seed = if config.seed != 0 {
        config.seed
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    };
    let result = runtime.block_on(async move {
        let env = Env::production(config.engine(), config.disk_threads, seed)?;
        broker::server::run_until(
            env,
            config,
            shutdown_signal(),
            || notify(sd_notify::NotifyState::Ready),
            || notify(sd_notify::NotifyState::Stopping),
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("broker: {e:#}");
            exit_code_of(&e)
        }
    }
}

/// The exit code of a broker that could not run: [`EXIT_NEWER`] when its data directory or
/// its cluster needs a later version (restarting it will not help), else 1.
#[cfg(not(madsim))]
fn exit_code_of(e: &anyhow::Error) -> ExitCode {
    use broker::storage::io::StorageError;
    let newer = e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<StorageError>(),
            Some(StorageError::NewerFormat { .. })
        ) || cause.is::<broker::features::Unsupported>()
    });
    if newer {
        ExitCode::from(EXIT_NEWER)
    } else {
        ExitCode::FAILURE
    }
}

/// The exit code of a broker older than its data directory or its cluster.
#[cfg(not(madsim))]
const EXIT_NEWER: u8 = 3;

/// Tell systemd (a `Type=notify` unit: `NOTIFY_SOCKET` is set) how the broker is; nothing
/// without a service manager.
#[cfg(not(madsim))]
fn notify(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

/// The sources of the configuration: the file, the environment and the flags.
#[cfg(not(madsim))]
fn sources(cli: &Cli) -> Result<Sources, ConfigError> {
    Ok(Sources {
        file: cli.config.clone(),
        env: Sources::env_from_process()?,
        flags: cli.flags().map_err(ConfigError::Invalid)?,
    })
}

/// An operator's tool: what it prints, and its exit code.
#[cfg(not(madsim))]
fn run_tool(tool: &Tool, cli: &Cli) -> ExitCode {
    use broker::tools::ToolError;
    let failed = |e: ToolError| {
        eprintln!("broker: {e}");
        match e {
            ToolError::Newer(_) => ExitCode::from(EXIT_NEWER),
            _ => ExitCode::from(2),
        }
    };
    match tool {
        Tool::Dump {
            files,
            records,
            max_chars,
        } => {
            let opts = broker::tools::dump::Options {
                records: *records,
                max_chars: *max_chars,
            };
            for f in files {
                match broker::tools::dump::dump(f, opts) {
                    Ok(text) => print!("{text}"),
                    Err(e) => return failed(e),
                }
            }
            ExitCode::SUCCESS
        }
        Tool::Verify { dir } => {
            let dir = match dir {
                Some(d) => d.clone(),
                None => match sources(cli).and_then(|s| Config::load(&s)) {
                    Ok(c) => c.data_dir,
                    Err(e) => {
                        eprintln!("broker: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            match broker::tools::verify::verify(&dir) {
                Ok(report) => {
                    for line in &report.lines {
                        println!("{line}");
                    }
                    println!("{}: {}", dir.display(), report.summary());
                    if report.damaged > 0 {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => failed(e),
            }
        }
        Tool::Config => {
            let loaded = sources(cli).and_then(|s| Config::load(&s).map(|c| (c, s)));
            match loaded {
                Ok((config, sources)) => {
                    print!("{}", config.effective(&sources));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("broker: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

#[cfg(not(madsim))]
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Raise the soft limit on open files to the hard one, as a server holding a file per segment
/// of thousands of partitions needs (the soft limit is often 1,024); the limit now.
#[cfg(not(madsim))]
fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

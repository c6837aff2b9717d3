//! `--spawn-broker`: a release broker of our own for one benchmark run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::time::Instant;

use super::BrokerArgs;
use crate::target_dir;

/// A release broker started for one benchmark run on free ports and a fresh data directory.
///
/// The data directory lives under the target directory, on the same disk as the build, rather
/// than in /tmp, which may be a tmpfs where fsync costs nothing.
pub struct SpawnedBroker {
    pub child: Child,
    pub binary: PathBuf,
    pub addr: String,
    pub metrics_addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Its arguments, to start it again on the same data ([`SpawnedBroker::restart`]).
    arguments: Vec<std::ffi::OsString>,
}

impl SpawnedBroker {
    pub async fn start(args: &BrokerArgs) -> Result<Self> {
        Self::start_with(args, |_| Vec::new()).await
    }

    /// Started with `listeners(addr)` as its listeners (the first must be PLAINTEXT on `addr`,
    /// where it is waited for and set up).
    pub async fn start_with_listeners(
        args: &BrokerArgs,
        listeners: impl Fn(&str) -> String,
    ) -> Result<Self> {
        Self::start_with(args, |addr| {
            vec![format!("--set=listeners={}", listeners(addr))]
        })
        .await
    }

    /// Started with the arguments `extra(addr)` too (`addr`: its Kafka address).
    pub async fn start_with(
        args: &BrokerArgs,
        extra: impl Fn(&str) -> Vec<String>,
    ) -> Result<Self> {
        let binary = match &args.broker_bin {
            Some(binary) => binary.clone(),
            None => crate::cluster::release_broker()?,
        };
        if !binary.is_file() {
            bail!("broker binary {} does not exist", binary.display());
        }
        let addr = format!("127.0.0.1:{}", free_port()?);
        let metrics_addr = format!("127.0.0.1:{}", free_port()?);
        let run_name = format!(
            "broker-{}-{}",
            std::process::id(),
            super::produce::unix_time_ms()
        );
        let bench_dir = target_dir().join("bench");
        let data_dir = bench_dir.join(&run_name);
        let log_path = bench_dir.join(format!("{run_name}.log"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let mut arguments: Vec<std::ffi::OsString> = vec![
            "--listen".into(),
            addr.clone().into(),
            "--metrics-listen".into(),
            metrics_addr.clone().into(),
            "--data-dir".into(),
            data_dir.clone().into(),
        ];
        arguments.extend(args.broker_arg.iter().map(Into::into));
        arguments.extend(extra(&addr).into_iter().map(Into::into));
        let child = spawn(&binary, &arguments, &log_path, false)?;
        let mut broker = Self {
            child,
            binary,
            addr,
            metrics_addr,
            data_dir,
            log_path,
            arguments,
        };
        broker.wait_until_listening().await?;
        Ok(broker)
    }

    /// Stop it (SIGTERM) and start it again on the same data directory and ports: how long the
    /// new process took to listen.
    pub async fn restart(&mut self) -> Result<Duration> {
        self.terminate().await?;
        let started = Instant::now();
        self.child = spawn(&self.binary, &self.arguments, &self.log_path, true)?;
        self.wait_until_listening().await?;
        Ok(started.elapsed())
    }

    async fn wait_until_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("checking the broker process")?
            {
                bail!(
                    "the broker exited ({status}) before listening on {}; its log {}:\n{}",
                    self.addr,
                    self.log_path.display(),
                    log_tail(&self.log_path)
                );
            }
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the broker is not listening on {} after 30 s; its log {}:\n{}",
                    self.addr,
                    self.log_path.display(),
                    log_tail(&self.log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM for a graceful shutdown, SIGKILL after 10 s; then removes the data directory.
    pub async fn stop(mut self) -> Result<()> {
        let result = self.terminate().await;
        remove_data_dir(&self.data_dir);
        result
    }

    /// SIGTERM, and SIGKILL after 10 s (an error then).
    async fn terminate(&mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        // std has no SIGTERM and xtask has no libc dependency; kill(1) is everywhere.
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for the broker")? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match status {
            Some(_) => Ok(()),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(anyhow!(
                    "the broker did not stop within 10 s of SIGTERM and was killed; log: {}",
                    self.log_path.display()
                ))
            }
        }
    }
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        // Only reached without `stop` on an early error: never leave a broker running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            remove_data_dir(&self.data_dir);
        }
    }
}

/// Start `binary` with `arguments`, its output to `log_path` (after what is there when
/// `append`, else in a new file).
fn spawn(
    binary: &Path,
    arguments: &[std::ffi::OsString],
    log_path: &Path,
    append: bool,
) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(binary);
    command
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    println!("xtask: starting {command:?} (log: {})", log_path.display());
    command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

fn remove_data_dir(data_dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(data_dir) {
        if error.kind() != std::io::ErrorKind::NotFound {
            eprintln!("xtask: could not remove {}: {error}", data_dir.display());
        }
    }
}

/// A free port for a benchmark's broker, below the kernel's ephemeral range and never the same
/// twice in this process: the broker binds it after this returns (and again after a restart),
/// when a port of the ephemeral range may have become the local end of some connection.
pub(super) fn free_port() -> Result<u16> {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(15_000);
    loop {
        let port = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        anyhow::ensure!(port < 20_000, "no free port in 15000..20000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

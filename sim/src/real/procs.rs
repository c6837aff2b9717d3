//! The brokers of a twin run as real processes: the release binary started with the scenario's
//! settings, killed with SIGKILL, paused with SIGSTOP and resumed with SIGCONT, restarted on
//! the same data directory, stopped for good when the workload retires it.
//!
//! Invariant: every fault here is a real signal to a real process, never a switch inside the
//! broker; a broker process never outlives its run (each is killed when the run ends or its
//! handle is dropped).

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One broker of a twin run.
pub struct BrokerProc {
    pub name: String,
    /// Where clients reach it directly (its Kafka listener).
    pub client_addr: SocketAddr,
    /// Its Prometheus endpoint.
    pub metrics_addr: SocketAddr,
    /// Its data directory as the broker sees it (a fault filesystem's mount, or a plain one).
    pub data_dir: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    /// Where its lock audit goes (`broker::sync::audit`), beside its log.
    lock_audit: PathBuf,
    /// More environment for its process (a faked clock's).
    env: Vec<(String, std::ffi::OsString)>,
    child: Mutex<Option<Child>>,
    retired: AtomicBool,
    /// Each start's count of failed data directories, as last scraped.
    pub(crate) log_dir_failures: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BrokerProc {
    pub fn new(
        name: String,
        bin: PathBuf,
        args: Vec<String>,
        client_addr: SocketAddr,
        metrics_addr: SocketAddr,
        data_dir: PathBuf,
        log: PathBuf,
    ) -> BrokerProc {
        BrokerProc {
            name,
            client_addr,
            metrics_addr,
            data_dir,
            bin,
            args,
            lock_audit: log.with_extension("locks"),
            env: Vec::new(),
            log,
            child: Mutex::new(None),
            retired: AtomicBool::new(false),
            log_dir_failures: Mutex::default(),
        }
    }

    /// The same broker, its process started with `env` besides.
    pub fn with_env(mut self, env: Vec<(String, std::ffi::OsString)>) -> BrokerProc {
        self.env.extend(env);
        self
    }

    /// Start the process (its standard error appended to its log file); nothing if it runs or
    /// was retired.
    pub fn start(&self) -> std::io::Result<()> {
        if self.retired.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut child = lock(&self.child);
        if child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.bin);
        // The runner's own STILLWATER_* variables (the broker binary, the Python) are not the
        // broker's settings, which it would refuse as unknown: its settings are its arguments.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("STILLWATER_") {
                command.env_remove(k);
            }
        }
        let spawned = command
            .args(&self.args)
            .env(
                "STILLWATER_LOG",
                std::env::var("STILLWATER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env(broker::sync::audit::ENV, &self.lock_audit)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        *child = Some(spawned);
        lock(&self.log_dir_failures).push(0);
        Ok(())
    }

    /// SIGKILL, and reap it: the process is gone when this returns.
    pub fn kill(&self) {
        self.kill_then(|| {});
    }

    /// SIGKILL, then `meanwhile`, then reap it. A process blocked in a sync its filesystem
    /// holds cannot exit until the sync is answered: a crash of the fault filesystem (which
    /// fails the held syncs) goes in between.
    pub fn kill_then(&self, meanwhile: impl FnOnce()) {
        let child = lock(&self.child).take();
        if let Some(c) = &child {
            signal(c, libc::SIGKILL);
        }
        meanwhile();
        if let Some(mut c) = child {
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process stops where it is, its sockets and files open. Returns once every
    /// thread of it is stopped (kill(2) returns before they are: a thread running on another
    /// core answered a request after the signal was sent).
    pub fn pause(&self) {
        if let Some(c) = lock(&self.child).as_ref() {
            signal(c, libc::SIGSTOP);
            wait_stopped(c.id());
        }
    }

    /// SIGCONT.
    pub fn resume(&self) {
        if let Some(c) = lock(&self.child).as_ref() {
            signal(c, libc::SIGCONT);
        }
    }

    /// Stop it for good: a broker the workload retired (no fault restarts it).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.kill();
    }

    /// Whether the process is running (it may have exited on its own: a failed start).
    pub fn running(&self) -> bool {
        match lock(&self.child).as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM (after SIGCONT, should it be paused), then SIGKILL if it has not exited within
    /// `grace`.
    pub fn stop(&self, grace: Duration) {
        let Some(mut c) = lock(&self.child).take() else {
            return;
        };
        signal(&c, libc::SIGCONT);
        signal(&c, libc::SIGTERM);
        let give_up = std::time::Instant::now() + grace;
        while std::time::Instant::now() < give_up {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(&c, libc::SIGKILL);
        let _ = c.wait();
    }

    /// The log file of its starts.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// What its locks did on real threads, over all its starts (its lock audit read back;
    /// nothing if it never started).
    pub fn lock_use(&self) -> broker::sync::LockUse {
        std::fs::read_to_string(&self.lock_audit)
            .map(|text| broker::sync::audit::parse(&text))
            .unwrap_or_default()
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this process has not reaped yet (it is reaped only
    // after `take()` under the same lock), so the pid names that child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Wait (up to 2 s) until every thread of process `pid` is stopped, as /proc tells.
fn wait_stopped(pid: u32) {
    let stopped = || -> Option<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut all = true;
        for task in tasks {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // The state follows the command name, which is in parentheses.
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            all &= matches!(state, 'T' | 't' | 'Z' | 'X');
        }
        Some(all)
    };
    for _ in 0..2000 {
        if stopped() != Some(false) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Where [`free_port`] looks: below the kernel's ephemeral range (32768 and up on Linux), and
/// apart from the ports the Python integration tests take (20000–31999).
const FREE_PORTS: std::ops::Range<u32> = 10_000..15_000;

/// A free TCP port on 127.0.0.1 for a broker to listen on, never the same one twice in this
/// process. Bound, then released: the broker binds it itself, at its start and again after
/// every restart. So it is taken below the ephemeral range — a port from there (what binding
/// port 0 gives) may meanwhile have become a proxy's listener or the local end of some
/// connection, and the broker would not start.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let width = FREE_PORTS.end - FREE_PORTS.start;
    // Two runners at once (two sweeps) start at different places.
    let offset = std::process::id() % width;
    for _ in 0..width {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FREE_PORTS.start + (offset + i) % width) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("no free port in {FREE_PORTS:?}"),
    ))
}

/// The last `n` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Read a counter's value from a broker's Prometheus endpoint; `None` if the broker does not
/// answer (down, paused) within a second.
pub async fn scrape(metrics: SocketAddr, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(metrics).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(1), fetch)
        .await
        .ok()??;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

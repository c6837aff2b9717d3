//! A twin run's faults, struck at their scenario times on the wall clock, each by a real
//! mechanism: SIGKILL and a restart, SIGSTOP and SIGCONT, a link's proxy cut or slowed, its
//! packets dropped by the kernel's packet filter (packet loss), a broker's wall clock moved
//! by libfaketime (skew, drift), the fault filesystem under a broker's data directory.
//!
//! Invariant: a fault with a window is undone when its window ends; a fault this world cannot
//! strike is refused before the run starts ([`unsupported`]), never run without it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::real::Machines;
use crate::scenario::{is_broker, Fault, Scenario, CLIENT_NODES, STOP_GRACE};

/// Why this world cannot run the scenario as written (a fault it cannot strike for real, a
/// check it cannot make), or `None` when it can.
pub fn unsupported(scenario: &Scenario, faults: &[Fault]) -> Option<String> {
    if scenario.auth.is_some() {
        return Some("[auth]: the twin runner does not set up SASL or TLS yet".into());
    }
    if scenario.workload.moves.is_some() {
        return Some(
            "[workload.moves]: the moves checker reads what the brokers applied in-process".into(),
        );
    }
    if !scenario.cluster.joining.is_empty() {
        return Some("[cluster] joining: brokers that join later are not started later yet".into());
    }
    for f in faults {
        let why = match f {
            Fault::Crash {
                at_point: Some(_), ..
            } => Some("a crash at a fault point of the broker is a switch inside it"),
            Fault::Crash { in_joint: true, .. } => {
                Some("a crash in a joint configuration needs the brokers' in-process reports")
            }
            Fault::Crash {
                while_cleaning: true,
                ..
            } => Some("a crash while cleaning watches the simulated disk's files"),
            Fault::Bitflip { .. } => Some("bit flips on reads are not struck for real yet"),
            Fault::ReadEio { .. } => Some("reads that fail are not struck for real yet"),
            Fault::PacketLoss { .. } => {
                if let Err(e) = crate::real::loss::available() {
                    return Some(format!(
                        "{}: packet loss is struck by the kernel's packet filter, which this \
                         machine does not let this run change: {e}",
                        f.describe()
                    ));
                }
                None
            }
            Fault::ClockSkew { .. } | Fault::ClockDrift { .. } => {
                if let Err(e) = crate::real::clock::library() {
                    return Some(format!(
                        "{}: a broker's clock is skewed for real by libfaketime: {e}",
                        f.describe()
                    ));
                }
                None
            }
            Fault::FsyncStall { .. }
            | Fault::FsyncEio { .. }
            | Fault::DiskFull { .. }
            | Fault::SlowDisk { .. }
            | Fault::BusyDisk { .. }
            | Fault::BusyCpu { .. }
            | Fault::Crash { .. }
            | Fault::Stop { .. }
            | Fault::Flood { .. } => None,
            Fault::Partition { node, link, .. } => {
                let names: Vec<&str> = match (node, link) {
                    (Some(n), _) => vec![n.as_str()],
                    (None, Some([a, b])) => vec![a.as_str(), b.as_str()],
                    (None, None) => Vec::new(),
                };
                names
                    .iter()
                    .any(|n| !is_broker(n) && !CLIENT_NODES.contains(n))
                    .then_some("a partition names a node that is neither a broker nor a client")
            }
            Fault::NetLatency { .. } | Fault::Pause { .. } => None,
        };
        if let Some(why) = why {
            return Some(format!("{}: {why}", f.describe()));
        }
    }
    None
}

/// Strike each fault at its time from `start`; the lines returned say what was struck when.
pub fn schedule(
    faults: Vec<Fault>,
    machines: Arc<Machines>,
    start: Instant,
    seed: u64,
) -> Arc<std::sync::Mutex<Vec<String>>> {
    let fault_log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = fault_log.clone();
    tokio::spawn(async move {
        for (i, fault) in faults.into_iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_secs(fault.at_s())).await;
            let line = format!(
                "{:.6} fault {}",
                (Instant::now() - start).as_secs_f64(),
                fault.describe()
            );
            log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            let machines = machines.clone();
            let draw = seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            tokio::spawn(async move { apply(&fault, &machines, draw).await });
        }
    });
    fault_log
}

/// Every node but the checker: the brokers, then the client nodes.
fn nodes(m: &Machines) -> Vec<String> {
    m.brokers
        .iter()
        .map(|b| b.name.clone())
        .chain(CLIENT_NODES.iter().map(|n| n.to_string()))
        .collect()
}

/// Apply one fault now and, for a window, undo it when the window ends.
async fn apply(fault: &Fault, m: &Machines, draw: u64) {
    let sleep_s = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    match fault {
        Fault::Crash {
            torn, wipe, down_s, ..
        } => {
            let b = m.broker(fault);
            b.kill_then(|| {
                if let Some(d) = m.disk(fault) {
                    d.crash(torn.then_some(draw));
                }
            });
            if *wipe {
                if let Err(e) = wipe_dir(&b.data_dir) {
                    tracing::error!(node = %b.name, "cannot empty the data directory: {e}");
                }
            }
            sleep_s(*down_s).await;
            if let Err(e) = b.start() {
                tracing::error!(node = %b.name, "cannot restart the broker: {e}");
            }
        }
        Fault::Stop { down_s, .. } => {
            let b = m.broker(fault).clone();
            // SIGTERM, then SIGKILL if it has not exited within the grace.
            let _ = tokio::task::spawn_blocking(move || b.stop(STOP_GRACE)).await;
            sleep_s(*down_s).await;
            let b = m.broker(fault);
            if let Err(e) = b.start() {
                tracing::error!(node = %b.name, "cannot restart the broker: {e}");
            }
        }
        Fault::BusyDisk { for_s, streams, .. } => {
            // Streams of 64 KiB writes, each synced, to a file beside the broker's data
            // directory: the same device, its queue shared (the operations take what the
            // device takes, not `service_ms`).
            let dir = m
                .broker(fault)
                .data_dir
                .parent()
                .map(std::path::Path::to_path_buf);
            let until = std::time::Instant::now() + Duration::from_secs(*for_s);
            let hogs: Vec<_> = (0..(*streams).max(1))
                .map(|i| {
                    let path = dir
                        .clone()
                        .unwrap_or_default()
                        .join(format!("busy-disk-{i}"));
                    std::thread::spawn(move || neighbour_io(&path, until))
                })
                .collect();
            let _ =
                tokio::task::spawn_blocking(move || hogs.into_iter().for_each(|h| drop(h.join())))
                    .await;
        }
        Fault::BusyCpu { for_s, percent, .. } => {
            // Threads that spin for the window: the host's processors, which every broker of
            // the run shares, taken by as many as `percent` of them make.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = (cores * *percent as usize).div_ceil(100).max(1);
            let until = std::time::Instant::now() + Duration::from_secs(*for_s);
            let hogs: Vec<_> = (0..threads)
                .map(|_| {
                    std::thread::spawn(move || {
                        let mut x = 0u64;
                        while std::time::Instant::now() < until {
                            for i in 0..100_000u64 {
                                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                            }
                        }
                    })
                })
                .collect();
            let _ =
                tokio::task::spawn_blocking(move || hogs.into_iter().for_each(|h| drop(h.join())))
                    .await;
        }
        Fault::Pause {
            for_s, mid_write, ..
        } => {
            let b = m.broker(fault);
            match (mid_write, m.disk(fault)) {
                (false, _) => b.pause(),
                // SIGSTOP from the fault filesystem's thread as the write arrives, before it
                // is served: the broker stops with the write in flight.
                (true, Some(d)) => {
                    let (stopped, at_write) = tokio::sync::oneshot::channel();
                    let proc = b.clone();
                    d.before_next_write(Some(Box::new(move || {
                        proc.pause();
                        let _ = stopped.send(());
                    })));
                    let write = tokio::time::timeout(Duration::from_secs(20), at_write);
                    if write.await.is_err() {
                        d.before_next_write(None);
                        tracing::warn!("{} began no write within 20 s: no pause", b.name);
                        return;
                    }
                }
                (true, None) => unreachable!("refused before the run: no fault filesystem"),
            }
            sleep_s(*for_s).await;
            b.resume();
        }
        Fault::Partition {
            for_s,
            node,
            link,
            one_way,
            ..
        } => {
            let mut cut: Vec<(String, String)> = Vec::new();
            match (node, link) {
                (Some(n), _) => {
                    for other in nodes(m).into_iter().filter(|o| o != n) {
                        cut.push((n.clone(), other.clone()));
                        if !*one_way {
                            cut.push((other, n.clone()));
                        }
                    }
                }
                (None, Some([a, b])) => {
                    cut.push((a.clone(), b.clone()));
                    if !*one_way {
                        cut.push((b.clone(), a.clone()));
                    }
                }
                (None, None) => {}
            }
            for (a, b) in &cut {
                m.links.cut(a, b);
            }
            sleep_s(*for_s).await;
            for (a, b) in &cut {
                m.links.heal(a, b);
            }
        }
        Fault::NetLatency {
            for_s,
            min_ms,
            max_ms,
            ..
        } => {
            m.links.set_latency(Some((
                Duration::from_millis(*min_ms),
                Duration::from_millis(*max_ms),
            )));
            sleep_s(*for_s).await;
            m.links.set_latency(None);
        }
        Fault::FsyncStall { for_s, .. } => {
            if let Some(d) = m.disk(fault) {
                d.stall_syncs_for(Duration::from_secs(*for_s));
            }
        }
        Fault::FsyncEio { count, .. } => {
            if let Some(d) = m.disk(fault) {
                d.fail_syncs(*count);
            }
        }
        Fault::DiskFull { for_s, .. } => {
            if let Some(d) = m.disk(fault) {
                d.full(true);
                sleep_s(*for_s).await;
                d.full(false);
            }
        }
        Fault::SlowDisk { for_s, .. } => {
            if let (Some(d), Some((latency, spike))) = (m.disk(fault), fault.slow_disk()) {
                d.slow(Some(latency), spike, draw);
                sleep_s(*for_s).await;
                d.slow(None, None, 0);
            }
        }
        Fault::PacketLoss { for_s, rate, .. } => {
            if let Some(loss) = &m.loss {
                loss.set(Some(*rate));
                sleep_s(*for_s).await;
                let dropped = loss.dropped();
                loss.set(None);
                tracing::info!("{}: {dropped} segments dropped", fault.describe());
            }
        }
        Fault::ClockSkew {
            for_s, offset_ms, ..
        } => {
            if let Some(c) = m.clock(fault) {
                c.set_offset_ms(*offset_ms);
                sleep_s(*for_s).await;
                c.set_offset_ms(0);
            }
        }
        Fault::ClockDrift { for_s, ppm, .. } => {
            if let Some(c) = m.clock(fault) {
                c.set_drift_ppm(*ppm);
                sleep_s(*for_s).await;
                c.set_drift_ppm(0);
            }
        }
        // Refused before the run ([`unsupported`]).
        Fault::Bitflip { .. } | Fault::ReadEio { .. } => {
            tracing::error!("{}: not struck in a twin run", fault.describe());
        }
        // The workload's strangers strike it (`workload::flood`), as in simulation.
        Fault::Flood { .. } => {}
    }
}

/// Empty a data directory (a replaced disk), keeping the directory itself.
fn wipe_dir(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Write and sync 64 KiB again and again at the start of `path` until `until`, then remove it.
fn neighbour_io(path: &std::path::Path, until: std::time::Instant) {
    use std::io::{Seek, Write};
    let Ok(mut f) = std::fs::File::create(path) else {
        tracing::warn!(path = %path.display(), "busy-disk: cannot make the neighbour's file");
        return;
    };
    let block = vec![0x5au8; 64 << 10];
    while std::time::Instant::now() < until {
        if f.rewind().is_err() || f.write_all(&block).is_err() || f.sync_data().is_err() {
            break;
        }
    }
    let _ = std::fs::remove_file(path);
}

//! Faults, struck on the world at their scenario time: disk stalls and errors, crashes that
//! lose unsynced writes, pauses, partitions and lossy links, clock skew and drift.
//!
//! Invariant: a fault with a window is undone when its window ends; the schedule is a function
//! of the scenario and the seed alone.

use std::sync::Arc;
use std::time::Duration;

use io_backend::EnvRng;
use madsim::net::NetSim;
use tokio::time::Instant;

use crate::scenario::{Fault, Scenario, STOP_GRACE};
use crate::world::cluster::Cluster;
use crate::world::disk::{Crash, Faults, SimDisk};

/// A crash waiting for a broker to reach a fault point (`at_point`).
struct Armed {
    point: String,
    /// The broker's madsim node (any broker: `None`).
    node: Option<madsim::task::NodeId>,
    /// Told which node reached the point (it stays parked there until it is killed).
    reached: tokio::sync::oneshot::Sender<madsim::task::NodeId>,
}

thread_local! {
    /// This run's armed crashes (a run is one thread: madsim's).
    static ARMED: std::cell::RefCell<Vec<Armed>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How long a broker that reached an armed crash point stays parked there: longer than any
/// run, so nothing after the point runs before the crash (in the same instant) kills it.
const PARKED: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The broker's fault points (`fault_point!`): a broker that reaches a point an armed crash
/// waits for is parked there and its crash told; otherwise they pause as the scenario's
/// `fault_points` ask, drawn from the seed (not at all without them).
pub(crate) fn install_fault_points(scenario: &Scenario, seed: u64) {
    ARMED.with(|a| a.borrow_mut().clear());
    let pauses = scenario.fault_points.as_ref().map(|fp| {
        (
            fp.chance_percent as u64,
            fp.max_delay_ms,
            EnvRng::seeded(seed ^ 0xfa17),
        )
    });
    let armed_points = scenario.faults.iter().any(|f| {
        matches!(
            f,
            Fault::Crash {
                at_point: Some(_),
                ..
            }
        )
    });
    if pauses.is_none() && !armed_points {
        broker::fault::clear_hook();
        return;
    }
    broker::fault::set_hook(move |point| {
        if reached_armed(point) {
            return Some(PARKED);
        }
        let (chance, max, rng) = pauses.as_ref()?;
        (rng.range_u64(0, 100) < *chance).then(|| Duration::from_millis(rng.range_u64(0, max + 1)))
    });
}

/// Whether this node's reaching `point` fires an armed crash (which is then disarmed).
fn reached_armed(point: &str) -> bool {
    let here = madsim::plugin::node();
    ARMED.with(|armed| {
        let mut armed = armed.borrow_mut();
        let Some(i) = armed
            .iter()
            .position(|a| a.point == point && a.node.is_none_or(|n| n == here))
        else {
            return false;
        };
        armed.remove(i).reached.send(here).is_ok()
    })
}

/// Arm a crash at `point` (of broker `node`, or any) and wait, up to 20 s, for a broker to reach
/// it: that broker, parked there.
async fn at_point<'a>(
    c: &'a Cluster,
    point: &str,
    node: Option<&str>,
) -> Option<&'a crate::world::cluster::BrokerNode> {
    let (reached, at) = tokio::sync::oneshot::channel();
    ARMED.with(|a| {
        a.borrow_mut().push(Armed {
            point: point.to_string(),
            node: node.and_then(|n| c.id(n)),
            reached,
        })
    });
    let id = match tokio::time::timeout(Duration::from_secs(20), at).await {
        Ok(Ok(id)) => id,
        _ => {
            ARMED.with(|a| a.borrow_mut().retain(|x| !x.reached.is_closed()));
            return None;
        }
    };
    c.brokers.iter().find(|b| b.id == id)
}

/// The first broker (`node`, or any) seen writing a cleaned copy of a segment within 20 s,
/// left to go on a little so that the crash lands at some step of the swap, drawn from three:
/// up to 30 ms after the copy appeared (while it is written, or later); up to 4 ms after its
/// name became durable (the swap of one segment: the index removed, the rename, its sync); up
/// to 2 ms after a merge of segments made its copy the swap (`<base>.swap`: the merged
/// segments' files removed, the swap renamed in), or, when no merge comes within 10 s, as the
/// second.
async fn cleaning<'a>(
    c: &'a Cluster,
    node: Option<&str>,
    rng: &EnvRng,
) -> Option<&'a crate::world::cluster::BrokerNode> {
    const COPY: &str = ".cleaned.tmp";
    const SWAP: &str = ".swap";
    let started = Instant::now();
    let give_up = started + Duration::from_secs(20);
    let stage = rng.range_u64(0, 3);
    while Instant::now() < give_up {
        let merging = stage == 2 && Instant::now() < started + Duration::from_secs(10);
        let (suffix, durable, wait_ms) = match stage {
            0 => (COPY, false, 31),
            _ if merging => (SWAP, true, 3),
            _ => (COPY, true, 5),
        };
        let found = c
            .brokers
            .iter()
            .find(|b| node.is_none_or(|n| b.name == n) && b.disk.has_file_ending(suffix, durable));
        if let Some(b) = found {
            let ms = rng.range_u64(0, wait_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Some(b);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Strike each fault at its time from `start`; the lines returned say what was struck when.
/// What a fault draws (where in a cleaning a crash lands) comes from the run's `seed`.
pub(crate) fn schedule(
    faults: Vec<Fault>,
    cluster: Arc<Cluster>,
    start: Instant,
    seed: u64,
) -> Arc<std::sync::Mutex<Vec<String>>> {
    let rng = EnvRng::seeded(seed ^ 0xc1ea);
    let fault_log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = fault_log.clone();
    tokio::spawn(async move {
        for fault in faults {
            tokio::time::sleep_until(start + Duration::from_secs(fault.at_s())).await;
            let line = format!(
                "{:.6} fault {}",
                (Instant::now() - start).as_secs_f64(),
                fault.describe()
            );
            log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            let (cluster, rng) = (cluster.clone(), rng.clone());
            tokio::spawn(async move { apply(&fault, &cluster, &rng).await });
        }
    });
    fault_log
}

/// Apply one fault now and, for a window, undo it when the window ends.
pub(crate) async fn apply(fault: &Fault, c: &Cluster, rng: &EnvRng) {
    let net = NetSim::current();
    match fault {
        Fault::FsyncStall { for_s, .. } => {
            let until = Instant::now() + Duration::from_secs(*for_s);
            for_a_while(
                &c.broker(fault).disk,
                *for_s,
                move |f| f.sync_stall_until = Some(until),
                |_| {},
            )
            .await
        }
        Fault::FsyncEio { count, .. } => {
            let disk = &c.broker(fault).disk;
            let mut f = disk.faults();
            f.sync_eio_next += count;
            disk.set_faults(f);
        }
        Fault::Crash {
            torn,
            down_s,
            wipe,
            in_joint,
            while_cleaning,
            at_point,
            hold_ms,
            node,
            ..
        } => {
            let b = if let Some(point) = at_point {
                let Some(b) = self::at_point(c, point, node.as_deref()).await else {
                    tracing::warn!("no broker reached {point} within 20 s: no crash");
                    return;
                };
                if let Some([min, max]) = hold_ms {
                    // Its task stays at the point; the rest of the broker runs on till the kill.
                    let ms = rng.range_u64(*min, max + 1);
                    tracing::info!(node = %b.name, "stopped at {point}: killed in {ms} ms");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                b
            } else if *while_cleaning {
                let Some(b) = cleaning(c, node.as_deref(), rng).await else {
                    tracing::warn!("no cleaning began within 20 s: no crash");
                    return;
                };
                b
            } else if *in_joint {
                // The next joint configuration entered from now on: its leader (the broker
                // that applied it first) dies before it can leave it.
                let (mut seen, _) = crate::world::observed::joint_entered(usize::MAX);
                let give_up = Instant::now() + Duration::from_secs(60);
                loop {
                    let (now_seen, node) = crate::world::observed::joint_entered(seen);
                    seen = now_seen;
                    if let Some(b) = node.and_then(|n| c.brokers.get((n as usize).wrapping_sub(1)))
                    {
                        break b;
                    }
                    if Instant::now() > give_up {
                        tracing::warn!("no joint configuration entered within 60 s: no crash");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } else {
                c.broker(fault)
            };
            if !b.disk.syncs_in_flight().is_empty() {
                broker::coverage::reached(broker::coverage::Event::CrashWithSyncInFlight);
            }
            c.handle.kill(b.id);
            b.disk.crash(if *wipe {
                Crash::Lost
            } else if *torn {
                Crash::Torn
            } else {
                Crash::DropUnsynced
            });
            tokio::time::sleep(Duration::from_secs(*down_s)).await;
            c.handle.restart(b.id);
        }
        Fault::SlowDisk { for_s, .. } => {
            let Some((latency, spike)) = fault.slow_disk() else {
                return;
            };
            // Overlapping slow-disk faults: the latency before this one comes back after it.
            let disk = &c.broker(fault).disk;
            let before = {
                let f = disk.faults();
                (f.latency, f.latency_spike)
            };
            for_a_while(
                disk,
                *for_s,
                move |f| {
                    f.latency = Some(latency);
                    f.latency_spike = spike;
                },
                move |f| {
                    (f.latency, f.latency_spike) = before;
                },
            )
            .await
        }
        Fault::BusyDisk {
            for_s,
            streams,
            service_ms,
            ..
        } => {
            let disk = c.broker(fault).disk.clone();
            let had_queue = disk.faults().queue_depth.is_some();
            if !had_queue {
                let mut f = disk.faults();
                f.queue_depth = Some(1);
                disk.set_faults(f);
            }
            let until = Instant::now() + Duration::from_secs(*for_s);
            let service = Duration::from_millis((*service_ms).max(1));
            let neighbours: Vec<_> = (0..(*streams).max(1))
                .map(|_| {
                    let disk = disk.clone();
                    tokio::spawn(async move {
                        while Instant::now() < until {
                            disk.occupy(service).await;
                        }
                    })
                })
                .collect();
            for n in neighbours {
                let _ = n.await;
            }
            if !had_queue {
                let mut f = disk.faults();
                f.queue_depth = None;
                disk.set_faults(f);
            }
        }
        Fault::BusyCpu { for_s, percent, .. } => {
            let node = c.broker(fault).id;
            crate::world::cpu::take_share(node, *percent);
            sleep_s(*for_s).await;
            crate::world::cpu::take_share(node, 0);
        }
        Fault::DiskFull { for_s, .. } => {
            let disk = &c.broker(fault).disk;
            let full = disk.used_bytes();
            for_a_while(
                disk,
                *for_s,
                move |f| f.capacity_bytes = Some(full),
                |f| f.capacity_bytes = None,
            )
            .await
        }
        Fault::Bitflip {
            for_s, per_million, ..
        } => {
            let rate = *per_million;
            for_a_while(
                &c.broker(fault).disk,
                *for_s,
                move |f| f.read_bitflip_per_million = rate,
                |f| f.read_bitflip_per_million = 0,
            )
            .await
        }
        Fault::ReadEio {
            for_s,
            per_million,
            stall_ms,
            ..
        } => {
            let (rate, stall) = (*per_million, Duration::from_millis(*stall_ms));
            for_a_while(
                &c.broker(fault).disk,
                *for_s,
                move |f| {
                    f.read_eio_per_million = rate;
                    f.read_eio_stall = stall;
                },
                |f| {
                    f.read_eio_per_million = 0;
                    f.read_eio_stall = Duration::ZERO;
                },
            )
            .await
        }
        Fault::Partition {
            for_s,
            node,
            link,
            one_way,
            ..
        } => {
            let both = !*one_way;
            match (node.as_deref().and_then(|n| c.id(n)), link) {
                (Some(id), _) => {
                    if both {
                        net.clog_node(id)
                    } else {
                        net.clog_node_out(id)
                    }
                    sleep_s(*for_s).await;
                    net.unclog_node(id);
                }
                (None, Some([a, b])) => {
                    let (Some(a), Some(b)) = (c.id(a), c.id(b)) else {
                        return;
                    };
                    net.clog_link(a, b);
                    if both {
                        net.clog_link(b, a);
                    }
                    sleep_s(*for_s).await;
                    net.unclog_link(a, b);
                    net.unclog_link(b, a);
                }
                (None, None) => {}
            }
        }
        Fault::PacketLoss { for_s, rate, .. } => {
            net.update_config(|cfg| cfg.packet_loss_rate = *rate);
            sleep_s(*for_s).await;
            net.update_config(|cfg| cfg.packet_loss_rate = 0.0);
        }
        Fault::NetLatency {
            for_s,
            min_ms,
            max_ms,
            ..
        } => {
            let before = madsim::net::Config::default().send_latency;
            let (lo, hi) = (
                Duration::from_millis(*min_ms),
                Duration::from_millis(*max_ms),
            );
            net.update_config(|cfg| cfg.send_latency = lo..hi.max(lo + Duration::from_micros(1)));
            sleep_s(*for_s).await;
            net.update_config(|cfg| cfg.send_latency = before);
        }
        Fault::ClockSkew {
            for_s, offset_ms, ..
        } => {
            let clock = &c.broker(fault).clock;
            clock.set_offset_ms(*offset_ms);
            sleep_s(*for_s).await;
            clock.set_offset_ms(0);
        }
        Fault::ClockDrift { for_s, ppm, .. } => {
            let clock = &c.broker(fault).clock;
            clock.set_drift_ppm(*ppm);
            sleep_s(*for_s).await;
            clock.set_drift_ppm(0);
        }
        Fault::Stop { down_s, .. } => {
            let b = c.broker(fault);
            if !b.stop_gracefully(STOP_GRACE).await {
                tracing::warn!("{} did not shut down within {STOP_GRACE:?}: killed", b.name);
            }
            c.handle.kill(b.id);
            tokio::time::sleep(Duration::from_secs(*down_s)).await;
            c.handle.restart(b.id);
        }
        // The workload's strangers strike it (`workload::flood`), as in a twin run.
        Fault::Flood { .. } => {}
        Fault::Pause {
            for_s, mid_write, ..
        } => {
            let b = c.broker(fault);
            if *mid_write {
                let write =
                    tokio::time::timeout(Duration::from_secs(20), b.disk.write_began.notified());
                if write.await.is_err() {
                    tracing::warn!("{} began no write within 20 s: no pause", b.name);
                    return;
                }
            }
            let id = b.id;
            c.handle.pause(id);
            sleep_s(*for_s).await;
            c.handle.resume(id);
        }
    }
}

pub(crate) async fn sleep_s(s: u64) {
    tokio::time::sleep(Duration::from_secs(s)).await
}

/// Change the disk's faults now and change them back after `for_s` simulated seconds.
pub(crate) async fn for_a_while(
    disk: &SimDisk,
    for_s: u64,
    set: impl FnOnce(&mut Faults),
    reset: impl FnOnce(&mut Faults),
) {
    let mut f = disk.faults();
    set(&mut f);
    disk.set_faults(f);
    sleep_s(for_s).await;
    let mut f = disk.faults();
    reset(&mut f);
    disk.set_faults(f);
}

//! The faults a scenario draws from the seed (`[random_faults]`): how many, of which kinds,
//! where and for how long.
//!
//! Invariant: a function of the scenario and the seed alone.

use io_backend::EnvRng;
use serde::Deserialize;

use super::faults::Fault;
use super::{broker_name, BROKER_NODE, CLIENT_NODES};

/// A swarm of faults drawn from the seed: on average `rate_per_min` a simulated minute between
/// `from_s` and `until_s` (default: the whole run but its last tenth), each of a kind drawn from
/// `kinds` with parameters drawn from bounded ranges (`max_for_s` caps every window).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    pub rate_per_min: f64,
    pub kinds: Vec<String>,
    #[serde(default)]
    pub from_s: u64,
    #[serde(default)]
    pub until_s: Option<u64>,
    #[serde(default = "default_max_for_s")]
    pub max_for_s: u64,
}

fn default_max_for_s() -> u64 {
    20
}

/// The kinds a random mix may draw.
pub const RANDOM_KINDS: [&str; 14] = [
    "fsync-stall",
    "fsync-eio",
    "crash",
    "slow-disk",
    "disk-full",
    "bitflip",
    "partition",
    "packet-loss",
    "net-latency",
    "clock-skew",
    "clock-drift",
    "pause",
    "busy-disk",
    "busy-cpu",
];

impl RandomFaults {
    /// The faults this seed draws, in time order. Windows of one kind never overlap (a second
    /// stall inside the first would end it early), and a crash waits until the node is back.
    pub fn draw(&self, seed: u64, duration_s: u64, brokers: usize) -> Vec<Fault> {
        let rng = EnvRng::seeded(seed ^ 0x5ea_f00d);
        let until = self.until_s.unwrap_or(duration_s - duration_s / 10);
        let mean_gap_ms = (60_000.0 / self.rate_per_min.max(1e-3)) as u64;
        let mut t_ms = self.from_s * 1000;
        let mut busy_until: std::collections::BTreeMap<&str, u64> = Default::default();
        let mut out = Vec::new();
        let max_for = self.max_for_s.max(1);
        loop {
            // Exponential gaps (a Poisson process), drawn from the seed.
            let u = (rng.range_u64(1, 1_000_001) as f64) / 1_000_001.0;
            t_ms += (-(u.ln()) * mean_gap_ms as f64) as u64;
            let at_s = t_ms / 1000;
            if at_s >= until || self.kinds.is_empty() {
                return out;
            }
            let kind = self.kinds[rng.range_u64(0, self.kinds.len() as u64) as usize].as_str();
            let for_s = rng.range_u64(1, max_for + 1);
            let group = match kind {
                // One process: a crash and a pause exclude each other.
                "crash" | "pause" => "process",
                k => k,
            };
            if busy_until.get(group).is_some_and(|&b| at_s <= b) {
                continue;
            }
            let fault = match kind {
                "fsync-stall" => Fault::FsyncStall {
                    at_s,
                    for_s,
                    node: None,
                },
                "fsync-eio" => Fault::FsyncEio {
                    at_s,
                    count: rng.range_u64(1, 4) as u32,
                    node: None,
                },
                "crash" => Fault::Crash {
                    at_s,
                    torn: rng.range_u64(0, 2) == 1,
                    wipe: false,
                    in_joint: false,
                    while_cleaning: false,
                    at_point: None,
                    hold_ms: None,
                    down_s: rng.range_u64(1, 6),
                    node: None,
                },
                "slow-disk" => Fault::SlowDisk {
                    at_s,
                    for_s,
                    min_ms: 1,
                    max_ms: rng.range_u64(10, 500),
                    spike_ms: rng.range_u64(1_000, 10_000),
                    spike_per_million: rng.range_u64(0, 20_000) as u32,
                    node: None,
                },
                "busy-disk" => Fault::BusyDisk {
                    at_s,
                    for_s,
                    streams: rng.range_u64(1, 5),
                    service_ms: rng.range_u64(1, 20),
                    node: None,
                },
                "busy-cpu" => Fault::BusyCpu {
                    at_s,
                    for_s,
                    percent: rng.range_u64(50, 96) as u32,
                    node: None,
                },
                "disk-full" => Fault::DiskFull {
                    at_s,
                    for_s,
                    node: None,
                },
                "bitflip" => Fault::Bitflip {
                    at_s,
                    for_s,
                    per_million: rng.range_u64(1_000, 100_000) as u32,
                    node: None,
                },
                // In a cluster: a broker isolated, or a link between two brokers, or between a
                // broker and a client.
                "partition" if brokers > 1 => {
                    let b = broker_name(rng.range_u64(1, brokers as u64 + 1) as usize);
                    let (node, link, one_way) = match rng.range_u64(0, 3) {
                        0 => (Some(b), None, false),
                        1 => {
                            let other = 1
                                + (b[7..].parse::<u64>().unwrap_or(1)
                                    + rng.range_u64(0, brokers as u64 - 1))
                                    % brokers as u64;
                            (
                                None,
                                Some([b, broker_name(other as usize)]),
                                rng.range_u64(0, 2) == 1,
                            )
                        }
                        _ => {
                            let a = CLIENT_NODES[rng.range_u64(0, 3) as usize];
                            (None, Some([a.into(), b]), true)
                        }
                    };
                    Fault::Partition {
                        at_s,
                        for_s,
                        node,
                        link,
                        one_way,
                    }
                }
                "partition" => {
                    let a = CLIENT_NODES[rng.range_u64(0, 3) as usize];
                    let (node, link, one_way) = match rng.range_u64(0, 3) {
                        0 => (Some(BROKER_NODE.into()), None, false),
                        1 => (None, Some([a.into(), BROKER_NODE.into()]), true),
                        _ => (
                            None,
                            Some([BROKER_NODE.into(), a.into()]),
                            rng.range_u64(0, 2) == 1,
                        ),
                    };
                    Fault::Partition {
                        at_s,
                        for_s,
                        node,
                        link,
                        one_way,
                    }
                }
                "packet-loss" => Fault::PacketLoss {
                    at_s,
                    for_s,
                    rate: rng.range_u64(1, 50) as f64 / 100.0,
                },
                "net-latency" => Fault::NetLatency {
                    at_s,
                    for_s,
                    min_ms: 1,
                    max_ms: rng.range_u64(20, 2000),
                },
                "clock-skew" => {
                    let ms = rng.range_u64(1_000, 3_600_000) as i64;
                    Fault::ClockSkew {
                        at_s,
                        for_s,
                        offset_ms: if rng.range_u64(0, 2) == 1 { ms } else { -ms },
                        node: None,
                    }
                }
                "clock-drift" => {
                    let ppm = rng.range_u64(100, 200_000) as i64;
                    Fault::ClockDrift {
                        at_s,
                        for_s,
                        ppm: if rng.range_u64(0, 2) == 1 { ppm } else { -ppm },
                        node: None,
                    }
                }
                "pause" => Fault::Pause {
                    at_s,
                    for_s,
                    mid_write: false,
                    node: None,
                },
                _ => continue, // Checked at load time.
            };
            // In a cluster a node-scoped fault strikes one broker drawn from the seed.
            let fault = if brokers > 1 && fault.node().is_some() {
                fault.on_node(broker_name(rng.range_u64(1, brokers as u64 + 1) as usize))
            } else {
                fault
            };
            busy_until.insert(group, fault.healed_at_s());
            out.push(fault);
        }
    }
}

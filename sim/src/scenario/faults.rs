//! A scenario's faults: the ones it lists (`[[fault]]`, each at a time, on a node or a link,
//! for a window) and the ones it draws from the seed (`[random_faults]`).
//!
//! Invariant: the faults of a run are a function of the scenario and the seed alone; every
//! fault with a window heals when it ends.

use serde::{Deserialize, Serialize};

use super::{is_broker, one, BROKER_NODE, CLIENT_NODES};
pub use crate::history::{FloodPort, FloodSend};

/// A fault, applied at `at_s` simulated seconds into the run.
/// A slow disk: every operation's latency range, and its tail (per million, how long).
pub type SlowDisk = (
    (std::time::Duration, std::time::Duration),
    Option<(u32, std::time::Duration)>,
);

/// How long a planned stop (`stop`) waits for the broker's graceful shutdown before it kills
/// the broker (SIGKILL after SIGTERM, in a twin run).
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// The broker's fault points a crash may land at (`at_point`): the steps of Raft's persist
/// contract, in order — a Ready's messages sent and its write not begun; the write begun in
/// the commit pipeline, nothing synced; synced, not yet told to the node; durable, the
/// messages that waited for it not yet sent; committed, not yet applied.
pub const CRASH_POINTS: [&str; 6] = [
    "raft.before_persist",
    "raft_write.before_sync",
    "raft_write.after_sync",
    "raft.after_persist",
    "raft.before_apply",
    "txn.decision_write",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Every fsync started in the window waits until its end.
    FsyncStall {
        at_s: u64,
        for_s: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// The next `count` fsyncs fail with EIO and drop the dirty data.
    FsyncEio {
        at_s: u64,
        count: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Kill the node (unsynced data lost, or torn; with `wipe`, its whole disk lost — a
    /// replaced disk), restart it after `down_s`. With `in_joint`, from `at_s` wait until a
    /// group enters a joint configuration and kill the broker that applied it first (its
    /// leader, as a rule) instead: the joint configuration is left under a new leader.
    Crash {
        at_s: u64,
        #[serde(default)]
        torn: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        wipe: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_joint: bool,
        /// From `at_s` (for up to 20 s), wait until the node — any broker, without `node` —
        /// is writing a cleaned copy of a segment (`<base>.cleaned.tmp` exists), then kill it
        /// within the next 30 ms: a crash at some step of a cleaning's swap.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        while_cleaning: bool,
        /// From `at_s` (for up to 20 s), the first time the node — any broker, without `node` —
        /// reaches this fault point of the broker ([`CRASH_POINTS`]), kill it there (it is
        /// parked at the point until the kill, in the same instant; its other tasks may run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_point: Option<String>,
        /// With `at_point`: the broker stays parked at the point for a time drawn from
        /// `[min, max]` ms before the kill, its other tasks running on — a process that dies
        /// while one of its tasks is stopped between two steps (default: the same instant).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold_ms: Option<[u64; 2]>,
        #[serde(default = "one")]
        down_s: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// A planned stop, as an upgrade or an operator's restart does (SIGTERM): the broker shuts
    /// down gracefully — Kafka's controlled shutdown hands its leaderships over first — and is
    /// started again after `down_s`. Nothing is lost: what it wrote stays in the page cache.
    Stop {
        at_s: u64,
        #[serde(default = "one")]
        down_s: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Every disk operation takes between `min_ms` and `max_ms` (uniformly) for `for_s`; with a
    /// tail, `spike_per_million` of them take `spike_ms` instead.
    SlowDisk {
        at_s: u64,
        for_s: u64,
        min_ms: u64,
        max_ms: u64,
        #[serde(default)]
        spike_ms: u64,
        #[serde(default)]
        spike_per_million: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Another tenant's I/O on the broker's disk for `for_s`: `streams` of operations back to
    /// back, each holding a place of the device queue for `service_ms` — the broker's syncs
    /// and reads wait in line behind them. A disk without a queue gets one of depth 1 for the
    /// window.
    BusyDisk {
        at_s: u64,
        for_s: u64,
        #[serde(default = "one")]
        streams: u64,
        service_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Another process takes `percent` of the broker's processors for `for_s` (a build on the
    /// same host): its work takes longer by as much. Needs the scenario's `[cpu]`.
    BusyCpu {
        at_s: u64,
        for_s: u64,
        percent: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// The disk is full (writes that grow files fail) for `for_s`.
    DiskFull {
        at_s: u64,
        for_s: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Each disk read returns one flipped bit with this chance (per million reads) for `for_s`.
    Bitflip {
        at_s: u64,
        for_s: u64,
        per_million: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// For `for_s`, each read of the broker's disk fails with EIO with this chance per million
    /// (a bad sector, a flaky controller: the data stays, the read fails), after `stall_ms`
    /// (a drive retrying a bad sector for seconds before it gives up; past the broker's I/O
    /// deadline, the read is a stalled one to the broker).
    ReadEio {
        at_s: u64,
        for_s: u64,
        per_million: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        stall_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// A network partition for `for_s`: a node isolated, or one link cut (one way or both).
    Partition {
        at_s: u64,
        for_s: u64,
        /// Isolate this node from every other (`broker-1`, `producers`, `consumers`, `admin`)…
        #[serde(default)]
        node: Option<String>,
        /// …or cut the link between these two nodes.
        #[serde(default)]
        link: Option<[String; 2]>,
        /// Only messages from the node (or from the link's first node) are lost; the other
        /// direction still flows. Default: both ways.
        #[serde(default)]
        one_way: bool,
    },
    /// Each network message is lost with this chance for `for_s` (TCP resends: delays).
    PacketLoss { at_s: u64, for_s: u64, rate: f64 },
    /// Network messages take between `min_ms` and `max_ms` for `for_s`.
    NetLatency {
        at_s: u64,
        for_s: u64,
        min_ms: u64,
        max_ms: u64,
    },
    /// The broker's wall clock jumps by `offset_ms` (negative: back) for `for_s`.
    ClockSkew {
        at_s: u64,
        for_s: u64,
        offset_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// The broker's timers run slow (positive) or fast (negative) by `ppm` for `for_s`.
    ClockDrift {
        at_s: u64,
        for_s: u64,
        ppm: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Strangers flood broker `node`'s `port` ("client" or "inter-broker") for `for_s`:
    /// `connections` connections from one address that is neither a client's nor a broker's,
    /// each sending `send` ("garbage": bytes no frame or hello starts with; "nothing": an idle
    /// connection; "half": the first bytes of a frame, then nothing) and held until the broker
    /// closes it or the window ends. Struck by the workload (the same code in both worlds).
    Flood {
        at_s: u64,
        for_s: u64,
        #[serde(default = "default_flood_connections")]
        connections: u32,
        #[serde(default)]
        port: FloodPort,
        #[serde(default)]
        send: FloodSend,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// The broker process is paused (SIGSTOP, a long GC) for `for_s`. With `mid_write`, from
    /// `at_s` on the pause waits (up to 20 s) for the broker to begin a disk write and lands
    /// while that write is in flight, so that the operation's deadline spans the pause.
    Pause {
        at_s: u64,
        for_s: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        mid_write: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
}

fn default_flood_connections() -> u32 {
    300
}

impl Fault {
    pub fn at_s(&self) -> u64 {
        match self {
            Fault::FsyncStall { at_s, .. }
            | Fault::FsyncEio { at_s, .. }
            | Fault::Crash { at_s, .. }
            | Fault::SlowDisk { at_s, .. }
            | Fault::BusyDisk { at_s, .. }
            | Fault::BusyCpu { at_s, .. }
            | Fault::DiskFull { at_s, .. }
            | Fault::Bitflip { at_s, .. }
            | Fault::ReadEio { at_s, .. }
            | Fault::Partition { at_s, .. }
            | Fault::PacketLoss { at_s, .. }
            | Fault::NetLatency { at_s, .. }
            | Fault::ClockSkew { at_s, .. }
            | Fault::ClockDrift { at_s, .. }
            | Fault::Pause { at_s, .. }
            | Fault::Flood { at_s, .. }
            | Fault::Stop { at_s, .. } => *at_s,
        }
    }

    /// The broker a node-scoped fault (disk, process, clock) strikes; `broker-1` by default.
    pub fn node(&self) -> Option<&str> {
        match self {
            Fault::FsyncStall { node, .. }
            | Fault::FsyncEio { node, .. }
            | Fault::Crash { node, .. }
            | Fault::SlowDisk { node, .. }
            | Fault::BusyDisk { node, .. }
            | Fault::BusyCpu { node, .. }
            | Fault::DiskFull { node, .. }
            | Fault::Bitflip { node, .. }
            | Fault::ReadEio { node, .. }
            | Fault::ClockSkew { node, .. }
            | Fault::ClockDrift { node, .. }
            | Fault::Pause { node, .. }
            | Fault::Flood { node, .. }
            | Fault::Stop { node, .. } => Some(node.as_deref().unwrap_or(BROKER_NODE)),
            Fault::Partition { .. } | Fault::PacketLoss { .. } | Fault::NetLatency { .. } => None,
        }
    }

    /// The broker a report names for this fault: none for a crash of whichever broker first
    /// reaches a point, a cleaning or a joint configuration (the trace says which one it was).
    pub fn named_node(&self) -> Option<&str> {
        match self {
            Fault::Crash {
                node: None,
                at_point,
                in_joint,
                while_cleaning,
                ..
            } if at_point.is_some() || *in_joint || *while_cleaning => None,
            _ => self.node(),
        }
    }

    /// Strike broker `name` (a node-scoped fault; others are left as they are).
    pub fn on_node(mut self, name: String) -> Fault {
        match &mut self {
            Fault::FsyncStall { node, .. }
            | Fault::FsyncEio { node, .. }
            | Fault::Crash { node, .. }
            | Fault::SlowDisk { node, .. }
            | Fault::BusyDisk { node, .. }
            | Fault::BusyCpu { node, .. }
            | Fault::DiskFull { node, .. }
            | Fault::Bitflip { node, .. }
            | Fault::ReadEio { node, .. }
            | Fault::ClockSkew { node, .. }
            | Fault::ClockDrift { node, .. }
            | Fault::Pause { node, .. }
            | Fault::Flood { node, .. }
            | Fault::Stop { node, .. } => *node = Some(name),
            Fault::Partition { .. } | Fault::PacketLoss { .. } | Fault::NetLatency { .. } => {}
        }
        self
    }

    /// When the fault is over (for the after-heal liveness check).
    pub fn healed_at_s(&self) -> u64 {
        match self {
            Fault::FsyncStall { at_s, for_s, .. }
            | Fault::SlowDisk { at_s, for_s, .. }
            | Fault::BusyDisk { at_s, for_s, .. }
            | Fault::BusyCpu { at_s, for_s, .. }
            | Fault::DiskFull { at_s, for_s, .. }
            | Fault::Bitflip { at_s, for_s, .. }
            | Fault::ReadEio { at_s, for_s, .. }
            | Fault::Partition { at_s, for_s, .. }
            | Fault::PacketLoss { at_s, for_s, .. }
            | Fault::NetLatency { at_s, for_s, .. }
            | Fault::ClockSkew { at_s, for_s, .. }
            | Fault::ClockDrift { at_s, for_s, .. }
            | Fault::Pause { at_s, for_s, .. }
            | Fault::Flood { at_s, for_s, .. } => at_s + for_s,
            Fault::FsyncEio { at_s, .. } => *at_s,
            Fault::Crash { at_s, down_s, .. } | Fault::Stop { at_s, down_s, .. } => at_s + down_s,
        }
    }

    /// The kind's name, as in scenario files.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::FsyncStall { .. } => "fsync-stall",
            Fault::FsyncEio { .. } => "fsync-eio",
            Fault::Crash { .. } => "crash",
            Fault::SlowDisk { .. } => "slow-disk",
            Fault::BusyDisk { .. } => "busy-disk",
            Fault::BusyCpu { .. } => "busy-cpu",
            Fault::DiskFull { .. } => "disk-full",
            Fault::Bitflip { .. } => "bitflip",
            Fault::ReadEio { .. } => "read-eio",
            Fault::Partition { .. } => "partition",
            Fault::PacketLoss { .. } => "packet-loss",
            Fault::NetLatency { .. } => "net-latency",
            Fault::ClockSkew { .. } => "clock-skew",
            Fault::ClockDrift { .. } => "clock-drift",
            Fault::Pause { .. } => "pause",
            Fault::Stop { .. } => "stop",
            Fault::Flood { .. } => "flood",
        }
    }

    /// A `slow-disk` fault's latency range and its tail (per million, how long), as the disk
    /// models of both worlds take them.
    pub fn slow_disk(&self) -> Option<SlowDisk> {
        let Fault::SlowDisk {
            min_ms,
            max_ms,
            spike_ms,
            spike_per_million,
            ..
        } = self
        else {
            return None;
        };
        let ms = std::time::Duration::from_millis;
        let spike = (*spike_per_million > 0).then(|| (*spike_per_million, ms(*spike_ms)));
        Some(((ms(*min_ms), ms(*max_ms)), spike))
    }

    /// Whether the fault can make a disk operation fail or miss its deadline (so a data
    /// directory may be declared failed).
    pub fn strikes_disk(&self) -> bool {
        matches!(
            self,
            Fault::FsyncStall { .. }
                | Fault::FsyncEio { .. }
                | Fault::SlowDisk { .. }
                | Fault::BusyDisk { .. }
                | Fault::DiskFull { .. }
                | Fault::ReadEio { .. }
        )
    }

    /// Whether the fault keeps `client`'s requests or their answers from getting through while
    /// the broker itself is fine (the network between them, or the process not running): a
    /// wait then is not the broker hanging.
    pub fn silences(&self, client: &str) -> bool {
        match self {
            Fault::Partition { node, link, .. } => match (node, link) {
                (Some(n), _) => is_broker(n) || n == client,
                (None, Some([a, b])) => {
                    (a == client && is_broker(b)) || (is_broker(a) && b == client)
                }
                (None, None) => false,
            },
            Fault::PacketLoss { .. }
            | Fault::NetLatency { .. }
            | Fault::Pause { .. }
            | Fault::Stop { .. } => true,
            _ => false,
        }
    }

    /// One line for traces and reports.
    pub fn describe(&self) -> String {
        match self {
            Fault::FsyncStall { for_s, .. } => format!("fsync-stall for {for_s} s"),
            Fault::FsyncEio { count, .. } => format!("fsync-eio × {count}"),
            Fault::Crash {
                torn,
                down_s,
                wipe,
                in_joint,
                while_cleaning,
                at_point,
                hold_ms,
                ..
            } => format!(
                "crash{} ({}), down {down_s} s",
                if *in_joint {
                    " of a group's leader as it enters a joint configuration".to_string()
                } else if *while_cleaning {
                    " while the cleaner swaps a segment".to_string()
                } else if let (Some(p), Some([min, max])) = (at_point, hold_ms) {
                    format!(" {min}–{max} ms after a stop at {p}")
                } else if let Some(p) = at_point {
                    format!(" at {p}")
                } else {
                    String::new()
                },
                if *wipe {
                    "its disk lost"
                } else if *torn {
                    "unsynced data torn"
                } else {
                    "unsynced data lost"
                }
            ),
            Fault::SlowDisk {
                for_s,
                min_ms,
                max_ms,
                spike_ms,
                spike_per_million,
                ..
            } => {
                let tail = if *spike_per_million > 0 {
                    format!(
                        ", {:.2} % of them {spike_ms} ms",
                        *spike_per_million as f64 / 10_000.0
                    )
                } else {
                    String::new()
                };
                format!("slow-disk {min_ms}-{max_ms} ms{tail} for {for_s} s")
            }
            Fault::BusyDisk {
                for_s,
                streams,
                service_ms,
                ..
            } => format!(
                "busy-disk: {streams} stream(s) of {service_ms} ms operations for {for_s} s"
            ),
            Fault::BusyCpu { for_s, percent, .. } => {
                format!("busy-cpu: {percent} % of the processors taken for {for_s} s")
            }
            Fault::DiskFull { for_s, .. } => format!("disk-full for {for_s} s"),
            Fault::Bitflip {
                for_s, per_million, ..
            } => format!("bitflip on {per_million} reads per million for {for_s} s"),
            Fault::ReadEio {
                for_s,
                per_million,
                stall_ms,
                ..
            } => {
                let after = match stall_ms {
                    0 => String::new(),
                    ms => format!(" (each after {ms} ms)"),
                };
                format!("read-eio on {per_million} reads per million{after} for {for_s} s")
            }
            Fault::Partition {
                for_s,
                node,
                link,
                one_way,
                ..
            } => {
                let what = match (node, link) {
                    (Some(n), _) => format!("{n} isolated"),
                    (None, Some([a, b])) => format!("{a} → {b}"),
                    (None, None) => "nothing".into(),
                };
                let way = if *one_way { "one way" } else { "both ways" };
                format!("partition: {what} ({way}) for {for_s} s")
            }
            Fault::PacketLoss { for_s, rate, .. } => {
                format!("packet-loss {:.0} % for {for_s} s", rate * 100.0)
            }
            Fault::NetLatency {
                for_s,
                min_ms,
                max_ms,
                ..
            } => format!("net-latency {min_ms}-{max_ms} ms for {for_s} s"),
            Fault::ClockSkew {
                for_s, offset_ms, ..
            } => format!("clock-skew {offset_ms:+} ms for {for_s} s"),
            Fault::ClockDrift { for_s, ppm, .. } => {
                format!("clock-drift {ppm:+} ppm for {for_s} s")
            }
            Fault::Stop { down_s, .. } => format!("stop (SIGTERM), down {down_s} s"),
            Fault::Flood {
                for_s,
                connections,
                port,
                send,
                ..
            } => format!(
                "flood: {connections} stranger connection(s) sending {} to the {} port for \
                 {for_s} s",
                match send {
                    FloodSend::Garbage => "garbage",
                    FloodSend::Nothing => "nothing",
                    FloodSend::Half => "half a frame",
                },
                match port {
                    FloodPort::Client => "client",
                    FloodPort::InterBroker => "inter-broker",
                }
            ),
            Fault::Pause {
                for_s, mid_write, ..
            } => format!(
                "pause for {for_s} s{}",
                if *mid_write { " mid-write" } else { "" }
            ),
        }
    }

    pub(super) fn check(&self, brokers: usize) -> Result<(), String> {
        let broker_known =
            |n: &str| is_broker(n) && n[7..].parse::<usize>().is_ok_and(|i| i <= brokers.max(1));
        let node_known = |n: &str| broker_known(n) || CLIENT_NODES.contains(&n);
        if let Some(n) = self.node() {
            if !broker_known(n) {
                return Err(format!(
                    "{} names node {n:?}, which is not a broker of this run",
                    self.kind()
                ));
            }
        }
        match self {
            Fault::Flood {
                port: FloodPort::InterBroker,
                ..
            } if brokers <= 1 => {
                Err("a flood of the inter-broker port needs a cluster: one broker has none".into())
            }
            Fault::Partition { node, link, .. } => match (node, link) {
                (Some(n), None) if node_known(n) => Ok(()),
                (None, Some([a, b])) if node_known(a) && node_known(b) && a != b => Ok(()),
                _ => Err(format!(
                    "a partition names one `node` or a `link` of two different nodes among \
                     the brokers ({BROKER_NODE}…) and {}",
                    CLIENT_NODES.join(", ")
                )),
            },
            Fault::Crash {
                at_point: None,
                hold_ms: Some(_),
                ..
            } => {
                Err("hold_ms says how long a broker stays parked at its at_point: give one".into())
            }
            Fault::Crash {
                at_point: Some(p),
                in_joint,
                while_cleaning,
                hold_ms,
                ..
            } => {
                if !CRASH_POINTS.contains(&p.as_str()) {
                    Err(format!(
                        "at_point {p:?} is not one of {}",
                        CRASH_POINTS.join(", ")
                    ))
                } else if *in_joint || *while_cleaning {
                    Err(
                        "at_point, in_joint and while_cleaning each say when to crash: give one"
                            .into(),
                    )
                } else if let Some([min, max]) = hold_ms.filter(|[a, b]| a > b || *b > 60_000) {
                    Err(format!(
                        "hold_ms [{min}, {max}] is not a range of at most 60000 ms"
                    ))
                } else {
                    Ok(())
                }
            }
            Fault::PacketLoss { rate, .. } if !(0.0..1.0).contains(rate) => {
                Err(format!("packet-loss rate {rate} is not in [0, 1)"))
            }
            Fault::SlowDisk { min_ms, max_ms, .. } | Fault::NetLatency { min_ms, max_ms, .. }
                if min_ms > max_ms =>
            {
                Err(format!("min_ms {min_ms} is above max_ms {max_ms}"))
            }
            _ => Ok(()),
        }
    }
}

/// When the last of these faults heals (0 without faults).
pub fn last_heal_s(faults: &[Fault]) -> u64 {
    faults.iter().map(Fault::healed_at_s).max().unwrap_or(0)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    /// A three-broker scenario whose one fault is this crash's table.
    fn with_crash(crash: &str) -> Result<Scenario, String> {
        let text = format!(
            "name = \"t\"\ndescription = \"t\"\nduration_s = 30\n[cluster]\nnodes = 3\n\
             [workload]\nproducers = 1\nacks = -1\ninterval_ms = 50\n[[faults]]\nkind = \"crash\"\nat_s = 5\n{crash}\n\
             [expect]\noutcome = \"pass\"\nresponse_deadline_s = 10\nliveness_deadline_s = 30\n"
        );
        Scenario::from_table(toml::from_str(&text).expect("toml"))
    }

    #[test]
    fn a_hold_needs_a_crash_point_and_a_range() {
        let point = "at_point = \"txn.decision_write\"";
        let held = with_crash(&format!("{point}\nhold_ms = [0, 15]")).expect("valid");
        assert!(held.faults[0]
            .describe()
            .contains("0–15 ms after a stop at"));
        assert_eq!(held.faults[0].named_node(), None);
        let alone = with_crash("hold_ms = [0, 15]").expect_err("no point");
        assert!(alone.contains("hold_ms"), "{alone}");
        let backwards = with_crash(&format!("{point}\nhold_ms = [20, 10]")).expect_err("range");
        assert!(backwards.contains("[20, 10]"), "{backwards}");
        let unknown = with_crash("at_point = \"txn.nowhere\"").expect_err("point");
        assert!(unknown.contains("txn.decision_write"), "{unknown}");
        assert_eq!(
            with_crash("node = \"broker-2\"").expect("valid").faults[0].named_node(),
            Some("broker-2")
        );
    }
}

//! Apache Kafka as a benchmark's peer: a fresh run of [`crate::kafka`] (one node or three, in
//! `<target>/bench/kafka`, on ports of its own) for each measured run, with Kafka's start
//! script's heap, at one of two durability settings.

use anyhow::Result;
use clap::ValueEnum;

use crate::kafka::{Kafka, Launch, VERSION};
use crate::target_dir;

/// The first client port of a benchmark's Kafka (apart from `cargo xtask kafka up`'s and the
/// differential suite's, so that all three may run at once).
const BASE_PORT: u16 = 30600;

/// How Kafka makes a write durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// As shipped: a write is acknowledged once in the page cache (of every in-sync replica,
    /// at acks=all); the operating system writes it out later.
    Shipped,
    /// `flush.messages=1` (the brokers' `log.flush.interval.messages=1`): every append is
    /// fsynced before it counts, the promise Stillwater makes by default.
    Flush,
}

impl Durability {
    pub fn name(self) -> String {
        match self {
            Durability::Shipped => format!("kafka {VERSION}"),
            Durability::Flush => format!("kafka {VERSION} flush.messages=1"),
        }
    }

    fn settings(self) -> Vec<String> {
        match self {
            Durability::Shipped => Vec::new(),
            Durability::Flush => vec!["log.flush.interval.messages=1".into()],
        }
    }
}

/// A fresh Kafka for one run; [`FreshKafka::stop`] stops it and removes its data.
pub struct FreshKafka {
    kafka: Kafka,
}

impl FreshKafka {
    /// Stop whatever an earlier run left, remove its folder, and start `nodes` new nodes with
    /// a heap of 1 GB each (as `kafka-server-start.sh` gives) and topics replicated
    /// `min(3, nodes)` ways by default.
    pub fn start(nodes: u16, durability: Durability) -> Result<Self> {
        let dir = target_dir().join("bench").join("kafka");
        if dir.exists() {
            crate::kafka::stop_all(&dir);
            std::fs::remove_dir_all(&dir)?;
        }
        let launch = Launch {
            heap: "1g".into(),
            settings: durability.settings(),
        };
        let kafka = Kafka::up_with(&dir, nodes, BASE_PORT, &launch)?;
        Ok(FreshKafka { kafka })
    }

    pub fn bootstrap(&self) -> &str {
        &self.kafka.bootstrap
    }

    pub fn pids(&self) -> Vec<u32> {
        self.kafka.pids()
    }

    /// Stop the nodes; remove their data unless `keep` (after a failure: their logs are in it).
    pub fn stop(self, keep: bool) {
        self.kafka.down();
        if !keep {
            let _ = std::fs::remove_dir_all(&self.kafka.dir);
        }
    }
}

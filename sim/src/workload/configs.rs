//! Configuration churn (scenarios with `[workload.configs]`): an admin creates one topic of its
//! own and then, every `interval_ms` until producing stops, sets one of its keys to a new value
//! (IncrementalAlterConfigs SET), the keys in turn, each change sent to the next broker in the
//! bootstrap list — two changes in a row through different brokers are the case in which a
//! change made from a broker's own replica of the metadata, not yet up to date, loses the one
//! before it. Each change is an admin operation in the history
//! (`alter-config <topic> <key>=<value> via <broker>`), followed, when acknowledged, by a
//! DescribeConfigs through the same broker (`describe-config …`); after the run every broker
//! describes the topic ([`described`]) and the checker ([`crate::checks::configs`]) holds each
//! key's value against the last change to it acknowledged before.
//!
//! The keys leave the run alone: retention and segment times of weeks, a record size limit of
//! about a megabyte, a tombstone retention the delete policy ignores.
//!
//! Data: a topic of one partition that holds nothing; a few hundred metadata records a run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::client::routing::Directory;
use super::client::Client;
use super::{admin_result, existing_is_created, wait_ready, World};

/// The admin's topic whose configuration changes.
pub const CONFIG_TOPIC: &str = "configured";

/// The keys set in turn, each with the value its `n`th change sets.
pub const KEYS: [(&str, u64); 4] = [
    ("retention.ms", 604_800_000),
    ("segment.ms", 604_800_000),
    ("max.message.bytes", 1_048_588),
    ("delete.retention.ms", 86_400_000),
];

pub async fn changer(world: Arc<World>) {
    let Some(spec) = world.scenario.workload.configs.clone() else {
        return;
    };
    if !wait_ready(&world).await {
        return;
    }
    let timeout = world.client_timeout();
    // The topic first, through any broker, until it exists.
    loop {
        if Instant::now() >= world.end {
            return;
        }
        let mut conn = world.connect_to(world.directory.any()).await;
        let Some(c) = conn.as_mut() else { continue };
        let invoked_s = world.now_s();
        let r = tokio::time::timeout(timeout, c.create_topic(CONFIG_TOPIC, 1))
            .await
            .map(existing_is_created);
        let what = format!("create {CONFIG_TOPIC}");
        if admin_result(&world, &mut conn, what, invoked_s, r) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut n = 0u64;
    while Instant::now() < world.end {
        tokio::time::sleep(Duration::from_millis(spec.interval_ms)).await;
        let addr = world.directory.any();
        let mut conn = world.connect_to(addr).await;
        let Some(c) = conn.as_mut() else { continue };
        let (key, base) = KEYS[(n % KEYS.len() as u64) as usize];
        let value = (base + n).to_string();
        let invoked_s = world.now_s();
        let r = tokio::time::timeout(timeout, c.set_topic_config(CONFIG_TOPIC, key, &value)).await;
        let via = format!("broker-{}", world.broker_index(addr) + 1);
        let what = format!("alter-config {CONFIG_TOPIC} {key}={value} via {via}");
        if admin_result(&world, &mut conn, what, invoked_s, r) {
            describe(&world, &mut conn, &via).await;
        }
        n += 1;
    }
}

/// Ask the broker that just acknowledged a change for the topic's keys (it has applied every
/// change acknowledged before): an admin operation `describe-config <topic> <key>=<value>…
/// via <broker>`.
async fn describe(world: &World, conn: &mut Option<Client>, via: &str) {
    let Some(c) = conn.as_mut() else { return };
    let keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    let invoked_s = world.now_s();
    let r =
        tokio::time::timeout(world.client_timeout(), c.topic_configs(CONFIG_TOPIC, &keys)).await;
    let values = match &r {
        Ok(Ok(configs)) => configs
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect::<String>(),
        _ => String::new(),
    };
    let what = format!("describe-config {CONFIG_TOPIC}{values} via {via}");
    admin_result(world, conn, what, invoked_s, r.map(|r| r.map(|_| ())));
}

/// After the run: how each broker (in order; `None`: it did not answer within 30 s) describes
/// the keys of the configured topic.
pub async fn described(directory: Arc<Directory>) -> Vec<Option<BTreeMap<String, String>>> {
    let keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    let mut out = Vec::new();
    for &addr in directory.brokers() {
        let ask = async {
            loop {
                if let Ok(mut c) = Client::connect(addr).await {
                    if let Ok(configs) = c.topic_configs(CONFIG_TOPIC, &keys).await {
                        return configs;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        out.push(
            tokio::time::timeout(Duration::from_secs(30), ask)
                .await
                .ok(),
        );
    }
    out
}

//! Real librdkafka producers joining a twin run (`sim real --librdkafka-producers N`): each is
//! a process of its own (confluent-kafka, `rdkafka_producer.py`, run with the test clients'
//! Python) that sends the simulator's own messages as one more producer of the workload —
//! producer `P` = the scenario's producers + its index, message `n` the value `p<P>-<n>` on
//! partition `(P + n) mod partitions` — idempotently with acks=all. Its delivery reports
//! become the run's history, so the same checkers judge them: every acknowledged value must be
//! read back, at most once, and each partition's acknowledged values in the order sent.
//!
//! They dial the brokers' listeners directly (librdkafka connects to the addresses Metadata
//! advertises, and cannot be pointed at a client node's proxies), so a partition that cuts a
//! client node off leaves them connected; every other fault strikes them as it strikes the
//! brokers.
//!
//! Invariant: a producer is done (flushed, every message reported or timed out) before the
//! workload's producers are, so the final read sees everything it acknowledged; a message
//! librdkafka did not report (the process killed a minute past its deadline) or that timed out
//! is recorded as unknown (it may have been written).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::time::Instant;

use crate::history::{Idempotence, Op, Send, SendOutcome};
use crate::workload::World;

/// The producer's script, written into each run's directory.
const SCRIPT: &str = include_str!("rdkafka_producer.py");

/// How long librdkafka keeps trying a message before it reports it failed.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after its deadline and its messages' timeout a producer may take to end.
const GRACE: Duration = Duration::from_secs(60);

/// Real librdkafka producers for a twin run.
#[derive(Debug, Clone)]
pub struct Librdkafka {
    pub producers: usize,
    /// A Python with confluent-kafka (`cargo xtask` passes the test clients' environment).
    pub python: PathBuf,
}

/// Why a scenario cannot have librdkafka producers, if it cannot.
pub fn unsupported(scenario: &crate::scenario::Scenario) -> Option<&'static str> {
    let w = &scenario.workload;
    if w.compacted.is_some() {
        Some("librdkafka producers send the plain workload's messages, not a compacted one's")
    } else if scenario.auth.is_some() {
        Some("librdkafka producers do not log in")
    } else {
        None
    }
}

/// One delivery report, as the script writes it.
#[derive(Deserialize)]
struct Delivered {
    n: u64,
    partition: i32,
    invoked: f64,
    /// `None` on the line that says it was sent (its report, if any, is another line).
    completed: Option<f64>,
    offset: Option<i64>,
    error: Option<i32>,
}

/// librdkafka's local error codes (negative) that leave a message unknown: it may have been
/// written (a timeout, a broken connection); broker codes (positive) are Kafka's.
fn outcome(d: &Delivered) -> SendOutcome {
    match (d.offset, d.error) {
        (Some(o), None) if o >= 0 => SendOutcome::Ok(o),
        (_, Some(code)) if code > 0 => SendOutcome::failed(code as i16),
        _ => SendOutcome::Unknown,
    }
}

/// Run librdkafka producer `index` until the workload's producers stop, then record what it
/// was told. `dir` is the run's directory (its script and output go there).
pub async fn produce(world: Arc<World>, index: usize, with: Librdkafka, dir: PathBuf) {
    let w = &world.scenario.workload;
    let producer = w.producers + index;
    let now_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let t0 = now_epoch - (Instant::now() - world.start).as_secs_f64();
    let until = t0 + (world.end - world.start).as_secs_f64();
    let until_in = world.end.saturating_duration_since(Instant::now());
    let bootstrap = world
        .directory
        .brokers()
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        format!("bootstrap={bootstrap}"),
        format!("topic={}", w.topic),
        format!("producer={producer}"),
        format!("partitions={}", w.partitions),
        format!("producers={}", w.producers),
        format!("value_bytes={}", w.value_bytes),
        format!("interval_ms={}", w.interval_ms),
        format!("t0={t0}"),
        format!("until={until}"),
        format!("message_timeout_ms={}", MESSAGE_TIMEOUT.as_millis()),
    ];
    let run = move || -> std::io::Result<(std::process::ExitStatus, String)> {
        let script = dir.join("rdkafka_producer.py");
        std::fs::write(&script, SCRIPT)?;
        let out = dir.join(format!("librdkafka-{producer}.jsonl"));
        let err = dir.join(format!("librdkafka-{producer}.log"));
        let mut child = std::process::Command::new(&with.python)
            .arg(&script)
            .args(&args)
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()?;
        // It flushes for at most the message timeout and ten seconds after its deadline; a
        // process still there a minute later is killed (what it reported so far still counts).
        let give_up = std::time::Instant::now() + until_in + MESSAGE_TIMEOUT + GRACE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() >= give_up {
                let _ = child.kill();
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok((status, std::fs::read_to_string(&out)?))
    };
    let (status, text) = match tokio::task::spawn_blocking(run).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::error!("librdkafka producer {producer} did not run: {e}");
            return;
        }
        Err(e) => {
            tracing::error!("librdkafka producer {producer}: {e}");
            return;
        }
    };
    if !status.success() {
        tracing::warn!("librdkafka producer {producer} ended with {status}");
    }
    record(&world, producer, &text);
}

/// The delivery reports of `producer` (one JSON line each) as the run's sends.
fn record(world: &World, producer: usize, text: &str) {
    let w = &world.scenario.workload;
    // librdkafka's sequence numbers are per partition, in the order sent.
    let mut sequence = std::collections::BTreeMap::<i32, i32>::new();
    // Per message: its report, or the line that says it was sent (never reported: unknown).
    let mut last = std::collections::BTreeMap::<u64, Delivered>::new();
    for d in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Delivered>(l).ok())
    {
        if d.completed.is_some() || !last.contains_key(&d.n) {
            last.insert(d.n, d);
        }
    }
    for d in last.into_values() {
        let (partition, value) = crate::workload::message(w, producer, d.n);
        if partition != d.partition {
            tracing::error!(
                "librdkafka producer {producer}: message {} on partition {}, not {partition}",
                d.n,
                d.partition
            );
            continue;
        }
        let seq = sequence.entry(partition).or_default();
        let idempotence = Idempotence {
            // Not the broker's producer id (librdkafka does not tell it): one of its own.
            producer_id: -1 - producer as i64,
            epoch: 0,
            sequence: *seq,
        };
        *seq += 1;
        world.record(Op::Send(Send {
            producer,
            partition,
            value,
            idempotence: Some(idempotence),
            attempt: 1,
            acks: -1,
            // Not known: librdkafka does not say which broker took it.
            broker: usize::MAX,
            invoked_s: d.invoked,
            completed_s: d.completed.unwrap_or_else(|| world.now_s()),
            outcome: outcome(&d),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> Delivered {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_delivery_report_is_acknowledged_refused_or_unknown() {
        // Sent and never reported: it may have been written.
        let sent = read(r#"{"n":2,"partition":0,"invoked":1.0}"#);
        assert_eq!(outcome(&sent), SendOutcome::Unknown);
        let ok = read(r#"{"n":3,"partition":1,"invoked":1.5,"completed":1.6,"offset":42}"#);
        assert_eq!(outcome(&ok), SendOutcome::Ok(42));
        // A broker's code (NOT_ENOUGH_REPLICAS): refused, definitely not written.
        let refused = read(
            r#"{"n":4,"partition":0,"invoked":2,"completed":2.1,"error":19,"error_name":"NOT_ENOUGH_REPLICAS"}"#,
        );
        assert_eq!(outcome(&refused), SendOutcome::failed(19));
        assert!(outcome(&refused).definitely_failed());
        // librdkafka's own timeout (_MSG_TIMED_OUT): it may have been written.
        let timed_out = read(
            r#"{"n":5,"partition":1,"invoked":3,"completed":33,"error":-192,"error_name":"_MSG_TIMED_OUT"}"#,
        );
        assert_eq!(outcome(&timed_out), SendOutcome::Unknown);
    }
}

//! The simulated idempotent producer, as Kafka's Java producer behaves with
//! `enable.idempotence=true`: a producer id from InitProducerId, a sequence number per
//! partition for each batch, up to `max_in_flight` requests pipelined on one connection, and
//! every batch not acknowledged sent again — in order, with the same producer id, epoch and
//! sequence — after an error or a lost connection. A batch that runs out of retries is given
//! up with everything after it and the producer starts over with a new producer id (what the
//! Java producer does when a batch expires). The broker must then keep every value in the log
//! at most once. In a cluster each batch goes to its partition's leader (one connection per
//! leader, `max_in_flight` on each), a partition's batches on one connection at a time.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use tokio::time::Instant;

use crate::history::{retriable_code, Idempotence, Op, Send, SendOutcome, KAFKA_STORAGE_ERROR};
use crate::workload::client::routing::{leadership_code, Conns};
use crate::workload::client::{produce_answer, Client, ClientError, PRODUCE_VERSION};
use crate::workload::{wait_ready, wall_ms, World, RETRY_BACKOFF};

/// Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// One batch (one value) not yet acknowledged.
struct Batch {
    partition: i32,
    value: Bytes,
    sequence: i32,
    attempts: u32,
    /// Sent: the broker, its correlation id on that connection, and when.
    in_flight: Option<InFlight>,
}

#[derive(Clone, Copy)]
struct InFlight {
    to: SocketAddr,
    id: i32,
    invoked_s: f64,
    sent: Instant,
}

/// The producer's state between requests.
struct Producer {
    index: usize,
    ids: Option<(i64, i16)>,
    next_sequence: BTreeMap<i32, i32>,
    queue: VecDeque<Batch>,
    next_value: u64,
}

impl Producer {
    fn idempotence(&self, b: &Batch) -> Option<Idempotence> {
        self.ids.map(|(producer_id, epoch)| Idempotence {
            producer_id,
            epoch,
            sequence: b.sequence,
        })
    }

    fn record(&self, world: &World, b: &Batch, f: InFlight, outcome: SendOutcome) {
        let invoked_s = f.invoked_s;
        world.record(Op::Send(Send {
            broker: world.broker_index(f.to),
            producer: self.index,
            partition: b.partition,
            value: b.value.clone(),
            idempotence: self.idempotence(b),
            attempt: b.attempts,
            acks: -1,
            invoked_s,
            completed_s: world.now_s(),
            outcome,
        }));
    }

    /// Every request in flight to `to` (to anyone: `None`): its outcome is unknown (the
    /// connection is gone); the leaders of their partitions are asked again.
    fn lose_in_flight(&mut self, world: &World, to: Option<SocketAddr>) {
        let lost: Vec<usize> = (0..self.queue.len())
            .filter(|&i| {
                self.queue[i]
                    .in_flight
                    .is_some_and(|f| to.is_none_or(|t| f.to == t))
            })
            .collect();
        for i in lost {
            let f = self.queue[i].in_flight.take().expect("in flight");
            self.record(world, &self.queue[i], f, SendOutcome::Unknown);
            world
                .directory
                .forget(&world.scenario.workload.topic, self.queue[i].partition);
        }
    }

    /// Give up every batch not acknowledged and start over with a new producer id.
    fn start_over(&mut self, world: &World, why: &str) {
        self.lose_in_flight(world, None);
        tracing::debug!(
            producer = self.index,
            why,
            dropped = self.queue.len(),
            "idempotent producer starts over"
        );
        self.queue.clear();
        self.ids = None;
        self.next_sequence.clear();
    }
}

pub async fn produce(world: Arc<World>, index: usize) {
    if !wait_ready(&world).await {
        return;
    }
    let w = world.scenario.workload.clone();
    let interval = Duration::from_millis(w.interval_ms);
    let timeout_ms = i32::try_from(w.request_timeout_ms).unwrap_or(i32::MAX);
    let mut p = Producer {
        index,
        ids: None,
        next_sequence: BTreeMap::new(),
        queue: VecDeque::new(),
        next_value: 0,
    };
    let mut conns = Conns::default();
    let mut next_new = Instant::now();
    // After producing ends, batches still unacknowledged get this long to finish.
    let grace_until = world.end + world.client_timeout() * 2;
    loop {
        let now = Instant::now();
        let producing = now < world.end;
        if (!producing && p.queue.is_empty()) || now >= grace_until {
            p.lose_in_flight(&world, None);
            return;
        }
        if p.ids.is_none() {
            // Only with nothing in flight: a new id starts every sequence at 0.
            let Some(mut c) = world.connect().await else {
                continue;
            };
            let asked = tokio::time::timeout(world.client_timeout(), c.init_producer_id()).await;
            match asked {
                Ok(Ok(ids)) => p.ids = Some(ids),
                _ => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let (pid, epoch) = p.ids.expect("producer id");
        // Fill the windows: batches to send again first (in order), then new values.
        let mut broken: Option<SocketAddr> = None;
        loop {
            let i = match p.queue.iter().position(|b| b.in_flight.is_none()) {
                Some(i) => i,
                None if producing && Instant::now() >= next_new => {
                    let (partition, value) = crate::workload::message(&w, index, p.next_value);
                    let seq = p.next_sequence.entry(partition).or_insert(0);
                    let sequence = *seq;
                    *seq = seq.wrapping_add(1);
                    p.queue.push_back(Batch {
                        partition,
                        value,
                        sequence,
                        attempts: 0,
                        in_flight: None,
                    });
                    p.next_value += 1;
                    next_new = Instant::now() + interval;
                    p.queue.len() - 1
                }
                None => break,
            };
            let partition = p.queue[i].partition;
            let Some(leader) = world.directory.leader(&w.topic, partition).await else {
                tokio::time::sleep(RETRY_BACKOFF).await;
                break;
            };
            let on = |to: SocketAddr| {
                p.queue
                    .iter()
                    .filter(|b| b.in_flight.is_some_and(|f| f.to == to))
                    .count()
            };
            // A partition's batches go on one connection at a time (their order is theirs),
            // and a connection has at most `max_in_flight` requests out.
            let elsewhere =
                p.queue.iter().take(i).any(|o| {
                    o.partition == partition && o.in_flight.is_some_and(|f| f.to != leader)
                });
            if elsewhere || on(leader) >= w.max_in_flight {
                break;
            }
            let Some(c) = conns.get(leader, timeout_ms).await else {
                world.directory.forget(&w.topic, partition);
                break;
            };
            let b = &mut p.queue[i];
            b.attempts += 1;
            let req = match c.produce_request(
                &w.topic,
                b.partition,
                -1,
                wall_ms(),
                std::slice::from_ref(&b.value),
                Some((pid, epoch, b.sequence)),
            ) {
                Ok(r) => r,
                Err(_) => break,
            };
            let invoked_s = world.now_s();
            let sent = c
                .send_request(ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(req))
                .await;
            b.in_flight = Some(InFlight {
                to: leader,
                id: *sent.as_ref().unwrap_or(&0),
                invoked_s,
                sent: Instant::now(),
            });
            if sent.is_err() {
                broken = Some(leader);
                break;
            }
        }
        if let Some(to) = broken {
            conns.drop_conn(to);
            p.lose_in_flight(&world, Some(to));
            continue;
        }
        // The oldest request in flight: its answer comes first on its connection.
        let Some(oldest) = p.queue.iter().position(|b| b.in_flight.is_some()) else {
            // Nothing in flight: wait for the next value (or the retry backoff).
            tokio::time::sleep_until(next_new.max(Instant::now() + Duration::from_millis(1))).await;
            continue;
        };
        let f = p.queue[oldest].in_flight.expect("in flight");
        // While a window has room, a new value due wakes the producer to send it.
        let in_flight = p.queue.iter().filter(|b| b.in_flight.is_some()).count();
        let wake = (producing && in_flight < w.max_in_flight).then_some(next_new);
        let Some(c) = conns.existing(f.to) else {
            p.lose_in_flight(&world, Some(f.to));
            continue;
        };
        let Some(answer) = await_answer(&world, c, f.id, f.invoked_s, f.sent, wake).await else {
            continue;
        };
        p.queue[oldest].in_flight = None;
        match answer {
            Some(Ok(offset)) => {
                let b = p.queue.remove(oldest).expect("batch");
                p.record(&world, &b, f, SendOutcome::Ok(offset));
            }
            Some(Err(ClientError::Kafka(code))) => {
                let outcome = SendOutcome::failed(code);
                p.record(&world, &p.queue[oldest], f, outcome);
                let b = &p.queue[oldest];
                if leadership_code(code) {
                    world.directory.forget(&w.topic, b.partition);
                }
                // A gap is expected only behind an earlier batch of the partition that is
                // not acknowledged yet (it failed, and is sent again first).
                let behind_failed = code == OUT_OF_ORDER_SEQUENCE_NUMBER
                    && p.queue
                        .iter()
                        .any(|o| o.partition == b.partition && o.sequence < b.sequence);
                let retriable = retriable_code(code) || behind_failed || leadership_code(code);
                if !retriable || b.attempts > w.retries {
                    p.start_over(&world, "a batch was refused for good or ran out of retries");
                    // The requests still in flight would answer for the old producer id.
                    conns = Conns::default();
                } else if code == KAFKA_STORAGE_ERROR {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else if !behind_failed {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
            Some(Err(_)) | None => {
                // No answer: this one and everything after it on the connection is unknown.
                p.record(&world, &p.queue[oldest], f, SendOutcome::Unknown);
                world.directory.forget(&w.topic, p.queue[oldest].partition);
                conns.drop_conn(f.to);
                p.lose_in_flight(&world, Some(f.to));
                if p.queue.iter().any(|b| b.attempts > w.retries) {
                    p.start_over(&world, "a batch without an answer ran out of retries");
                    conns = Conns::default();
                } else {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }
}

/// Wait for the answer to request `id`, noting a hang when the response deadline passes:
/// `Some(None)` when the client's timeout passes first, `None` when `wake` comes first (the
/// answer is read on the next call; reading a frame can be cut short and resumed).
async fn await_answer(
    world: &World,
    c: &mut Client,
    id: i32,
    invoked_s: f64,
    sent: Instant,
    wake: Option<Instant>,
) -> Option<Option<Result<i64, ClientError>>> {
    world.waiting.fetch_add(1, Ordering::Relaxed);
    let hang_at = sent + Duration::from_secs(world.scenario.expect.response_deadline_s);
    let give_up_at = sent + world.client_timeout();
    let call = c.receive(ApiKey::Produce, PRODUCE_VERSION, id);
    tokio::pin!(call);
    let mut hang_checked = false;
    let result = loop {
        tokio::select! {
            r = &mut call => break Some(Some(r.and_then(produce_answer))),
            _ = tokio::time::sleep_until(hang_at), if !hang_checked => {
                hang_checked = true;
                world.note_wait(invoked_s);
            }
            _ = tokio::time::sleep_until(give_up_at) => {
                world.note_unanswered(invoked_s);
                break Some(None);
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(give_up_at)), if wake.is_some() => break None,
        }
    };
    world.waiting.fetch_sub(1, Ordering::Relaxed);
    if let Some(Some(r)) = &result {
        if matches!(r, Ok(_) | Err(ClientError::Kafka(_))) {
            world.answered();
        }
    }
    result
}

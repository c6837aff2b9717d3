//! The simulated idempotent producer, as Kafka's Java producer behaves with
//! `enable.idempotence=true`: a producer id from InitProducerId, a sequence number per
//! partition for each batch, up to `max_in_flight` requests pipelined on one connection, and
//! every batch not acknowledged sent again — in order, with the same producer id, epoch and
//! sequence — after an error or a lost connection. A batch that runs out of retries is given
//! up with everything after it and the producer starts over with a new producer id (what the
//! Java producer does when a batch expires). The broker must then keep every value in the log
//! at most once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use tokio::time::Instant;

use crate::client::{produce_answer, Client, ClientError, PRODUCE_VERSION};
use crate::history::{retriable_code, Idempotence, Op, Send, SendOutcome, KAFKA_STORAGE_ERROR};
use crate::workload::{take_or_connect, wait_ready, wall_ms, World, RETRY_BACKOFF};

/// Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// One batch (one value) not yet acknowledged.
struct Batch {
    partition: i32,
    value: Bytes,
    sequence: i32,
    attempts: u32,
    /// Sent on the current connection: its correlation id and when.
    in_flight: Option<(i32, f64, Instant)>,
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

    fn record(&self, world: &World, b: &Batch, invoked_s: f64, outcome: SendOutcome) {
        world.record(Op::Send(Send {
            broker: 0,
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

    /// Every request in flight: its outcome is unknown (the connection is gone).
    fn lose_in_flight(&mut self, world: &World) {
        let lost: Vec<usize> = (0..self.queue.len())
            .filter(|&i| self.queue[i].in_flight.is_some())
            .collect();
        for i in lost {
            let (_, invoked_s, _) = self.queue[i].in_flight.take().expect("in flight");
            self.record(world, &self.queue[i], invoked_s, SendOutcome::Unknown);
        }
    }

    /// Give up every batch not acknowledged and start over with a new producer id.
    fn start_over(&mut self, world: &World, why: &str) {
        self.lose_in_flight(world);
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
    let mut p = Producer {
        index,
        ids: None,
        next_sequence: BTreeMap::new(),
        queue: VecDeque::new(),
        next_value: 0,
    };
    let mut conn: Option<Client> = None;
    let mut next_new = Instant::now();
    // After producing ends, batches still unacknowledged get this long to finish.
    let grace_until = world.end + world.client_timeout() * 2;
    loop {
        let now = Instant::now();
        let producing = now < world.end;
        if (!producing && p.queue.is_empty()) || now >= grace_until {
            p.lose_in_flight(&world);
            return;
        }
        if conn.is_none() {
            p.lose_in_flight(&world);
        }
        let Some(c) = take_or_connect(&world, &mut conn).await else {
            continue;
        };
        if p.ids.is_none() {
            // Only with nothing in flight: a new id starts every sequence at 0.
            let asked = tokio::time::timeout(world.client_timeout(), c.init_producer_id()).await;
            match asked {
                Ok(Ok(ids)) => p.ids = Some(ids),
                Ok(Err(ClientError::Kafka(_))) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                _ => {
                    conn = None;
                    continue;
                }
            }
        }
        let (pid, epoch) = p.ids.expect("producer id");
        // Fill the window: batches to send again first (in order), then new values.
        let mut broken = false;
        loop {
            let in_flight = p.queue.iter().filter(|b| b.in_flight.is_some()).count();
            if in_flight >= w.max_in_flight {
                break;
            }
            let i = match p.queue.iter().position(|b| b.in_flight.is_none()) {
                Some(i) => i,
                None if producing && Instant::now() >= next_new => {
                    let partition = ((index as u64 + p.next_value) % w.partitions as u64) as i32;
                    let seq = p.next_sequence.entry(partition).or_insert(0);
                    let sequence = *seq;
                    *seq = seq.wrapping_add(1);
                    p.queue.push_back(Batch {
                        partition,
                        value: crate::workload::value(
                            &format!("p{index}-{}", p.next_value),
                            w.value_bytes,
                        ),
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
            match c
                .send_request(ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(req))
                .await
            {
                Ok(id) => b.in_flight = Some((id, invoked_s, Instant::now())),
                Err(_) => {
                    b.in_flight = Some((0, invoked_s, Instant::now()));
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            conn = None;
            continue;
        }
        // The oldest request in flight: its answer comes first.
        let Some(oldest) = p.queue.iter().position(|b| b.in_flight.is_some()) else {
            // Nothing in flight: wait for the next value (or the retry backoff).
            tokio::time::sleep_until(next_new.max(Instant::now() + Duration::from_millis(1))).await;
            continue;
        };
        let (id, invoked_s, sent) = p.queue[oldest].in_flight.expect("in flight");
        // While the window has room, a new value due wakes the producer to send it.
        let in_flight = p.queue.iter().filter(|b| b.in_flight.is_some()).count();
        let wake = (producing && in_flight < w.max_in_flight).then_some(next_new);
        let Some(answer) = await_answer(&world, c, id, invoked_s, sent, wake).await else {
            continue;
        };
        let b = &mut p.queue[oldest];
        b.in_flight = None;
        match answer {
            Some(Ok(offset)) => {
                let b = p.queue.remove(oldest).expect("batch");
                p.record(&world, &b, invoked_s, SendOutcome::Ok(offset));
            }
            Some(Err(ClientError::Kafka(code))) => {
                let outcome = SendOutcome::failed(code);
                p.record(&world, &p.queue[oldest], invoked_s, outcome);
                let b = &p.queue[oldest];
                // A gap is expected only behind an earlier batch of the partition that is
                // not acknowledged yet (it failed, and is sent again first).
                let behind_failed = code == OUT_OF_ORDER_SEQUENCE_NUMBER
                    && p.queue
                        .iter()
                        .any(|o| o.partition == b.partition && o.sequence < b.sequence);
                let retriable = retriable_code(code) || behind_failed;
                if !retriable || b.attempts > w.retries {
                    p.start_over(&world, "a batch was refused for good or ran out of retries");
                    // The requests still in flight would answer for the old producer id.
                    conn = None;
                } else if code == KAFKA_STORAGE_ERROR {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else if !behind_failed {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
            Some(Err(_)) | None => {
                // No answer: this one and everything after it on the connection is unknown.
                p.record(&world, &p.queue[oldest], invoked_s, SendOutcome::Unknown);
                conn = None;
                p.lose_in_flight(&world);
                if p.queue.iter().any(|b| b.attempts > w.retries) {
                    p.start_over(&world, "a batch without an answer ran out of retries");
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

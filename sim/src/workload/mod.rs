//! The simulated Kafka clients of a run: an admin client (creates the workload topic, then
//! optionally churns scratch topics), producers (acks 0/1/all, retries) and consumers (every
//! partition by assignment), all on the real wire protocol, recording every operation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::findings::{Finding, Stuck};
use crate::history::{retriable_code, Admin, Op, Send, SendOutcome, KAFKA_STORAGE_ERROR};
use crate::scenario::{Fault, Scenario, BROKER_NODE};
use crate::workload::client::routing::{leadership_code, Conns, Directory};
use crate::workload::client::{Client, ClientError, TOPIC_ALREADY_EXISTS};

pub mod client;
pub mod configs;
mod consumer;
mod drive;
pub mod far_behind;
mod final_read;
mod flood;
pub mod group;
pub mod idempotent;
pub mod keyed;
pub mod moves;
pub mod pipeline;
pub mod retire;
pub mod security;
pub mod tenant;
pub mod txn;

pub use consumer::consume;
pub use drive::{drive, ClientNodes, Role};
pub use final_read::{quiesce, read_back, read_topics};

/// A value: its name (unique in the run), then `|` and padding up to `bytes` in all.
pub(crate) fn value(name: &str, bytes: usize) -> Bytes {
    if bytes <= name.len() + 1 {
        return Bytes::from(name.to_string());
    }
    let mut v = Vec::with_capacity(bytes);
    v.extend_from_slice(name.as_bytes());
    v.push(b'|');
    v.resize(bytes, b'.');
    Bytes::from(v)
}

/// Message `n` of `producer`: its partition and value — `p<producer>-<n>` on partition
/// `(producer × stride + n) mod partitions`, or a keyed record ([`keyed`]) on a compacted
/// workload. The producers start `stride = max(1, partitions / producers)` apart, so that on a
/// topic of thousands of partitions every partition is written about as often, not only the
/// few the producers would sweep through together.
pub(crate) fn message(w: &crate::scenario::Workload, producer: usize, n: u64) -> (i32, Bytes) {
    match &w.compacted {
        Some(c) => {
            let (partition, name) = keyed::message(c, w.partitions, producer, n);
            (partition, keyed::value(&name, w.value_bytes))
        }
        None => (
            {
                let stride = (w.partitions as u64 / w.producers.max(1) as u64).max(1);
                ((producer as u64 * stride + n) % w.partitions as u64) as i32
            },
            value(&format!("p{producer}-{n}"), w.value_bytes),
        ),
    }
}

/// Kafka's CORRUPT_MESSAGE.
const CORRUPT_MESSAGE: i16 = 2;
/// Kafka's OFFSET_OUT_OF_RANGE.
pub(crate) const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Kafka's `retry.backoff.ms`.
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long consumers may take to read to the end once producing is over.
pub(crate) const DRAIN_MAX: Duration = Duration::from_secs(120);

/// What every client of a run shares: the clock origin, the history, and what a hung request
/// reports.
pub struct World {
    pub scenario: Scenario,
    /// The run's seed (client-side choices, such as the group members' faults, come from it).
    pub seed: u64,
    /// The first broker (the only one, on a single node).
    pub addr: SocketAddr,
    /// Where each partition's leader is (one broker: always it).
    pub directory: Arc<Directory>,
    /// Each broker's inter-broker port (none on a single node).
    pub inter_broker: Vec<SocketAddr>,
    pub start: Instant,
    /// When producing stops.
    pub end: Instant,
    pub faults: Vec<Fault>,
    /// What the brokers' disks are stuck on: every sync in flight, as (node, path, since).
    syncs_in_flight: SyncsInFlight,
    /// The run has several brokers (what they are stuck on is named by node).
    several: bool,
    ops: Mutex<Vec<Op>>,
    /// In a cluster: every high watermark a consumer was told, as (partition, invoked,
    /// completed, high watermark), for the check that it never goes back.
    pub(crate) watermarks: Mutex<Vec<crate::history::Watermark>>,
    /// The first hung request, named with what the node is stuck on.
    hang: Mutex<Option<Finding>>,
    /// Produce requests sent and not yet answered.
    pub(crate) waiting: AtomicUsize,
    /// When the broker last answered a produce (any answer), in seconds of the run.
    last_answer_s: Mutex<f64>,
    /// The workload topic exists (set by the admin client).
    ready: watch::Sender<bool>,
    /// The producers are done; consumers read to the end and stop.
    pub(crate) producing_over: watch::Sender<bool>,
    /// The consumer group's progress, for its members to know when it has read and committed
    /// everything ([`crate::workload::group`]).
    pub(crate) group: Mutex<crate::workload::group::Progress>,
    /// Stops broker `n` (from 1) for good: a retired broker ([`retire`]).
    retire: Box<dyn Fn(usize) + std::marker::Send + Sync>,
    /// After the run: which of the topics the admin made or deleted each broker lists
    /// ([`read_topics`]).
    pub(crate) final_topics: Mutex<Vec<Option<BTreeMap<String, bool>>>>,
    /// After the run: how each broker describes the configured topic ([`configs::described`]).
    pub(crate) final_configs: Mutex<Vec<Option<BTreeMap<String, String>>>>,
}

/// Every sync in flight on the brokers' disks, as (node, path, since): what a world can tell of
/// them (the simulated disk, a twin run's fault filesystem).
pub type SyncsInFlight =
    Box<dyn Fn() -> Vec<(String, std::path::PathBuf, Instant)> + std::marker::Send + Sync>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl World {
    pub fn new(
        scenario: Scenario,
        seed: u64,
        brokers: Vec<SocketAddr>,
        inter_broker: Vec<SocketAddr>,
        faults: Vec<Fault>,
        syncs_in_flight: SyncsInFlight,
        retire: Box<dyn Fn(usize) + std::marker::Send + Sync>,
    ) -> Arc<World> {
        let start = Instant::now();
        let several = brokers.len() > 1;
        Arc::new(World {
            end: start + Duration::from_secs(scenario.duration_s),
            scenario,
            seed,
            group: Mutex::default(),
            addr: brokers[0],
            directory: Arc::new(Directory::new(brokers)),
            inter_broker,
            start,
            several,
            faults,
            syncs_in_flight,
            ops: Mutex::default(),
            watermarks: Mutex::default(),
            hang: Mutex::default(),
            waiting: AtomicUsize::new(0),
            last_answer_s: Mutex::new(0.0),
            ready: watch::Sender::new(false),
            producing_over: watch::Sender::new(false),
            retire,
            final_topics: Mutex::default(),
            final_configs: Mutex::default(),
        })
    }

    /// Stop broker `node` (from 1) for good.
    pub(crate) fn retire(&self, node: usize) {
        (self.retire)(node)
    }

    pub fn now_s(&self) -> f64 {
        (Instant::now() - self.start).as_secs_f64()
    }

    /// The index of the broker at `addr` in the run's brokers (0 when it is none of them).
    pub(crate) fn broker_index(&self, addr: SocketAddr) -> usize {
        self.directory
            .brokers()
            .iter()
            .position(|a| *a == addr)
            .unwrap_or(0)
    }

    pub(crate) fn record(&self, op: Op) {
        lock(&self.ops).push(op);
    }

    /// The topics the admin client made or deleted so far (scratch topics).
    pub(crate) fn admin_topics(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.ops)
            .iter()
            .filter_map(|op| match op {
                Op::Admin(a) => a.what.split(' ').nth(1).map(str::to_string),
                _ => None,
            })
            .filter(|t| *t != self.scenario.workload.topic)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The history so far, and the hang found (if any).
    pub fn take(&self) -> (Vec<Op>, Option<Finding>) {
        (
            std::mem::take(&mut *lock(&self.ops)),
            lock(&self.hang).take(),
        )
    }

    pub fn producing_over(&self) {
        self.producing_over.send_replace(true);
    }

    fn request_timeout_ms(&self) -> i32 {
        i32::try_from(self.scenario.workload.request_timeout_ms).unwrap_or(i32::MAX)
    }

    /// The connection to partition `partition`'s leader as `directory` knows it (made if need
    /// be).
    pub(crate) async fn leader_conn_by<'a>(
        &self,
        directory: &Directory,
        conns: &'a mut Conns,
        partition: i32,
    ) -> Option<(std::net::SocketAddr, &'a mut Client)> {
        let topic = &self.scenario.workload.topic;
        let Some(addr) = directory.leader(topic, partition).await else {
            tokio::time::sleep(RETRY_BACKOFF).await;
            return None;
        };
        match conns.get(addr, self.request_timeout_ms()).await {
            Some(c) => Some((addr, c)),
            None => {
                directory.forget(topic, partition);
                None
            }
        }
    }

    pub(crate) fn client_timeout(&self) -> Duration {
        // The broker answers a produce it could not finish by the request's own timeout; the
        // client waits a little longer so that answer arrives when the network is fine.
        Duration::from_millis(self.scenario.workload.request_timeout_ms) + Duration::from_secs(1)
    }

    /// A connection to `group`'s coordinator: on one node, the broker; in a cluster, the broker
    /// FindCoordinator names, asked of the brokers in turn (`None` after a short pause when
    /// none can tell).
    pub(crate) async fn coordinator(&self, group: &str) -> Option<Client> {
        self.coordinator_of(group, 0).await
    }

    /// [`World::coordinator`] of `key` of FindCoordinator's `key_type` (0: a group, 1: a
    /// transactional id).
    pub(crate) async fn coordinator_of(&self, key: &str, key_type: i8) -> Option<Client> {
        if !self.scenario.clustered() {
            return self.connect().await;
        }
        let brokers = self.directory.brokers().to_vec();
        for _ in 0..brokers.len() {
            let Some(mut c) = self.connect().await else {
                continue;
            };
            let asked =
                tokio::time::timeout(Duration::from_secs(2), c.find_coordinator_of(key, key_type));
            let Ok(Ok(node)) = asked.await else {
                continue;
            };
            let Some(&addr) = usize::try_from(node - 1).ok().and_then(|i| brokers.get(i)) else {
                continue;
            };
            if let Ok(mut c) = Client::connect(addr).await {
                c.request_timeout_ms = self.request_timeout_ms();
                return Some(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        None
    }

    /// A connection to a broker any broker may answer for (the only one, on a single node).
    pub(crate) async fn connect(&self) -> Option<Client> {
        self.connect_to(self.directory.any()).await
    }

    /// A connection to the broker at `addr` with the workload's request timeout (`None`, after
    /// a short pause, when it cannot be reached).
    pub(crate) async fn connect_to(&self, addr: SocketAddr) -> Option<Client> {
        match Client::connect(addr).await {
            Ok(mut c) => {
                c.request_timeout_ms =
                    i32::try_from(self.scenario.workload.request_timeout_ms).unwrap_or(i32::MAX);
                Some(c)
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                None
            }
        }
    }

    /// The broker answered a produce (success or error).
    pub(crate) fn answered(&self) {
        *lock(&self.last_answer_s) = self.now_s();
    }

    /// A produce invoked at `invoked_s` still unanswered at the response deadline: the broker
    /// is frozen if it answered no produce at all since — a broker that goes on answering
    /// others is busy (a queue of 2 slots on a slow disk serves a few appends a second, and a
    /// request waits its turn), and is held to the request's own timeout instead
    /// ([`World::note_unanswered`]).
    pub(crate) fn note_wait(&self, invoked_s: f64) {
        if *lock(&self.last_answer_s) < invoked_s {
            self.note_hang(invoked_s, self.scenario.expect.response_deadline_s, false);
        }
    }

    /// A produce that got no answer by the time its client gave up (its request timeout and a
    /// second): the broker answers every produce within its timeout, the wait for a place in
    /// the queue included — unless a clock drift stretched the broker's timers meanwhile.
    pub(crate) fn note_unanswered(&self, invoked_s: f64) {
        let waited_s = self.client_timeout().as_secs();
        self.note_hang(invoked_s, waited_s, true);
    }

    /// Hung, unless a fault kept the network or the process from answering at some point of
    /// the wait (or, with `drift_excuses`, a clock drift slowed the broker's timers).
    fn note_hang(&self, invoked_s: f64, waited_s: u64, drift_excuses: bool) {
        let now_s = self.now_s();
        let excused = self.faults.iter().any(|f| {
            (f.silences("producers")
                || (drift_excuses && matches!(f, crate::scenario::Fault::ClockDrift { .. })))
                && (f.at_s() as f64) <= now_s
                && (f.healed_at_s() as f64) >= invoked_s
        });
        let mut hang = lock(&self.hang);
        if excused || hang.is_some() {
            return;
        }
        *hang = Some(Finding::Hung {
            node: BROKER_NODE.into(),
            at_s: now_s,
            waited_s,
            stuck: self.stuck(),
        });
    }

    /// What the node is stuck on now: its pending disk operations and the produce requests
    /// waiting for an answer.
    /// What the brokers are stuck on when the liveness deadline after the last heal passes
    /// (a task: [`stuck_seen`] takes its answer, or none if the run ended before).
    pub fn watch_stuck(self: &Arc<World>) -> tokio::task::JoinHandle<Stuck> {
        let world = self.clone();
        let at =
            crate::scenario::last_heal_s(&world.faults) + world.scenario.expect.liveness_deadline_s;
        tokio::spawn(async move {
            tokio::time::sleep_until(world.start + Duration::from_secs(at)).await;
            world.stuck()
        })
    }

    pub fn stuck(&self) -> Stuck {
        Stuck {
            pending: (self.syncs_in_flight)()
                .into_iter()
                .map(|(node, path, since)| {
                    let on = if self.several {
                        format!("{node}: ")
                    } else {
                        String::new()
                    };
                    format!(
                        "{on}sync_data {} since t={:.1} s",
                        path.display(),
                        since.saturating_duration_since(self.start).as_secs_f64()
                    )
                })
                .collect(),
            requests_waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// What [`World::watch_stuck`] saw, if its deadline passed before the run ended.
pub async fn stuck_seen(watch: tokio::task::JoinHandle<Stuck>) -> Option<Stuck> {
    if watch.is_finished() {
        watch.await.ok()
    } else {
        watch.abort();
        None
    }
}

/// The admin client: create the workload topic (retrying until it exists), then, if the
/// scenario asks, create and delete a scratch topic every `admin_interval_s`.
pub async fn admin(world: Arc<World>) {
    let w = &world.scenario.workload;
    let mut conn: Option<Client> = None;
    while !*world.ready.borrow() && Instant::now() < world.end {
        let Some(c) = take_or_connect(&world, &mut conn).await else {
            continue;
        };
        let invoked_s = world.now_s();
        let configs = w
            .compacted
            .as_ref()
            .map(crate::scenario::Compacted::topic_configs)
            .unwrap_or_default();
        let r = tokio::time::timeout(
            world.client_timeout(),
            c.create_topic_with(&w.topic, w.partitions, &configs),
        )
        .await
        .map(existing_is_created);
        let what = format!("create {} ({} partitions)", w.topic, w.partitions);
        if admin_result(&world, &mut conn, what, invoked_s, r) {
            world.ready.send_replace(true);
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    if w.admin_interval_s == 0 {
        return;
    }
    let mut k = 0u64;
    while Instant::now() < world.end {
        tokio::time::sleep(Duration::from_secs(w.admin_interval_s)).await;
        let Some(c) = take_or_connect(&world, &mut conn).await else {
            continue;
        };
        let name = format!("scratch-{k}");
        let invoked_s = world.now_s();
        let created = tokio::time::timeout(world.client_timeout(), c.create_topic(&name, 1))
            .await
            .map(existing_is_created);
        let ok = admin_result(
            &world,
            &mut conn,
            format!("create {name}"),
            invoked_s,
            created,
        );
        let kept = w.admin_keep_every > 0 && k.wrapping_sub(1).is_multiple_of(w.admin_keep_every);
        if ok && k > 0 && !kept {
            if let Some(c) = conn.as_mut() {
                let old = format!("scratch-{}", k - 1);
                let invoked_s = world.now_s();
                let deleted =
                    tokio::time::timeout(world.client_timeout(), c.delete_topic(&old)).await;
                admin_result(
                    &world,
                    &mut conn,
                    format!("delete {old}"),
                    invoked_s,
                    deleted,
                );
            }
        }
        if ok {
            k += 1;
        }
    }
}

/// A topic that already exists was created by an earlier attempt whose answer was lost.
pub(crate) fn existing_is_created(r: Result<(), ClientError>) -> Result<(), ClientError> {
    match r {
        Err(ClientError::Kafka(TOPIC_ALREADY_EXISTS)) => Ok(()),
        other => other,
    }
}

/// Record an admin call's outcome (dropping the connection if it broke); whether it succeeded.
pub(crate) fn admin_result(
    world: &World,
    conn: &mut Option<Client>,
    what: String,
    invoked_s: f64,
    r: Result<Result<(), ClientError>, tokio::time::error::Elapsed>,
) -> bool {
    let error = match &r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer".into()),
    };
    if !matches!(r, Ok(Ok(_)) | Ok(Err(ClientError::Kafka(_)))) {
        *conn = None;
    }
    let ok = error.is_none();
    world.record(Op::Admin(Admin {
        what,
        invoked_s,
        completed_s: world.now_s(),
        error,
    }));
    ok
}

pub(crate) async fn take_or_connect<'a>(
    world: &World,
    conn: &'a mut Option<Client>,
) -> Option<&'a mut Client> {
    if conn.is_none() {
        *conn = world.connect().await;
    }
    conn.as_mut()
}

pub(crate) async fn wait_ready(world: &World) -> bool {
    let mut ready = world.ready.subscribe();
    tokio::select! {
        r = ready.wait_for(|r| *r) => r.is_ok(),
        _ = tokio::time::sleep_until(world.end) => false,
    }
}

/// One producer: one request in flight; message `n` goes to the partition and with the value
/// [`message`] gives, retried as the scenario allows.
pub async fn produce(world: Arc<World>, producer: usize) {
    if world.scenario.workload.idempotent.for_producer(producer) {
        return crate::workload::idempotent::produce(world, producer).await;
    }
    if !wait_ready(&world).await {
        return;
    }
    let w = &world.scenario.workload;
    let acks = w.acks.for_producer(producer);
    // Its own metadata, as a real client has, or the run's shared one.
    let own = w
        .own_metadata
        .then(|| Directory::new(world.directory.brokers().to_vec()));
    let directory = own.as_ref().unwrap_or(&world.directory);
    let pause = Duration::from_millis(w.interval_ms);
    let next = |n| message(w, producer, n);
    send_loop(
        &world,
        producer,
        directory,
        Conns::default(),
        acks,
        pause,
        next,
    )
    .await;
}

/// A producer's sends until the run's end: message `n` (partition and value) from `next`, each
/// retried as the scenario allows and recorded, `pause` after each.
pub(crate) async fn send_loop(
    world: &World,
    producer: usize,
    directory: &Directory,
    mut conns: Conns,
    acks: i16,
    pause: Duration,
    next: impl Fn(u64) -> (i32, Bytes),
) {
    let w = &world.scenario.workload;
    let mut n = 0u64;
    while Instant::now() < world.end {
        let (partition, value) = next(n);
        n += 1;
        let mut attempt = 0;
        let mut pause = pause;
        while Instant::now() < world.end {
            let Some((leader, c)) = world.leader_conn_by(directory, &mut conns, partition).await
            else {
                continue;
            };
            attempt += 1;
            let (invoked_s, outcome, broken) = send_once(world, c, partition, acks, &value).await;
            let moved =
                matches!(outcome, SendOutcome::Failed { code, .. } if leadership_code(code));
            if broken {
                conns.drop_conn(leader);
            }
            if broken || moved {
                directory.forget(&w.topic, partition);
            }
            world.record(Op::Send(Send {
                broker: world.broker_index(leader),
                producer,
                partition,
                value: value.clone(),
                idempotence: None,
                attempt,
                acks,
                invoked_s,
                completed_s: world.now_s(),
                outcome: outcome.clone(),
            }));
            let retriable = match outcome {
                SendOutcome::Ok(_) => false,
                SendOutcome::Failed { code, .. } => retriable_code(code),
                // acks=0 has no outcome to retry on.
                SendOutcome::Unknown => acks != 0,
            };
            if let SendOutcome::Failed {
                code: KAFKA_STORAGE_ERROR,
                ..
            } = outcome
            {
                // A failed data directory: back off longer than usual.
                pause = pause.max(Duration::from_secs(1));
            }
            if !retriable || attempt > w.retries {
                break;
            }
            tokio::time::sleep(RETRY_BACKOFF.max(pause)).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// One attempt: send, then wait for the answer up to the client's timeout, noting a hang when
/// the response deadline passes first. Returns when it was invoked, how it ended, and whether
/// the connection is now unusable (no answer in time, or an error on it).
async fn send_once(
    world: &World,
    c: &mut Client,
    partition: i32,
    acks: i16,
    value: &Bytes,
) -> (f64, SendOutcome, bool) {
    let invoked_s = world.now_s();
    let invoked = Instant::now();
    world.waiting.fetch_add(1, Ordering::Relaxed);
    let values = [value.clone()];
    let topic = world.scenario.workload.topic.clone();
    let call = c.produce(&topic, partition, acks, wall_ms(), &values);
    tokio::pin!(call);
    let hang_at = invoked + Duration::from_secs(world.scenario.expect.response_deadline_s);
    let give_up_at = invoked + world.client_timeout();
    let mut hang_checked = false;
    let result = loop {
        tokio::select! {
            r = &mut call => break Some(r),
            _ = tokio::time::sleep_until(hang_at), if !hang_checked => {
                hang_checked = true;
                world.note_wait(invoked_s);
            }
            _ = tokio::time::sleep_until(give_up_at) => {
                if acks != 0 {
                    world.note_unanswered(invoked_s);
                }
                break None;
            }
        }
    };
    world.waiting.fetch_sub(1, Ordering::Relaxed);
    if matches!(result, Some(Ok(_)) | Some(Err(ClientError::Kafka(_)))) && acks != 0 {
        world.answered();
    }
    match result {
        // acks=0: sent, and no answer will come.
        Some(Ok(_)) if acks == 0 => (invoked_s, SendOutcome::Unknown, false),
        Some(Ok(offset)) => (invoked_s, SendOutcome::Ok(offset), false),
        Some(Err(ClientError::Kafka(code))) => (invoked_s, SendOutcome::failed(code), false),
        Some(Err(_)) | None => (invoked_s, SendOutcome::Unknown, true),
    }
}

/// The client's wall clock for record timestamps (simulated time since the Unix epoch).
pub(crate) fn wall_ms() -> i64 {
    #[cfg(madsim)]
    let now = madsim::time::TimeHandle::current().now_time();
    #[cfg(not(madsim))]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

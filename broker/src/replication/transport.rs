//! The transport between brokers: one long-lived connection per pair of brokers, carrying
//! opaque messages (the Raft messages of every group, encoded by the layer above) in both
//! directions.
//!
//! Why it looks like this (docs/design.md, the incident's defect "a new TCP connection per forwarded
//! request"): a connection per message, or per group, costs a handshake per request and
//! thousands of sockets with many groups. Here:
//! - **one connection per pair**: the broker with the smaller id dials, the other accepts; both
//!   send and receive on it. A lost connection is dialled again with a capped, jittered
//!   backoff (the jitter from the environment's generator, so simulation stays deterministic),
//!   which starts over only after a link that lasted (a link dropped at once, as by a proxy
//!   whose peer is down, counts as a failed dial); a newer accepted connection from a peer
//!   replaces the older one.
//! - **coalesced**: [`Transport::send`] only queues; [`Transport::flush`] (once per tick of the
//!   layer above) wakes the writers, and each writes everything queued for its peer as one
//!   frame (up to `frame_bytes_max`).
//! - **bounded**: each peer's queue holds at most `queue_messages_max` messages and
//!   `queue_bytes_max` bytes; past it a message is dropped and counted, which Raft tolerates
//!   (it retries what matters) and which never blocks the caller. What arrives waits in an inbox
//!   of bounded capacity; a reader that cannot hand a frame over within the I/O timeout drops
//!   the connection.
//! - **a deadline on every send and receive**: a frame write that takes longer than
//!   `io_timeout` closes the connection; so does a peer silent for `io_timeout` (writers send an
//!   empty frame after `keepalive` without traffic, so a live peer is never silent that long).
//!
//! Frames: `u32 length` (of what follows), `u32 crc32c` (of the body), body. A body is a kind
//! byte then, for `HELLO`, the magic, version, sender id, addressee id and the cluster's
//! fingerprint (a CRC-32C of its members, `id@address` in id order: brokers configured as
//! different clusters — two clusters on one host, a broker left from an earlier cluster on the
//! same addresses — refuse each other's links rather than step each other's Raft messages,
//! whose node and group ids would collide); for `STATUS` (the first frame each end writes on
//! a link, so it comes before any message, and again when it changes), one byte of flags —
//! bit 0: this node holds Raft data (its data directory was not new at this start, or it has
//! written Raft entries or learnt of committed ones since),
//! which tells a node whose directory is new whether it joins an existing cluster; for
//! `MESSAGES`, a `u32` count and each message as `u32 length` + bytes. A frame longer than `frame_bytes_max`,
//! a bad CRC, an unknown kind or a hello from a stranger closes the connection with a log line
//! naming the peer; the transport goes on serving the others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use io_backend::{Connection, Env, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch, Notify};

/// A broker's id in the cluster (Kafka's `node.id`).
pub type NodeId = u64;

const MAGIC: &[u8; 4] = b"SWIB";
/// The hello every broker of a fixed membership sends (and every broker accepts).
const VERSION: u16 = 3;
/// The hello that also carries the sender's inter-broker address, sent by a broker outside the
/// configured voters (a peer may not know it yet, and learns where to reach it from it).
const VERSION_ADDRESSED: u16 = 4;
const KIND_HELLO: u8 = 0;
const KIND_MESSAGES: u8 = 1;
const KIND_STATUS: u8 = 2;
/// The first and only frame of a connection that asks to join the cluster ([`peers`]).
const KIND_JOIN: u8 = 3;
/// The answer to a `JOIN`.
const KIND_JOINED: u8 = 4;
/// `STATUS` flag: the sender holds Raft data.
const STATUS_HOLDS_DATA: u8 = 1;
/// Length and CRC in front of every body.
const FRAME_HEADER_BYTES: usize = 8;
/// A link's read buffer: the frames that arrived together are taken with one read.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// A link's reading side, buffered.
type Reader = BufReader<ReadHalf<Box<dyn Connection>>>;
/// A frame holding one message is this much longer than the message: the frame header, the
/// kind, the count and the message's length.
const MESSAGE_OVERHEAD_BYTES: usize = FRAME_HEADER_BYTES + 1 + 4 + 4;

/// How the transport behaves; [`TransportSettings::default`] suits a LAN cluster.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Messages queued for one peer, at most; more are dropped.
    pub queue_messages_max: usize,
    /// Bytes queued for one peer, at most; more are dropped.
    pub queue_bytes_max: usize,
    /// Largest frame written or accepted.
    pub frame_bytes_max: usize,
    /// Deadline of every frame write, of the hello, and the longest a peer may stay silent.
    pub io_timeout: Duration,
    /// An empty frame is written after this long without traffic (below `io_timeout`).
    pub keepalive: Duration,
    /// First and largest wait before dialling a peer again.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Whether this node holds Raft data as it starts (its data directory is not new); told
    /// to peers as links start, and changed by [`Transport::set_holds_data`].
    pub holds_data: bool,
    /// Frames received and not yet taken from the [`Inbox`], at most.
    pub inbox_frames_max: usize,
    /// Mutual TLS on every link (`inter_broker_security_protocol = "SSL"`): a peer without a
    /// certificate of the cluster's CAs is refused before anything it sends is read.
    pub tls: Option<Arc<crate::security::tls::Tls>>,
    /// This node's inter-broker address, told in its hello: set on a broker that is not one of
    /// the configured voters (the others learn of it from the metadata, and until then from
    /// its hello). `None`: the hello of a fixed membership (version 3).
    pub advertised: Option<SocketAddr>,
    /// Counts, beside [`TransportStats::connections_refused`], each connection refused (the
    /// broker's metric).
    pub refused_counter: Option<prometheus_client::metrics::counter::Counter>,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            queue_messages_max: 4096,
            queue_bytes_max: 64 << 20,
            frame_bytes_max: 16 << 20,
            io_timeout: Duration::from_secs(3),
            keepalive: Duration::from_millis(500),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            inbox_frames_max: 1024,
            holds_data: false,
            tls: None,
            refused_counter: None,
            advertised: None,
        }
    }
}

/// Why a connection ended (logged, and counted by kind).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("i/o with peer {peer}: {source}")]
    Io { peer: String, source: io::Error },
    #[error("peer {peer} was silent or stalled for longer than {timeout:?}")]
    TimedOut { peer: String, timeout: Duration },
    #[error("frame of {len} bytes from peer {peer} is over the limit of {max}")]
    FrameTooLarge {
        peer: String,
        len: usize,
        max: usize,
    },
    #[error("frame from peer {peer} failed its CRC")]
    BadCrc { peer: String },
    #[error("malformed frame from peer {peer}: {why}")]
    Malformed { peer: String, why: &'static str },
    #[error("hello from {peer} refused: {why}")]
    Refused { peer: String, why: String },
}

/// Counters of what the transport did (exported as metrics by the layer above).
#[derive(Debug, Default)]
pub struct TransportStats {
    pub connections_dialled: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_lost: AtomicU64,
    /// Connections closed before their hello was read: past a bound on such connections (in
    /// all or from one address), a failed TLS handshake, or a hello refused or not in time.
    pub connections_refused: AtomicU64,
    pub frames_sent: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_dropped: AtomicU64,
    /// The most bytes queued for one peer at once.
    pub queue_bytes_peak: AtomicU64,
}

/// One frame's messages from one peer.
#[derive(Debug)]
pub struct Delivery {
    pub from: NodeId,
    pub messages: Vec<Bytes>,
}

/// What the peers sent, in the order each connection delivered it.
pub struct Inbox(mpsc::Receiver<Delivery>);

impl Inbox {
    /// The next frame's messages; `None` once the transport has shut down.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.0.recv().await
    }

    /// A frame already received, if there is one, without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.0.try_recv().ok()
    }

    /// Frames received and not yet taken.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No frame waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Outbox {
    messages: VecDeque<Bytes>,
    bytes: usize,
}

struct Peer {
    id: NodeId,
    address: SocketAddr,
    outbox: Mutex<Outbox>,
    /// Woken by `flush` (messages to write) and by a replacement of the connection.
    wake: Notify,
    /// Bumped when an accepted connection replaces the current one, so the old one ends.
    generation: watch::Sender<u64>,
    connected: std::sync::atomic::AtomicBool,
    /// What the peer's `STATUS` said on the current link: it holds Raft data.
    holds_data: std::sync::atomic::AtomicBool,
    /// Set when the peer is removed from the transport: its dial loop and link end.
    removed: watch::Sender<bool>,
    /// Named by the configuration or the metadata; a peer admitted only on its own hello is
    /// provisional ([`peers`]).
    listed: std::sync::atomic::AtomicBool,
}

impl Peer {
    #[track_caller]
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A poisoned lock only means a panic elsewhere mid-push; the queue is still whole.
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    node_id: NodeId,
    /// The cluster's fingerprint: both ends of a link must agree on it.
    cluster: u32,
    env: Env,
    settings: TransportSettings,
    /// Replaced whole when the membership changes ([`Transport::set_peers`]); read per send.
    peers: crate::sync::RwLock<Arc<BTreeMap<NodeId, Arc<Peer>>>>,
    inbox: mpsc::Sender<Delivery>,
    /// Requests to join, for the layer above ([`Transport::take_joins`]).
    joins: mpsc::Sender<JoinRequest>,
    joins_rx: Mutex<Option<mpsc::Receiver<JoinRequest>>>,
    stats: TransportStats,
    /// Connections whose hello has not been read yet, within bounds.
    admission: Admission,
    shutdown: watch::Sender<bool>,
    /// Bumped whenever a peer's connection comes up or goes down.
    links: watch::Sender<u64>,
    /// This node holds Raft data (told to every peer as a link starts).
    holds_data: std::sync::atomic::AtomicBool,
}

/// The node's end of the transport. Cheap to clone.
#[derive(Clone)]
pub struct Transport(Arc<Inner>);

impl Transport {
    /// Start serving `listener` (the inter-broker listener, already bound) and dialling the
    /// peers with a larger id. `peers` maps the configured brokers (the controller's voters,
    /// this node perhaps among them) to their inter-broker addresses: the cluster's fingerprint
    /// is made of them. Other brokers come and go with [`set_peers`](Self::set_peers).
    pub fn start(
        env: Env,
        node_id: NodeId,
        listener: Box<dyn Listener>,
        peers: BTreeMap<NodeId, SocketAddr>,
        settings: TransportSettings,
    ) -> (Transport, Inbox) {
        let (inbox_tx, inbox_rx) = mpsc::channel(settings.inbox_frames_max.max(1));
        let holds_data = settings.holds_data.into();
        let cluster = fingerprint(&peers);
        let (joins, joins_rx) = mpsc::channel(JOINS_QUEUED_MAX);
        let inner = Arc::new(Inner {
            node_id,
            cluster,
            env,
            settings,
            peers: crate::sync::RwLock::new("transport.peers", Default::default()),
            inbox: inbox_tx,
            joins,
            joins_rx: Mutex::new("transport.joins", Some(joins_rx)),
            stats: TransportStats::default(),
            admission: Admission::default(),
            shutdown: watch::channel(false).0,
            links: watch::channel(0).0,
            holds_data,
        });
        Transport(inner.clone()).set_peers(peers);
        tokio::spawn(accept_loop(inner.clone(), listener));
        (Transport(inner), Inbox(inbox_rx))
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.0.node_id
    }

    /// Queue `message` for `to`; written at the next [`flush`](Self::flush). Returns false, and
    /// counts the drop, when `to` is unknown or its queue is full.
    pub fn send(&self, to: NodeId, message: Bytes) -> bool {
        let Some(peer) = self.0.peer(to) else {
            self.0
                .stats
                .messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let settings = &self.0.settings;
        let mut outbox = peer.outbox();
        if outbox.messages.len() >= settings.queue_messages_max
            || outbox.bytes + message.len() > settings.queue_bytes_max
            || message.len() + MESSAGE_OVERHEAD_BYTES > settings.frame_bytes_max
        {
            drop(outbox);
            self.0
                .stats
                .messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        outbox.bytes += message.len();
        outbox.messages.push_back(message);
        self.0
            .stats
            .queue_bytes_peak
            .fetch_max(outbox.bytes as u64, Ordering::Relaxed);
        true
    }

    /// Bytes queued for one peer, at most.
    pub fn queue_bytes_max(&self) -> usize {
        self.0.settings.queue_bytes_max
    }

    /// Bytes queued for `to` and not yet written.
    pub fn queued_bytes(&self, to: NodeId) -> usize {
        self.0.peer(to).map_or(0, |p| p.outbox().bytes)
    }

    /// Wake every writer with something queued: what was sent since the last flush leaves, one
    /// frame per peer.
    pub fn flush(&self) {
        for peer in self.0.peer_map().values() {
            if !peer.outbox().messages.is_empty() {
                peer.wake.notify_one();
            }
        }
    }

    /// Tell peers whether this node holds Raft data (before anything else this node sends
    /// them from now on).
    pub fn set_holds_data(&self, holds: bool) {
        if self.0.holds_data.swap(holds, Ordering::Relaxed) != holds {
            for peer in self.0.peer_map().values() {
                peer.wake.notify_one();
            }
        }
    }

    /// Whether `peer` said, as its current link started, that it holds Raft data. Said in the
    /// link's first frame: by the time a message from it is delivered, this is what it said.
    pub fn peer_holds_data(&self, peer: NodeId) -> bool {
        self.0
            .peer(peer)
            .is_some_and(|p| p.holds_data.load(Ordering::Relaxed))
    }

    /// Whether a connection to `peer` is up right now.
    pub fn connected(&self, peer: NodeId) -> bool {
        self.0
            .peer(peer)
            .is_some_and(|p| p.connected.load(Ordering::Relaxed))
    }

    pub fn stats(&self) -> &TransportStats {
        &self.0.stats
    }

    /// Changes whenever a connection to a peer comes up or goes down (then ask
    /// [`connected`](Self::connected)).
    pub fn link_changes(&self) -> watch::Receiver<u64> {
        self.0.links.subscribe()
    }

    /// The peers known now: configured, named by the metadata, or admitted on their hello.
    pub fn peers(&self) -> Vec<NodeId> {
        self.0.peer_map().keys().copied().collect()
    }

    /// Stop dialling, accepting and writing; open connections close. The transport's tasks
    /// hold it until then: a node that stops must call this.
    pub fn shutdown(&self) {
        self.0.shutdown.send_replace(true);
    }
}

async fn dial_loop(inner: Arc<Inner>, peer: Arc<Peer>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut removed = peer.removed.subscribe();
    let settings = &inner.settings;
    let mut backoff = settings.backoff_min;
    loop {
        if *shutdown.borrow() || *removed.borrow() {
            return;
        }
        let dialled = tokio::select! {
            dialled = inner.env.clock.timeout(settings.io_timeout, dial(&inner, &peer)) => dialled,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match dialled {
            Ok(Ok((reader, writer))) => {
                inner
                    .stats
                    .connections_dialled
                    .fetch_add(1, Ordering::Relaxed);
                let generation = *peer.generation.borrow();
                let began = inner.env.clock.now();
                if let Err(error) = run_link(&inner, &peer, reader, writer, generation).await {
                    tracing::info!(%error, peer = peer.id, "inter-broker connection lost");
                }
                // Only a link that lasted starts the backoff over. One that ends at once — a
                // proxy or load balancer in between accepts and then drops it while the peer
                // is down — is a failed dial: else the node redials every few milliseconds.
                if inner.env.clock.now().saturating_duration_since(began) >= settings.backoff_max {
                    backoff = settings.backoff_min;
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, peer = peer.id, address = %peer.address, "dial failed");
            }
            Err(_) => {
                tracing::debug!(peer = peer.id, address = %peer.address, "dial timed out");
            }
        }
        // Jitter in [backoff/2, backoff): peers that lost each other together do not redial in
        // lockstep.
        let millis = backoff.as_millis() as u64;
        let wait = inner.env.rng.range_u64(millis / 2, millis.max(1));
        tokio::select! {
            _ = inner.env.clock.sleep(Duration::from_millis(wait)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = removed.wait_for(|gone| *gone) => return,
        }
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

type Halves = (Reader, WriteHalf<Box<dyn Connection>>);

async fn dial(inner: &Inner, peer: &Peer) -> io::Result<Halves> {
    let conn = inner.env.net.connect(peer.address).await?;
    let conn = match inner.settings.tls.as_ref().and_then(|t| t.inter_broker()) {
        None => conn,
        Some((_, connector)) => Box::new(
            connector
                .connect(crate::security::tls::peer_name(peer.address), conn)
                .await?,
        ) as Box<dyn Connection>,
    };
    let (reader, mut writer) = tokio::io::split(conn);
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let hello = hello_frame(inner, peer.id);
    write_frame(&mut writer, &hello).await?;
    Ok((reader, writer))
}

/// Serve one connection until it fails, is replaced, or the transport shuts down.
async fn run_link(
    inner: &Arc<Inner>,
    peer: &Arc<Peer>,
    reader: Reader,
    writer: WriteHalf<Box<dyn Connection>>,
    generation: u64,
) -> Result<(), LinkError> {
    let mut replaced = peer.generation.subscribe();
    let mut shutdown = inner.shutdown.subscribe();
    let mut removed = peer.removed.subscribe();
    let outcome = tokio::select! {
        out = read_loop(inner, peer, reader, generation) => out,
        out = write_loop(inner, peer, writer) => out,
        _ = replaced.wait_for(|g| *g != generation) => Ok(()),
        _ = removed.wait_for(|gone| *gone) => Ok(()),
        _ = shutdown.wait_for(|stop| *stop) => Ok(()),
    };
    if *peer.generation.borrow() == generation && peer.connected.swap(false, Ordering::Relaxed) {
        inner.links.send_modify(|n| *n += 1);
    }
    inner.stats.connections_lost.fetch_add(1, Ordering::Relaxed);
    outcome
}

/// Read a link's frames until it fails. The link counts as connected from its first frame
/// (each end writes its status first): a connection the peer never answers on — made to a proxy
/// or a firewall that holds what it is sent — is not a link, and a broker counting it as one
/// took itself for connected to peers it was cut off from, three seconds of every four.
async fn read_loop(
    inner: &Inner,
    peer: &Peer,
    mut reader: Reader,
    generation: u64,
) -> Result<(), LinkError> {
    let settings = &inner.settings;
    let label = format!("node {}", peer.id);
    let mut heard = false;
    loop {
        let body = inner
            .env
            .clock
            .timeout(
                settings.io_timeout,
                read_frame(&mut reader, &label, settings.frame_bytes_max),
            )
            .await
            .map_err(|_| LinkError::TimedOut {
                peer: label.clone(),
                timeout: settings.io_timeout,
            })??;
        if !heard {
            heard = true;
            if *peer.generation.borrow() == generation
                && !peer.connected.swap(true, Ordering::Relaxed)
            {
                inner.links.send_modify(|n| *n += 1);
            }
        }
        if body.first() == Some(&KIND_STATUS) {
            if body.len() != 2 {
                return Err(LinkError::Malformed {
                    peer: label.clone(),
                    why: "a status frame of another length",
                });
            }
            let holds = body[1] & STATUS_HOLDS_DATA != 0;
            peer.holds_data.store(holds, Ordering::Relaxed);
            continue;
        }
        let messages = parse_messages(body, &label)?;
        if messages.is_empty() {
            continue; // keepalive
        }
        inner
            .stats
            .messages_received
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let delivery = Delivery {
            from: peer.id,
            messages,
        };
        match inner
            .env
            .clock
            .timeout(settings.io_timeout, inner.inbox.send(delivery))
            .await
        {
            Ok(Ok(())) => {}
            // The node stopped taking deliveries: it is shutting down.
            Ok(Err(_)) => return Ok(()),
            Err(_) => {
                return Err(LinkError::TimedOut {
                    peer: format!("{label} (inbox full)"),
                    timeout: settings.io_timeout,
                })
            }
        }
    }
}

async fn write_loop(
    inner: &Inner,
    peer: &Peer,
    mut writer: WriteHalf<Box<dyn Connection>>,
) -> Result<(), LinkError> {
    let settings = &inner.settings;
    let label = format!("node {}", peer.id);
    let mut told = None;
    loop {
        // The status goes first on a link, and again before anything else when it changes.
        let holds = inner.holds_data.load(Ordering::Relaxed);
        if told != Some(holds) {
            let mut status = unsealed_frame(2);
            status.put_u8(KIND_STATUS);
            status.put_u8(if holds { STATUS_HOLDS_DATA } else { 0 });
            timed_write(inner, &mut writer, &seal(status), &label).await?;
            told = Some(holds);
        }
        let body = take_frame(peer, settings.frame_bytes_max);
        let Some(body) = body else {
            // Nothing queued: wait for a flush, or send a keepalive when it is due.
            tokio::select! {
                _ = peer.wake.notified() => continue,
                _ = inner.env.clock.sleep(settings.keepalive) => {}
            }
            let mut empty = unsealed_frame(5);
            empty.put_u8(KIND_MESSAGES);
            empty.put_u32(0);
            timed_write(inner, &mut writer, &seal(empty), &label).await?;
            continue;
        };
        let count = (&body[FRAME_HEADER_BYTES + 1..FRAME_HEADER_BYTES + 5]).get_u32() as u64;
        timed_write(inner, &mut writer, &body, &label).await?;
        // For a run's page, which draws the messages between nodes (off unless asked for).
        tracing::trace!(target: "broker::replication::frames", peer = peer.id, messages = count, bytes = body.len(), "frame sent");
        inner.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        inner
            .stats
            .messages_sent
            .fetch_add(count, Ordering::Relaxed);
    }
}

async fn timed_write(
    inner: &Inner,
    writer: &mut WriteHalf<Box<dyn Connection>>,
    body: &Bytes,
    label: &str,
) -> Result<(), LinkError> {
    match inner
        .env
        .clock
        .timeout(inner.settings.io_timeout, write_frame(writer, body))
        .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(LinkError::Io {
            peer: label.to_string(),
            source,
        }),
        Err(_) => Err(LinkError::TimedOut {
            peer: label.to_string(),
            timeout: inner.settings.io_timeout,
        }),
    }
}

/// The peers' map as the configuration gives it, checked: no duplicate ids.
pub fn peer_map(
    peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut map = BTreeMap::new();
    let mut seen: HashMap<SocketAddr, NodeId> = HashMap::new();
    for (id, address) in peers {
        if map.insert(id, address).is_some() {
            return Err(format!("node {id} is listed twice among the peers"));
        }
        if let Some(other) = seen.insert(address, id) {
            return Err(format!(
                "nodes {other} and {id} have the same inter-broker address {address}"
            ));
        }
    }
    Ok(map)
}

mod accept;
mod frames;
pub mod peers;
use accept::{accept_loop, Admission};
pub use accept::{UNIDENTIFIED_MAX, UNIDENTIFIED_PER_ADDRESS_MAX};
use frames::*;
use peers::serve_join;
pub use peers::{JoinRequest, JOINS_QUEUED_MAX, STRANGERS_MAX};

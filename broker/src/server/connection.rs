//! One client connection: frames read within the broker's memory budget, requests dispatched in
//! arrival order, responses written in the same order under a write deadline.
//!
//! Bounds, and what happens at each:
//! - at most `max_in_flight_per_connection` requests read and not yet answered: the connection
//!   stops dispatching, and reads on only until a chunk is buffered (so that it still notices
//!   the peer closing);
//! - every byte read is taken from the [`MemoryBudget`] (a large frame's whole length before
//!   more of it is read), and held until the request's response is written or, for a produce,
//!   until its batches are in the log: when the budget is spent, the connection stops reading;
//! - one Fetch at a time: the next Fetch is read once the one before it is written (as Kafka
//!   serves one request of a connection at a time), so a connection's responses never hold
//!   more than one Fetch's records, and a Fetch never waits for memory that later Fetches of
//!   its own connection hold (their responses could not be written before it: a deadlock);
//! - a response write that makes no progress for `response_write_timeout_ms` closes the
//!   connection (a client that stops reading would otherwise pin its responses and its slot);
//! - the peer closing the socket ends everything at once: requests still waiting (a long-poll
//!   Fetch) are dropped with the memory and the connection slot they held, as Kafka does;
//! - no input for `idle_connection_timeout_ms` while nothing is being answered closes it;
//! - a response that carries a throttle time (its client is over a quota) is followed by a
//!   pause: no request is dispatched, and no more read than to notice the peer closing,
//!   until the throttle time has passed since it was written (Kafka's muted channel, KIP-219);
//!   and from then (or from a produce found over its client's quota as it arrives) until a
//!   response comes without one, the connection serves one request at a time, as Kafka serves
//!   every connection (pipelined requests read before the pause would otherwise all be
//!   served, each past the quota, before the next pause);
//! - on a SASL listener, nothing but ApiVersions and the SASL requests is served before the
//!   connection authenticates ([`super::sasl`]), which it must within
//!   `sasl_authentication_timeout_ms`; a refused authentication is the connection's last answer;
//! - on a cluster node whose replica of the cluster metadata has not caught up since it
//!   started, a connection is served nothing but ApiVersions until it has (Kafka's broker
//!   opens its listeners only then), for at most [`METADATA_WAIT_MAX`], then closed: the
//!   brokers, topics, users and ACLs a client is told of, and what it may do, are never
//!   decided from an older point of the metadata log than the broker had reached.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Future;
use io_backend::{Clock, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::sasl::{Authenticator, SaslContext, Step};
use crate::api::{Broker, Reply, Session};
use crate::memory::{MemoryBudget, Reservation};
use crate::metrics::Metrics;
use crate::protocol::{self, Decoded};
use crate::security::Principal;

/// Bytes read from a socket at a time, at most.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes a connection asks the socket for when it does not know how much is coming (a frame
/// header, small requests): an idle connection keeps no larger buffer than this.
const READ_SMALL_BYTES: usize = 4 * 1024;

/// A request being answered, with the memory its frame holds until its response is written,
/// and whether it is a Fetch.
type InFlight = Pin<Box<dyn Future<Output = (Reply, Arc<Reservation>, bool)> + Send>>;

const FETCH_API_KEY: i16 = 1;
const API_VERSIONS_API_KEY: i16 = 18;

/// How long a connection waits for this broker's metadata to catch up before it is closed
/// (the client connects again, perhaps to another broker).
const METADATA_WAIT_MAX: Duration = Duration::from_secs(30);

/// Who is at the other end of a connection, as far as it is known when it opens.
pub(super) struct Who {
    pub peer: SocketAddr,
    /// The listener it connected to.
    pub listener: Arc<str>,
    /// The principal of the TLS client certificate it showed.
    pub certificate: Option<Principal>,
}

/// Serve one connection until the peer closes it, it errs, idles out, or the broker stops.
pub(super) async fn serve(
    broker: Arc<Broker>,
    mut conn: Box<dyn Connection>,
    Who {
        peer,
        listener,
        certificate,
    }: Who,
    sasl: Option<Arc<SaslContext>>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &broker.config;
    let max_frame = cfg.max_frame_bytes;
    let max_in_flight = cfg.max_in_flight_per_connection;
    let idle = Duration::from_millis(cfg.idle_connection_timeout_ms.max(1));
    let write_timeout = Duration::from_millis(cfg.response_write_timeout_ms.max(1));
    let clock = broker.clock.clone();
    let metrics = broker.metrics.clone();
    let budget = broker.memory.clone();
    let mut buf = BytesMut::new();
    // Covers every byte in `buf` (and, once a large frame's length is known, all of it).
    let mut held = Reservation::none(&budget);
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut reading = true;
    let mut fetch_in_flight = false;
    let mut last_input = clock.now();
    let mut idle_timer = clock.sleep(idle);
    let mut auth = sasl.map(Authenticator::new);
    // Who the requests come from: the client certificate's subject, or ANONYMOUS, until a
    // SASL exchange says otherwise.
    let mut session = Session::new(certificate.unwrap_or_else(Principal::anonymous), Some(peer));
    let mut auth_timer = auth.as_ref().map(|a| clock.sleep(a.timeout()));
    // The client's software, once its ApiVersions (v3+) names it.
    let mut software: Option<Arc<(String, String)>> = None;
    let mut software_counted =
        crate::metrics::software::Counted::new(&broker.metrics.client_software);
    // Until this broker's metadata has caught up with the cluster's (`None`: it has).
    let mut loading = broker.metadata_loading();
    let mut loading_timer = loading.as_ref().map(|_| clock.sleep(METADATA_WAIT_MAX));
    // While the client is throttled: when its pause ends.
    let mut paused: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    // The in-flight window: one request while the client is throttled.
    let mut window = max_in_flight;
    'conn: loop {
        // Dispatch every complete frame already buffered (bounded by the in-flight window).
        while reading && paused.is_none() && in_flight.len() < window {
            if fetch_in_flight && front_api_key(&buf) == Some(FETCH_API_KEY) {
                break;
            }
            if held_for_metadata(&buf, &loading) {
                crate::coverage::reached(crate::coverage::Event::RequestHeldForMetadata);
                break;
            }
            let frame = match next_frame(&mut buf, max_frame) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(frame_bytes) => {
                    Metrics::inc(&metrics.malformed_requests, 1);
                    if let Some(suppressed) = broker.throttles.malformed.admit(clock.now()) {
                        tracing::warn!(%peer, frame_bytes, max_frame, suppressed, "closing connection: frame size out of bounds");
                    }
                    break 'conn;
                }
            };
            let frame_held = Arc::new(held.split(frame.len() + 4));
            Metrics::inc(&metrics.bytes_in, frame.len() as u64 + 4);
            if let Some(a) = auth.as_mut().filter(|a| a.expects_raw_token()) {
                let step = a.raw_token(&frame, &broker.security(), clock.now());
                match sasl_step(&broker, a, step, peer, &mut auth_timer, &mut session) {
                    Some(reply) => {
                        reading &= !matches!(reply, SaslReply::Last(..));
                        in_flight.push_back(reply.into_in_flight(frame_held, &budget, &clock));
                        continue;
                    }
                    None => break 'conn,
                }
            }
            match protocol::decode(frame) {
                Ok(Decoded::Request(mut req)) => {
                    if let Some(a) = auth.as_mut() {
                        if is_sasl(req.api) {
                            let step = a.request(&req, &broker.security(), clock.now());
                            match sasl_step(&broker, a, step, peer, &mut auth_timer, &mut session) {
                                Some(reply) => {
                                    reading &= !matches!(reply, SaslReply::Last(..));
                                    in_flight.push_back(
                                        reply.into_in_flight(frame_held, &budget, &clock),
                                    );
                                    continue;
                                }
                                None => break 'conn,
                            }
                        }
                        if let Err(why) = a.admits(req.api, clock.now()) {
                            Metrics::inc(&metrics.sasl_authentications_failed, 1);
                            if let Some(suppressed) = broker.throttles.sasl.admit(clock.now()) {
                                tracing::warn!(%peer, listener = %listener, reason = %why, suppressed, "closing connection");
                            }
                            break 'conn;
                        }
                    }
                    req.peer = Some(peer);
                    req.listener = Some(listener.clone());
                    if let kafka_protocol::messages::RequestKind::ApiVersions(v) = &req.body {
                        if req.version >= 3 && protocol::software_ok(v) {
                            // Kept for client telemetry's selectors and counted by software;
                            // bounded (Kafka takes only a few characters of `[a-zA-Z0-9.-]`).
                            let name: String =
                                v.client_software_name.as_str().chars().take(128).collect();
                            let version: String = v
                                .client_software_version
                                .as_str()
                                .chars()
                                .take(128)
                                .collect();
                            software_counted.set(&name, &version);
                            software = Some(Arc::new((name, version)));
                        }
                    }
                    req.software = software.clone();
                    let is_fetch = req.api as i16 == FETCH_API_KEY;
                    fetch_in_flight |= is_fetch;
                    let (reply, over_quota) =
                        broker.dispatch(*req, frame_held.clone(), &session).await;
                    if over_quota {
                        // Nothing more dispatched until its answer (and the pause) is out.
                        window = 1;
                    }
                    in_flight
                        .push_back(Box::pin(async move { (reply.await, frame_held, is_fetch) }));
                }
                Ok(Decoded::ApiVersionsUnsupported { correlation_id }) => {
                    tracing::info!(%peer, "ApiVersions at an unsupported version; answering in v0 format");
                    let reply = match protocol::api_versions_unsupported(correlation_id) {
                        Ok(b) => {
                            let held = budget.charge(b.len());
                            Reply::Send(b, held, Duration::ZERO)
                        }
                        Err(_) => Reply::Close,
                    };
                    in_flight.push_back(Box::pin(async move { (reply, frame_held, false) }));
                }
                Err(e) => {
                    Metrics::inc(&metrics.malformed_requests, 1);
                    if let Some(suppressed) = broker.throttles.malformed.admit(clock.now()) {
                        tracing::warn!(%peer, error = %e, suppressed, "closing connection: bad request");
                    }
                    break 'conn;
                }
            }
        }
        if buf.is_empty() && buf.capacity() > READ_CHUNK_BYTES {
            // Between requests a connection keeps no large buffer.
            buf = BytesMut::new();
        }
        if !reading && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            read = read_more(&mut conn, &mut buf, &mut held, &budget), if reading && wants_input(&buf, in_flight.len() < window && paused.is_none() && !held_for_metadata(&buf, &loading), fetch_in_flight) => {
                match read {
                    Ok(0) => {
                        // The peer is gone: what it asked is not answered, and what it held
                        // (long polls, memory, its slot) is released now, not when they end.
                        if !buf.is_empty() {
                            Metrics::inc(&metrics.malformed_requests, 1);
                            if let Some(suppressed) = broker.throttles.malformed.admit(clock.now()) {
                                tracing::warn!(%peer, want = next_frame_len(&buf), got = buf.len(), suppressed, "connection closed in the middle of a frame");
                            }
                        } else if !in_flight.is_empty() {
                            tracing::debug!(%peer, requests = in_flight.len(), "peer closed with requests in flight; dropping them");
                        }
                        break;
                    }
                    Ok(_) => last_input = clock.now(),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection read error");
                        break;
                    }
                }
            }
            _ = async { auth_timer.as_mut().expect("checked").await }, if auth_timer.is_some() => {
                Metrics::inc(&metrics.sasl_authentications_failed, 1);
                if let Some(suppressed) = broker.throttles.sasl.admit(clock.now()) {
                    tracing::warn!(%peer, listener = %listener, suppressed, "closing connection: not authenticated within sasl_authentication_timeout_ms");
                }
                break;
            }
            loaded = async { loading.as_mut().expect("checked").wait_for(|l| *l).await.is_ok() }, if loading.is_some() => {
                if !loaded {
                    // The controller is gone: the broker is stopping.
                    break;
                }
                loading = None;
                loading_timer = None;
            }
            _ = async { loading_timer.as_mut().expect("checked").await }, if loading.is_some() && loading_timer.is_some() => {
                if let Some(suppressed) = broker.throttles.metadata_wait.admit(clock.now()) {
                    tracing::warn!(%peer, listener = %listener, suppressed, "closing connection: this broker's metadata has not caught up with the cluster's yet");
                }
                break;
            }
            _ = &mut idle_timer, if reading => {
                let quiet = clock.now() - last_input;
                if quiet >= idle && in_flight.is_empty() {
                    tracing::info!(%peer, "closing idle connection");
                    break;
                }
                // Quiet while a request is still being answered (a long poll) is not idle.
                let next = if quiet >= idle { idle } else { idle - quiet };
                idle_timer = clock.sleep(next);
            }
            _ = async { paused.as_mut().expect("checked").await }, if paused.is_some() => {
                paused = None;
            }
            _ = stop.changed(), if reading => {
                // Shutdown: answer what was received, then close.
                reading = false;
            }
            Some((reply, _frame_held, was_fetch)) = in_flight.next(), if !in_flight.is_empty() => {
                fetch_in_flight &= !was_fetch;
                match reply {
                    Reply::Send(bytes, _response_held, throttle) => {
                        Metrics::inc(&metrics.bytes_out, bytes.len() as u64);
                        if let Err(e) = write_within(&mut *conn, &bytes, &*clock, write_timeout).await {
                            if e.kind() == std::io::ErrorKind::TimedOut {
                                Metrics::inc(&metrics.response_write_timeouts, 1);
                                tracing::info!(%peer, bytes = bytes.len(), "closing connection: the client stopped reading its responses");
                            } else {
                                tracing::debug!(%peer, error = %e, "write failed; closing");
                            }
                            break;
                        }
                        window = if throttle.is_zero() { max_in_flight } else { 1 };
                        pause(&mut paused, throttle, &clock);
                    }
                    Reply::Last(bytes, _response_held) => {
                        Metrics::inc(&metrics.bytes_out, bytes.len() as u64);
                        let _ = write_within(&mut *conn, &bytes, &*clock, write_timeout).await;
                        break;
                    }
                    Reply::Silent(throttle) => {
                        window = if throttle.is_zero() { max_in_flight } else { 1 };
                        pause(&mut paused, throttle, &clock);
                    }
                    Reply::Close => break,
                }
            }
        }
    }
    // Closing must not wait on a peer that reads nothing either.
    let _ = clock.timeout(write_timeout, conn.shutdown()).await;
}

/// Pause the connection for `throttle` from now (or longer, if it is paused longer already:
/// a later response's throttle replaces an earlier one's only when it ends later).
fn pause<'a>(
    paused: &mut Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
    throttle: Duration,
    clock: &'a Arc<dyn Clock>,
) {
    if throttle.is_zero() {
        return;
    }
    let until = clock.now() + throttle;
    let clock = clock.clone();
    let ends = async move {
        let left = until.saturating_duration_since(clock.now());
        clock.sleep(left).await
    };
    *paused = Some(match paused.take() {
        None => Box::pin(ends),
        Some(earlier) => Box::pin(async move {
            earlier.await;
            ends.await
        }),
    });
}

/// A SASL response for the connection to write: now, or after the failure delay as its last.
enum SaslReply {
    Now(Bytes),
    Last(Bytes, Duration),
}

impl SaslReply {
    fn into_in_flight(
        self,
        frame_held: Arc<Reservation>,
        budget: &Arc<MemoryBudget>,
        clock: &Arc<dyn Clock>,
    ) -> InFlight {
        match self {
            SaslReply::Now(b) => {
                let held = budget.charge(b.len());
                Box::pin(async move { (Reply::Send(b, held, Duration::ZERO), frame_held, false) })
            }
            SaslReply::Last(b, delay) => {
                let held = budget.charge(b.len());
                let clock = clock.clone();
                Box::pin(async move {
                    clock.sleep(delay).await;
                    (Reply::Last(b, held), frame_held, false)
                })
            }
        }
    }
}

fn is_sasl(api: kafka_protocol::messages::ApiKey) -> bool {
    use kafka_protocol::messages::ApiKey;
    matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}

/// What the connection does after an authentication step: the reply to queue, or `None` to
/// close now. Counts and logs the outcome; once authenticated, the deadline no longer runs.
fn sasl_step<'a>(
    broker: &Broker,
    auth: &mut Authenticator,
    step: Step,
    peer: SocketAddr,
    auth_timer: &mut Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
    session: &mut Session,
) -> Option<SaslReply> {
    let metrics = &broker.metrics;
    let now = broker.clock.now();
    match step {
        Step::Answer(b) => {
            if auth.take_authenticated() {
                Metrics::inc(&metrics.sasl_authentications, 1);
                *auth_timer = None;
                if let Some(p) = auth.principal() {
                    session.principal = p.clone();
                }
                tracing::debug!(%peer, principal = %auth.principal().map(ToString::to_string).unwrap_or_default(), "authenticated");
            }
            Some(SaslReply::Now(b))
        }
        Step::Refuse(b) => {
            Metrics::inc(&metrics.sasl_authentications_failed, 1);
            if let Some(suppressed) = broker.throttles.sasl.admit(now) {
                tracing::warn!(%peer, suppressed, "SASL authentication refused; closing the connection");
            }
            Some(SaslReply::Last(b, auth.failed_delay()))
        }
        Step::Close(why) => {
            Metrics::inc(&metrics.sasl_authentications_failed, 1);
            if let Some(suppressed) = broker.throttles.sasl.admit(now) {
                tracing::warn!(%peer, reason = %why, suppressed, "closing connection: SASL");
            }
            None
        }
    }
}

/// Read more of the next frame into `buf`, within the memory budget: a frame larger than one
/// chunk has its whole length taken from the budget before more of it is read (so a few large
/// frames cannot each hold part of the budget and wait for the rest forever); otherwise the
/// connection waits while the budget is spent, then charges what it read. Cancel-safe.
async fn read_more(
    conn: &mut Box<dyn Connection>,
    buf: &mut BytesMut,
    held: &mut Reservation,
    budget: &Arc<MemoryBudget>,
) -> std::io::Result<usize> {
    let frame = (buf.len() >= 4).then(|| next_frame_len(buf));
    match frame {
        Some(whole) if whole > READ_CHUNK_BYTES && whole > held.bytes() => {
            let more = budget.acquire(whole - held.bytes()).await;
            held.merge(more);
        }
        _ => budget.wait_for_room().await,
    }
    let want = match frame {
        Some(whole) => whole.saturating_sub(buf.len()).max(READ_SMALL_BYTES),
        None => READ_SMALL_BYTES,
    }
    .min(READ_CHUNK_BYTES);
    match frame {
        // Room for all of a large frame at once (pages are touched only as bytes arrive):
        // growing by doubling would copy it, and hold two copies while it does.
        Some(whole) if whole > READ_CHUNK_BYTES => buf.reserve(whole.saturating_sub(buf.len())),
        _ => buf.reserve(want),
    }
    let n = (&mut **conn).take(want as u64).read_buf(buf).await?;
    if buf.len() > held.bytes() {
        held.merge(budget.charge(buf.len() - held.bytes()));
    }
    Ok(n)
}

/// Write all of `bytes` and flush, failing with `TimedOut` if any write makes no progress for
/// `limit` (a peer that stopped reading).
async fn write_within(
    conn: &mut dyn Connection,
    bytes: &[u8],
    clock: &dyn Clock,
    limit: Duration,
) -> std::io::Result<()> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "write deadline");
    let mut pos = 0;
    while pos < bytes.len() {
        match clock.timeout(limit, conn.write(&bytes[pos..])).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => pos += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(timed_out()),
        }
    }
    // AsyncWrite's contract: bytes may sit in a buffer until flushed (they do in the
    // simulator's TCP; the kernel's flush is a no-op).
    clock
        .timeout(limit, conn.flush())
        .await
        .map_err(|_| timed_out())?
}

/// Take one complete frame off the front of `buf`, if there is one. The error is a length
/// prefix out of bounds (negative or above `max`).
fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, i64> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64;
    if len < 0 || len as usize > max {
        return Err(len);
    }
    if buf.len() < 4 + len as usize {
        return Ok(None);
    }
    let mut frame = buf.split_to(4 + len as usize);
    let _ = frame.split_to(4);
    Ok(Some(frame.freeze()))
}

/// Whether to read from the socket: to get the next request when one can be dispatched, and —
/// even when none can (the window is full, or a Fetch waits for the one before it) — to notice
/// that the peer has closed, as long as what is buffered is less than a chunk.
fn wants_input(buf: &[u8], window_open: bool, fetch_in_flight: bool) -> bool {
    let can_dispatch =
        window_open && !(fetch_in_flight && front_api_key(buf) == Some(FETCH_API_KEY));
    can_dispatch || buf.len() < READ_CHUNK_BYTES
}

/// Whether the request at the front of `buf` must wait for the cluster metadata: anything but
/// ApiVersions while it is `loading`.
fn held_for_metadata(buf: &[u8], loading: &Option<watch::Receiver<bool>>) -> bool {
    loading.is_some() && front_api_key(buf).is_some_and(|k| k != API_VERSIONS_API_KEY)
}

/// The API key of the request at the front of `buf`, once its header's first bytes are in.
fn front_api_key(buf: &[u8]) -> Option<i16> {
    (buf.len() >= 6).then(|| i16::from_be_bytes([buf[4], buf[5]]))
}

/// The whole length (prefix included) of the frame at the front of `buf`.
fn next_frame_len(buf: &[u8]) -> usize {
    if buf.len() < 4 {
        4
    } else {
        4 + i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize
    }
}

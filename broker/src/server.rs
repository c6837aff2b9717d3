//! Wiring: the Kafka listener, one task per connection, the metrics endpoint, shutdown.
//!
//! Each connection has a reader task (frames into a bounded channel) and a writer loop that
//! dispatches requests in arrival order and writes responses in the same order, with at most
//! `max_in_flight_per_connection` requests outstanding. A slow or malicious client only ever
//! stalls its own connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use io_backend::{Clock, Connection, Env, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::commit::Store;
use crate::config::Config;
use crate::handlers::{count_connection, Broker, Reply, ResponseFuture};
use crate::metrics::{CountingDisk, Metrics};
use crate::protocol::{self, Decoded};

/// How long shutdown waits for open requests to finish.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A started broker node.
pub struct Running {
    pub kafka_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub broker: Arc<Broker>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting, let open requests finish (bounded), and return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }

    /// Resolves when the node has stopped.
    pub fn stopped(&mut self) -> &mut tokio::task::JoinHandle<()> {
        &mut self.done
    }
}

/// Open the data directory, bind the listeners and start serving.
pub async fn start(env: Env, config: Config) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::default());
    let env = Env {
        disk: CountingDisk::wrap(env.disk.clone(), metrics.clone()),
        ..env
    };
    tracing::info!(data_dir = %config.data_dir.display(), engine = env.disk.engine(), "opening data directory");
    let store = open_store(&env, &config, &metrics).await?;
    let broker = Arc::new(Broker {
        config: config.clone(),
        store,
        metrics: metrics.clone(),
        clock: env.clock.clone(),
    });
    let listener = env
        .net
        .listen(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let kafka_addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let metrics_addr = if config.metrics_listen.is_empty() {
        None
    } else {
        let addr: SocketAddr = config.metrics_listen.parse()?;
        let l = env
            .net
            .listen(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
        let bound = l.local_addr()?;
        tokio::spawn(serve_metrics(
            l,
            metrics.clone(),
            env.clock.clone(),
            stop_rx.clone(),
        ));
        Some(bound)
    };
    tracing::info!(%kafka_addr, ?metrics_addr, node_id = config.node_id, "broker serving");
    let done = tokio::spawn(accept_loop(
        listener,
        broker.clone(),
        env.clock.clone(),
        stop_rx,
    ));
    Ok(Running {
        kafka_addr,
        metrics_addr,
        broker,
        stop,
        done,
    })
}

/// Open (and recover) the data directory. A disk that stalls or fails while the node starts may
/// recover — a stalled fsync ends, a full disk gets space — so a transient failure is retried
/// with a growing pause (each attempt logged), as it would be while serving; corrupt data or a
/// misconfigured directory stops the start with the reason.
async fn open_store(
    env: &Env,
    config: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<Store>> {
    const PAUSE_MAX: Duration = Duration::from_secs(30);
    let mut pause = Duration::from_millis(500);
    loop {
        match Store::open(env.clone(), config, metrics.clone()).await {
            Ok(store) => return Ok(store),
            Err(e) if e.transient() => {
                tracing::warn!(data_dir = %config.data_dir.display(), error = %e, retry_in = ?pause, "cannot open the data directory yet");
                env.clock.sleep(pause).await;
                pause = (pause * 2).min(PAUSE_MAX);
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot open data directory {}: {e}",
                    config.data_dir.display()
                ))
            }
        }
    }
}

/// Run until `signal` resolves, then shut down gracefully.
pub async fn run_until(
    env: Env,
    config: Config,
    signal: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(signal);
    // A signal while the node is still starting (recovering, or waiting for its disk) stops it.
    let mut running = tokio::select! {
        started = start(env, config) => started?,
        _ = &mut signal => {
            tracing::info!("shutting down before the node started");
            return Ok(());
        }
    };
    tokio::select! {
        _ = signal => {
            tracing::info!("shutting down");
            running.shutdown().await;
        }
        _ = running.stopped() => {}
    }
    Ok(())
}

async fn accept_loop(
    listener: Box<dyn Listener>,
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let max = broker.config.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let (conn, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of file descriptors and the like: do not spin.
                clock.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            Metrics::inc(&broker.metrics.connections_rejected, 1);
            tracing::warn!(%peer, max, "connection limit reached; closing the new connection");
            drop(conn);
            continue;
        };
        let b = broker.clone();
        let stop_conn = stop.clone();
        let span = tracing::info_span!("conn", %peer);
        tokio::spawn(
            async move {
                count_connection(&b.metrics, 1);
                serve_connection(b.clone(), conn, peer, stop_conn).await;
                count_connection(&b.metrics, -1);
                drop(permit);
            }
            .instrument(span),
        );
    }
    // Drain: wait (bounded) for open connections to finish their requests.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = clock.timeout(DRAIN_TIME, slots.acquire_many(all)).await;
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
    let len = len as usize;
    if buf.len() < 4 + len {
        // Grow with what arrives: a client that announces a large frame and sends little
        // does not make us reserve the whole size.
        buf.reserve((4 + len - buf.len()).min(READ_CHUNK_BYTES));
        return Ok(None);
    }
    let mut frame = buf.split_to(4 + len);
    let _ = frame.split_to(4);
    Ok(Some(frame.freeze()))
}

/// Bytes read from a socket at a time (at least).
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One task per connection: read frames (cancel-safe `read_buf` into a buffer), dispatch them in
/// arrival order, write responses in the same order, with at most `max_in_flight_per_connection`
/// requests outstanding. One task instead of a reader/writer pair saves a hop per request.
async fn serve_connection(
    broker: Arc<Broker>,
    mut conn: Box<dyn Connection>,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &broker.config;
    let max_frame = cfg.max_frame_bytes;
    let max_in_flight = cfg.max_in_flight_per_connection;
    let idle = Duration::from_millis(cfg.idle_connection_timeout_ms.max(1));
    let clock = broker.clock.clone();
    let metrics = broker.metrics.clone();
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut in_flight: FuturesOrdered<ResponseFuture> = FuturesOrdered::new();
    let mut reading = true;
    let mut last_input = clock.now();
    let mut idle_timer = clock.sleep(idle);
    'conn: loop {
        // Dispatch every complete frame already buffered (bounded by the in-flight window).
        while reading && in_flight.len() < max_in_flight {
            let frame = match next_frame(&mut buf, max_frame) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(frame_bytes) => {
                    Metrics::inc(&metrics.malformed_requests, 1);
                    tracing::warn!(%peer, frame_bytes, max_frame, "closing connection: frame size out of bounds");
                    break 'conn;
                }
            };
            Metrics::inc(&metrics.bytes_in, frame.len() as u64 + 4);
            match protocol::decode(frame) {
                Ok(Decoded::Request(req)) => {
                    let fut = broker.dispatch(*req).await;
                    in_flight.push_back(fut);
                }
                Ok(Decoded::ApiVersionsUnsupported { correlation_id }) => {
                    tracing::info!(%peer, "ApiVersions at an unsupported version; answering in v0 format");
                    let reply = match protocol::api_versions_unsupported(correlation_id) {
                        Ok(b) => Reply::Send(b),
                        Err(_) => Reply::Close,
                    };
                    in_flight.push_back(Box::pin(async move { reply }));
                }
                Err(e) => {
                    Metrics::inc(&metrics.malformed_requests, 1);
                    tracing::warn!(%peer, error = %e, "closing connection: bad request");
                    break 'conn;
                }
            }
        }
        if !reading && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            read = conn.read_buf(&mut buf), if reading && in_flight.len() < max_in_flight => {
                match read {
                    Ok(0) => {
                        reading = false;
                        if !buf.is_empty() {
                            let want = next_frame_len(&buf);
                            Metrics::inc(&metrics.malformed_requests, 1);
                            tracing::warn!(%peer, want, got = buf.len(), "connection closed in the middle of a frame");
                        }
                    }
                    Ok(_) => last_input = clock.now(),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection read error");
                        break;
                    }
                }
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
            _ = stop.changed(), if reading => {
                // Shutdown: answer what was received, then close.
                reading = false;
            }
            Some(resp) = in_flight.next(), if !in_flight.is_empty() => {
                match resp {
                    Reply::Send(bytes) => {
                        Metrics::inc(&metrics.bytes_out, bytes.len() as u64);
                        // AsyncWrite's contract: bytes may sit in a buffer until flushed
                        // (they do in the simulator's TCP; the kernel's flush is a no-op).
                        let sent = match conn.write_all(&bytes).await {
                            Ok(()) => conn.flush().await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = sent {
                            tracing::debug!(%peer, error = %e, "write failed; closing");
                            break;
                        }
                    }
                    Reply::Silent => {}
                    Reply::Close => break,
                }
            }
        }
    }
    let _ = conn.shutdown().await;
}

fn next_frame_len(buf: &[u8]) -> usize {
    if buf.len() < 4 {
        4
    } else {
        4 + i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize
    }
}

async fn serve_metrics(
    listener: Box<dyn Listener>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let Ok((mut conn, _peer)) = accepted else {
            clock.sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read_head = async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
            };
            if clock
                .timeout(Duration::from_secs(5), read_head)
                .await
                .is_err()
            {
                return;
            }
            let (status, body) = if req.starts_with(b"GET /metrics") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
            let _ = conn.flush().await;
            let _ = conn.shutdown().await;
        });
    }
}

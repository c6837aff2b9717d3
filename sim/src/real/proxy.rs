//! The network of a twin run: a userspace TCP proxy on every link (netem is not available on
//! these kernels), each knowing which two nodes it joins, so that a scenario's partitions (a
//! node isolated, a link cut one way or both) and latency are struck on real connections.
//!
//! - A client node's link to a broker is a listener per (client node, broker); the client
//!   node's thread dials it in place of the broker ([`crate::workload::client::route_through`]).
//! - The brokers link through one listener per broker, the address the others have for it in
//!   `cluster_peers` (the same string on every broker: the cluster's fingerprint is made of it);
//!   the dialling broker is read from its first frame, the transport's hello (`u32 length`,
//!   `u32 crc`, kind, magic, `u16 version`, then the sender's `u64` id).
//!
//! Invariant: bytes from node `a` to node `b` are held, not delivered, while `(a, b)` is cut —
//! as a firewall that drops packets does to TCP, which resends until it gives up — and flow
//! again, in order, once it heals; a connection opened across a cut link hangs as a SYN that
//! is never answered does. What is held is bounded by the sockets' buffers (the proxy stops
//! reading what it cannot forward).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The state of every link: which directions are cut, and the latency added to each chunk.
#[derive(Default)]
pub struct Links {
    cut: Mutex<BTreeSet<(String, String)>>,
    latency: Mutex<Option<(Duration, Duration)>>,
    /// Bumped at every change, for the pumps that wait for a cut to heal.
    changed: watch::Sender<u64>,
    /// Draws for the latency (a twin run is not replayed, but its draws need no OS randomness).
    rng: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Links {
    pub fn new(seed: u64) -> Arc<Links> {
        Arc::new(Links {
            rng: Mutex::new(seed | 1),
            ..Links::default()
        })
    }

    /// Cut the direction from `a` to `b`.
    pub fn cut(&self, a: &str, b: &str) {
        lock(&self.cut).insert((a.to_string(), b.to_string()));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Heal the direction from `a` to `b`.
    pub fn heal(&self, a: &str, b: &str) {
        lock(&self.cut).remove(&(a.to_string(), b.to_string()));
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn is_cut(&self, a: &str, b: &str) -> bool {
        lock(&self.cut).contains(&(a.to_string(), b.to_string()))
    }

    /// Every chunk on every link takes between `min` and `max` longer (`None`: no delay).
    pub fn set_latency(&self, range: Option<(Duration, Duration)>) {
        *lock(&self.latency) = range;
    }

    fn delay(&self) -> Duration {
        let Some((lo, hi)) = *lock(&self.latency) else {
            return Duration::ZERO;
        };
        let span = hi.saturating_sub(lo).as_micros() as u64;
        let mut x = lock(&self.rng);
        // xorshift64
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        lo + Duration::from_micros(if span == 0 { 0 } else { *x % (span + 1) })
    }

    /// Wait until the direction from `a` to `b` is not cut.
    async fn open(&self, a: &str, b: &str) {
        let mut changed = self.changed.subscribe();
        while self.is_cut(a, b) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Who dials a proxy: a client node (known from the listener), or a broker (read from its hello).
#[derive(Clone)]
pub enum Dialler {
    Node(String),
    /// A broker whose id is in its hello; the name of broker `id` is `name(id)`.
    Broker(fn(u64) -> String),
}

/// Serve `listener`: every connection it accepts from `dialler` is joined to `upstream`, the
/// node `to`, through `links`. Runs until the runtime ends.
pub async fn serve(
    listener: TcpListener,
    dialler: Dialler,
    to: String,
    upstream: SocketAddr,
    links: Arc<Links>,
) {
    loop {
        let Ok((down, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (dialler, to, links) = (dialler.clone(), to.clone(), links.clone());
        tokio::spawn(async move {
            let _ = join(down, dialler, to, upstream, links).await;
        });
    }
}

/// The transport's hello, up to the sender's id.
const HELLO_TO_SENDER: usize = 4 + 4 + 1 + 4 + 2 + 8;

async fn join(
    mut down: TcpStream,
    dialler: Dialler,
    to: String,
    upstream: SocketAddr,
    links: Arc<Links>,
) -> std::io::Result<()> {
    down.set_nodelay(true)?;
    let (from, first) = match dialler {
        Dialler::Node(name) => (name, Vec::new()),
        Dialler::Broker(name) => {
            let mut hello = vec![0u8; HELLO_TO_SENDER];
            down.read_exact(&mut hello).await?;
            let id = u64::from_be_bytes(hello[HELLO_TO_SENDER - 8..].try_into().expect("8 bytes"));
            (name(id), hello)
        }
    };
    // A SYN across a cut link is never answered: the connection is made once it heals.
    links.open(&from, &to).await;
    links.open(&to, &from).await;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    up.write_all(&first).await?;
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    let there = tokio::spawn(pump(down_r, up_w, from.clone(), to.clone(), links.clone()));
    let back = pump(up_r, down_w, to, from, links).await;
    there.abort();
    back
}

/// Forward bytes from `a` to `b` as the link lets them: held while it is cut, delayed by its
/// latency, in order.
async fn pump(
    mut src: tokio::net::tcp::OwnedReadHalf,
    mut dst: tokio::net::tcp::OwnedWriteHalf,
    a: String,
    b: String,
    links: Arc<Links>,
) -> std::io::Result<()> {
    // A delay line of a few chunks: the reader stamps each chunk with when it is due.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(16);
    let writer = {
        let links = links.clone();
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            while let Some((due, chunk)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                links.open(&a, &b).await;
                if dst.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = dst.shutdown().await;
        })
    };
    let mut buf = vec![0u8; 64 << 10];
    let result = loop {
        let n = match src.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        // Held at the source while cut: nothing more is read, so TCP's window fills.
        links.open(&a, &b).await;
        let due = Instant::now() + links.delay();
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            break Ok(());
        }
    };
    drop(tx);
    let _ = writer.await;
    result
}

//! Strangers' floods on a broker's port (`flood` faults): at the fault's time, a stranger
//! opens its connections to the port at once, sends each what the fault says (garbage, nothing,
//! half a frame), and holds each one until the broker closes it or the window ends; then it
//! records what it saw ([`FloodSeen`]) for the flood checker. The same code strikes the fault
//! in both worlds: in simulation from the checker's node (no client runs there meanwhile), in
//! a twin run from an address of its own on the loopback (127.0.0.2), so that neither a
//! client's nor a broker's connections share the stranger's per-address bound.
//!
//! Invariant: a stranger never outlives its window: every connection is dropped by its end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::history::{FloodSeen, Op};
use crate::scenario::{Fault, FloodPort, FloodSend};
use crate::workload::World;

/// A connection the broker closed within this long was refused at once.
const AT_ONCE: Duration = Duration::from_secs(1);

/// How long a stranger waits for a connection to be made.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Strike every `flood` fault of the run, each at its time.
pub async fn strangers(world: Arc<World>) {
    let floods: Vec<Fault> = world
        .faults
        .iter()
        .filter(|f| matches!(f, Fault::Flood { .. }))
        .cloned()
        .collect();
    let runs: Vec<_> = floods
        .into_iter()
        .map(|f| tokio::spawn(flood(world.clone(), f)))
        .collect();
    for r in runs {
        let _ = r.await;
    }
}

async fn flood(world: Arc<World>, fault: Fault) {
    let Fault::Flood {
        at_s,
        for_s,
        connections,
        port,
        send,
        ..
    } = fault
    else {
        return;
    };
    let broker = fault
        .node()
        .and_then(|n| n.strip_prefix("broker-"))
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or(1)
        .saturating_sub(1);
    let addr = match port {
        FloodPort::Client => world.directory.brokers().get(broker).copied(),
        FloodPort::InterBroker => world.inter_broker.get(broker).copied(),
    };
    tokio::time::sleep_until(world.start + Duration::from_secs(at_s)).await;
    let began = Instant::now();
    let since = |t: Instant| (t - world.start).as_secs_f64();
    let Some(addr) = addr else {
        // Nothing to flood: recorded so, and the checker says the flood proved nothing.
        tracing::warn!(
            "{}: broker {} has no such port",
            fault.describe(),
            broker + 1
        );
        world.record(Op::Flood(FloodSeen {
            broker,
            port,
            send,
            at_s: since(began),
            until_s: since(began),
            opened: 0,
            closed_at_once: 0,
            held_max: 0,
            longest_held_s: 0.0,
        }));
        return;
    };
    let end = began + Duration::from_secs(for_s);
    let held: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(hold(addr, send, end)))
        .collect();
    let mut spans = Vec::new();
    for h in held {
        if let Ok(Some(span)) = h.await {
            spans.push(span);
        }
    }
    let seen = FloodSeen {
        broker,
        port,
        send,
        at_s: since(began),
        until_s: since(Instant::now()),
        opened: spans.len() as u32,
        closed_at_once: spans.iter().filter(|(o, c)| *c - *o <= AT_ONCE).count() as u32,
        held_max: most_at_once(&spans),
        longest_held_s: spans
            .iter()
            .map(|(o, c)| (*c - *o).as_secs_f64())
            .fold(0.0, f64::max),
    };
    tracing::info!(
        "{}: {} opened, {} closed at once, at most {} held at once, the longest {:.1} s",
        fault.describe(),
        seen.opened,
        seen.closed_at_once,
        seen.held_max,
        seen.longest_held_s
    );
    world.record(Op::Flood(seen));
}

/// The most connections open at once among those held longer than [`AT_ONCE`].
fn most_at_once(spans: &[(Instant, Instant)]) -> u32 {
    let mut edges: Vec<(Instant, i32)> = spans
        .iter()
        .filter(|(o, c)| *c - *o > AT_ONCE)
        .flat_map(|(o, c)| [(*o, 1), (*c, -1)])
        .collect();
    // Closes before opens at the same instant.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as u32
}

/// One stranger's connection: made, sent `send`, held until the broker closes it or `end`.
/// `None` if it could not be made.
async fn hold(addr: SocketAddr, send: FloodSend, end: Instant) -> Option<(Instant, Instant)> {
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect(addr))
        .await
        .ok()?
        .ok()?;
    let opened = Instant::now();
    let bytes: &[u8] = match send {
        // A length prefix of 2 GiB - 1 and a hello-sized run of 0xff: no Kafka frame (its size
        // is past every bound) and no transport hello.
        FloodSend::Garbage => &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        FloodSend::Nothing => &[],
        // A frame of 64 bytes announced, 3 sent.
        FloodSend::Half => &[0x00, 0x00, 0x00, 0x40, 0x00, 0x12, 0x00],
    };
    // Flushed: the simulator's TCP keeps written bytes until then.
    if !bytes.is_empty() && (conn.write_all(bytes).await.is_err() || conn.flush().await.is_err()) {
        return Some((opened, Instant::now()));
    }
    let mut buf = [0u8; 512];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            // Closed (or reset) by the broker.
            Ok(Ok(0)) | Ok(Err(_)) => return Some((opened, Instant::now())),
            // An answer to garbage: read on until it closes.
            Ok(Ok(_)) => {}
            Err(_) => return Some((opened, end)),
        }
    }
}

/// A connection from the stranger's own address.
async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    #[cfg(not(madsim))]
    if addr.ip().is_loopback() {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
        return socket.connect(addr).await;
    }
    TcpStream::connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_held_at_once_leaves_out_the_short_ones() {
        let t = Instant::now();
        let s = |a: u64, b: u64| (t + Duration::from_millis(a), t + Duration::from_millis(b));
        // Three long ones overlapping two at a time, and many refused at once.
        let mut spans = vec![s(0, 3_000), s(2_000, 5_000), s(4_000, 9_000)];
        spans.extend((0..50).map(|i| s(i, i + 10)));
        assert_eq!(most_at_once(&spans), 2);
        assert_eq!(most_at_once(&[]), 0);
    }
}

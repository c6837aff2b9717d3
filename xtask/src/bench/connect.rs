//! `cargo xtask bench connect`: connection set-up. Clients each open a connection, log in
//! (with `--security sasl-ssl`: a TLS handshake, then SaslHandshake and SCRAM-SHA-512's two
//! SaslAuthenticate rounds), ask ApiVersions and close it, in a loop: connections per second,
//! the set-up latency, and the broker's CPU per connection — what a fleet of clients that
//! reconnect at once (a deploy, a network blip) costs it. The clients keep their salted
//! passwords, so the key derivation (a few thousand HMACs) is spent once, not per connection,
//! beside the broker on the same machine.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use tokio::time::Instant;

use super::kafka::{ApiVersions, Connection};
use super::stats::{self, Latency};
use super::{count, environment_rows, latency_rows, seconds, BrokerArgs, Snapshot, Target};

#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Clients opening connections at the same time, each one after the other.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Length of the measured window.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
}

pub async fn connect_bench(args: ConnectArgs) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let duration = seconds(args.duration_secs, "--duration-secs")?;
    let broker = args.broker.clone();
    super::per_security(&broker, "connect", |target| {
        let args = args.clone();
        async move { connect_against(&args, &target, duration).await }
    })
    .await
}

/// What one client did in the window.
struct Opened {
    connections: u64,
    latency: Latency,
}

async fn connect_against(
    args: &ConnectArgs,
    target: &Arc<Target>,
    duration: Duration,
) -> Result<super::Measured> {
    let timeout = Duration::from_secs(args.broker.request_timeout_secs);
    // Warm-up: the broker's first connection (and the client's first key derivation).
    let mut first = Connection::connect(&target.addr, timeout).await?;
    ApiVersions::fetch(&mut first).await?;
    drop(first);
    let before = Snapshot::take(target).await;
    let start = Instant::now();
    let end = start + duration;
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            let addr = target.addr.clone();
            tokio::spawn(async move {
                let mut opened = Opened {
                    connections: 0,
                    latency: Latency::new()?,
                };
                while Instant::now() < end {
                    let t0 = Instant::now();
                    let mut c = Connection::connect(&addr, timeout).await?;
                    ApiVersions::fetch(&mut c).await?;
                    drop(c);
                    opened.latency.record(t0.elapsed());
                    opened.connections += 1;
                }
                anyhow::Ok(opened)
            })
        })
        .collect();
    let mut connections = 0;
    let mut latency = Latency::new()?;
    for c in clients {
        let opened = c.await.map_err(|e| anyhow!("a client failed: {e}"))??;
        connections += opened.connections;
        latency.merge(&opened.latency)?;
    }
    let window_s = start.elapsed().as_secs_f64();
    let after = Snapshot::take(target).await;
    let mut table = target.table();
    table.row(
        "workload",
        format!(
            "{}, each: connect, log in, ApiVersions, close — again",
            count(args.clients as i64, "client")
        ),
    );
    table.row("window", format!("{window_s:.2} s"));
    table.row(
        "connections/s",
        stats::thousands(connections as f64 / window_s.max(1e-9)),
    );
    latency_rows(&mut table, &latency);
    environment_rows(&mut table, target, &before, &after);
    println!("Stillwater connection set-up benchmark");
    table.print();
    Ok(super::Measured::of(
        "connection",
        connections,
        window_s,
        &latency,
        &before,
        &after,
    ))
}

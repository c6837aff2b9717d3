//! The metrics listener's HTTP endpoints (`metrics_listen`): `/metrics` (OpenMetrics text,
//! what Prometheus scrapes), `/health` (the process serves and its data directory is not
//! failed) and `/ready` (it serves its partitions: on a cluster node, its replica of the
//! metadata caught up, it registered and unfenced, and every partition it holds a replica of
//! has a leader). `/health` and `/ready` answer 200 or 503 with the reason in one line, for
//! load balancers, orchestrators' probes and operators alike.
//!
//! Bounds: at most [`CONNECTIONS_MAX`] connections at once (more wait to be accepted), a
//! request head of at most 8 KiB read within 5 s.

use std::sync::Arc;
use std::time::Duration;

use io_backend::{Clock, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use crate::api::Broker;
use crate::metrics::Metrics;

/// Connections served at once.
const CONNECTIONS_MAX: usize = 32;

/// What the listener serves from.
pub(super) struct Endpoints {
    pub metrics: Arc<Metrics>,
    /// Metrics registered beside the broker's own (client telemetry, quotas).
    pub extra: Arc<prometheus_client::registry::Registry>,
    pub broker: Arc<Broker>,
}

impl Endpoints {
    /// Why the broker is unhealthy (`None`: healthy).
    fn unhealthy(&self) -> Option<String> {
        self.broker
            .store
            .failure()
            .map(|f| format!("data directory failed: {}", f.reason))
    }

    /// Why the broker is not ready (`None`: ready).
    fn not_ready(&self) -> Option<String> {
        self.unhealthy()
            .or_else(|| self.broker.cluster.as_ref().and_then(|c| c.not_ready()))
    }

    /// The status line's text, the content type and the body for a request's head.
    fn answer(&self, head: &[u8]) -> (&'static str, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        let path = head
            .split(|b| *b == b' ')
            .nth(1)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        if !head.starts_with(b"GET ") {
            return ("405 Method Not Allowed", TEXT, "GET only\n".into());
        }
        let probe = |why: Option<String>, good: &str| match why {
            None => ("200 OK", TEXT, format!("{good}\n")),
            Some(why) => ("503 Service Unavailable", TEXT, format!("{why}\n")),
        };
        match path.split('?').next().unwrap_or_default() {
            "/metrics" => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.render_with(&self.extra),
            ),
            "/health" => probe(self.unhealthy(), "ok"),
            "/ready" => probe(self.not_ready(), "ready"),
            _ => (
                "404 Not Found",
                TEXT,
                "try /metrics, /health or /ready\n".into(),
            ),
        }
    }
}

pub(super) async fn serve(
    listener: Box<dyn Listener>,
    endpoints: Endpoints,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let endpoints = Arc::new(endpoints);
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let Ok((mut conn, _peer)) = accepted else {
            clock.sleep(Duration::from_millis(50)).await;
            continue;
        };
        let endpoints = endpoints.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let _slot = slot;
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
            let (status, content_type, body) = endpoints.answer(&req);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
            let _ = conn.flush().await;
            let _ = conn.shutdown().await;
        });
    }
}

//! The inter-broker port's side of a link: connections accepted, their TLS handshake and hello
//! read, the caller identified (or its `JOIN` served), and the link run.
//!
//! Invariants: connections whose hello has not been read yet are at most [`UNIDENTIFIED_MAX`],
//! and at most [`UNIDENTIFIED_PER_ADDRESS_MAX`] from one address — past either, a new one is
//! closed at once — and each is closed after the I/O timeout if its handshake and hello have
//! not come: what strangers open costs a bounded number of handles and buffers, whatever they
//! send or hold open. Every refusal is counted; its log line is rate-limited.

use super::*;

use crate::conn_limit::{AddressSlot, PerAddress};
use crate::throttle::LogThrottle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections accepted and not yet identified by their hello, at most (a cluster's peers
/// identify themselves within milliseconds: more waiting at once are strangers).
pub const UNIDENTIFIED_MAX: usize = 64;
/// Of those, from one address at most (brokers on one host dial each other from it).
pub const UNIDENTIFIED_PER_ADDRESS_MAX: usize = 8;

/// What the port lets in before it knows who is calling.
pub(super) struct Admission {
    slots: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    /// One log line kind: refusals of every reason share it.
    refused: LogThrottle,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(UNIDENTIFIED_MAX)),
            per_address: Arc::new(PerAddress::new("transport.per_address")),
            refused: LogThrottle::default(),
        }
    }
}

/// A connection's place among the unidentified ones, given back once it is identified or
/// closed.
struct Unidentified {
    _slot: AddressSlot,
    _permit: OwnedSemaphorePermit,
}

impl Inner {
    /// Count a refused connection and say why, within the log's rate limit.
    fn refuse(&self, address: SocketAddr, why: &dyn std::fmt::Display) {
        self.stats
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.settings.refused_counter {
            c.inc();
        }
        if let Some(suppressed) = self.admission.refused.admit(self.env.clock.now()) {
            tracing::warn!(%address, %why, suppressed, "inter-broker connection refused");
        }
    }
}

pub(super) async fn accept_loop(inner: Arc<Inner>, listener: Box<dyn Listener>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((conn, address)) => {
                let admission = &inner.admission;
                let Some(slot) = admission
                    .per_address
                    .take(address.ip(), UNIDENTIFIED_PER_ADDRESS_MAX)
                else {
                    inner.refuse(address, &format_args!("{UNIDENTIFIED_PER_ADDRESS_MAX} connections from this address are not identified yet"));
                    drop(conn);
                    continue;
                };
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a connection past the bound is closed at once, never queued"
                )]
                let permit = admission.slots.clone().try_acquire_owned();
                let Ok(permit) = permit else {
                    inner.refuse(
                        address,
                        &format_args!("{UNIDENTIFIED_MAX} connections are not identified yet"),
                    );
                    drop(conn);
                    continue;
                };
                let place = Unidentified {
                    _slot: slot,
                    _permit: permit,
                };
                tokio::spawn(accept_one(inner.clone(), conn, address, place));
            }
            Err(error) => {
                // Running out of descriptors must not spin the loop.
                if let Some(suppressed) = inner.admission.refused.admit(inner.env.clock.now()) {
                    tracing::warn!(%error, suppressed, "inter-broker accept failed");
                }
                inner.env.clock.sleep(inner.settings.backoff_min).await;
            }
        }
    }
}

/// A dialled connection's hello says who is calling; the caller must be a known peer with a
/// smaller id (the one that dials) and the hello must be addressed to us.
async fn accept_one(
    inner: Arc<Inner>,
    conn: Box<dyn Connection>,
    address: SocketAddr,
    place: Unidentified,
) {
    let conn = match inner.settings.tls.as_ref().and_then(|t| t.inter_broker()) {
        None => conn,
        Some((acceptor, _)) => {
            let timeout = inner.settings.io_timeout;
            match inner
                .env
                .clock
                .timeout(timeout, acceptor.accept(conn))
                .await
            {
                Ok(Ok(tls)) => Box::new(tls) as Box<dyn Connection>,
                Ok(Err(error)) => {
                    inner.refuse(address, &format_args!("TLS handshake failed: {error}"));
                    return;
                }
                Err(_) => {
                    inner.refuse(
                        address,
                        &format_args!("TLS handshake not done in {timeout:?}"),
                    );
                    return;
                }
            }
        }
    };
    let (reader, writer) = tokio::io::split(conn);
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let label = address.to_string();
    let hello = inner
        .env
        .clock
        .timeout(
            inner.settings.io_timeout,
            read_frame(&mut reader, &label, inner.settings.frame_bytes_max),
        )
        .await;
    let peer = match hello {
        Err(_) => Err(LinkError::TimedOut {
            peer: label.clone(),
            timeout: inner.settings.io_timeout,
        }),
        Ok(Err(error)) => Err(error),
        Ok(Ok(body)) if body.first() == Some(&KIND_JOIN) => {
            // Answered within the I/O timeout (`peers`): it keeps its place meanwhile.
            serve_join(&inner, body, writer, &label).await;
            drop(place);
            return;
        }
        Ok(Ok(body)) => parse_hello(&inner, body, &label),
    };
    let peer = match peer {
        Ok(peer) => peer,
        Err(error) => {
            inner.refuse(address, &error);
            return;
        }
    };
    // Identified: a peer's link is bounded by the peers (one each), not by this port.
    drop(place);
    inner
        .stats
        .connections_accepted
        .fetch_add(1, Ordering::Relaxed);
    // A newer connection from the same peer wins: the old one (half-open after the peer
    // restarted, say) ends when it sees the generation move.
    let generation = {
        let mut next = 0;
        peer.generation.send_modify(|g| {
            *g += 1;
            next = *g;
        });
        next
    };
    if let Err(error) = run_link(&inner, &peer, reader, writer, generation).await {
        tracing::info!(%error, peer = peer.id, "inter-broker connection lost");
    }
}

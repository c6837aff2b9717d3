//! Calls between brokers: a request to another broker and its answer, carried by the
//! long-lived connection between them ([`super::transport`]) beside the Raft messages. The
//! layers above use them where one broker must ask another to act (the transaction
//! coordinator writing a marker on a partition another broker leads, a partition leader asking
//! the coordinator of a producer's transaction whether the partition is in it): what a call
//! carries is theirs (Kafka's own request and answer encodings), each under a service number.
//!
//! A call is answered at most once and may never be: the transport drops messages it cannot
//! queue and loses what a broken connection held, so a caller always waits under a limit and
//! treats "no answer" as "unknown" — what it asked may have been done. A request is therefore
//! one whose repetition is harmless.
//!
//! Invariant: every resource is bounded — calls awaiting an answer ([`PENDING_MAX`], past it
//! a call is refused at once), requests awaiting their server (the server's queue; past it a
//! request is dropped like a lost message) — and a pending call's slot is freed when it is
//! answered, its limit passes or its caller gives up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use io_backend::Clock;
use tokio::sync::{mpsc, oneshot};

use super::transport::{NodeId, Transport};
use crate::sync::Mutex;

/// Calls awaiting an answer on a broker, at most.
pub const PENDING_MAX: usize = 4096;

/// Which server a call is for.
pub type Service = u8;

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("broker {0} is not reachable now (no connection, or its queue is full)")]
    Unreachable(NodeId),
    #[error("no answer from broker {0} in time (what was asked may have been done)")]
    TimedOut(NodeId),
    #[error("too many calls awaiting answers on this broker")]
    Busy,
}

/// A request from another broker, for this broker's server of its service.
pub struct Call {
    pub from: NodeId,
    pub service: Service,
    pub body: Bytes,
    id: u64,
    transport: Transport,
}

impl Call {
    /// Answer the call (once; the caller may have given up already).
    pub fn answer(self, body: Bytes) {
        let message = encode(self.id, true, self.service, &body);
        if self.transport.send(self.from, message) {
            self.transport.flush();
        }
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("from", &self.from)
            .field("service", &self.service)
            .field("id", &self.id)
            .finish()
    }
}

/// The calls of one broker: those it makes and awaits, and where the requests it gets go.
pub struct Calls {
    transport: Transport,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    pending: HashMap<u64, oneshot::Sender<Bytes>>,
    servers: HashMap<Service, mpsc::Sender<Call>>,
}

/// Frees a pending call's slot however its caller ends.
struct Slot<'a> {
    calls: &'a Calls,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.calls.lock().pending.remove(&self.id);
    }
}

impl Calls {
    pub fn new(transport: Transport, clock: Arc<dyn Clock>) -> Arc<Calls> {
        Arc::new(Calls {
            transport,
            clock,
            inner: Mutex::new("replication.calls", Inner::default()),
        })
    }

    #[track_caller]
    fn lock(&self) -> crate::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask broker `to`'s server of `service`, waiting at most `limit` for its answer.
    pub async fn call(
        &self,
        to: NodeId,
        service: Service,
        body: &[u8],
        limit: Duration,
    ) -> Result<Bytes, CallError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = self.lock();
            if inner.pending.len() >= PENDING_MAX {
                return Err(CallError::Busy);
            }
            inner.next_id += 1;
            let id = inner.next_id;
            inner.pending.insert(id, tx);
            id
        };
        let _slot = Slot { calls: self, id };
        if !self.transport.send(to, encode(id, false, service, body)) {
            return Err(CallError::Unreachable(to));
        }
        self.transport.flush();
        match self.clock.timeout(limit, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) | Err(_) => Err(CallError::TimedOut(to)),
        }
    }

    /// Take the requests for `service` from now on, at most `queue` waiting at once (past it a
    /// request is dropped, as the transport drops what it cannot queue: its caller's limit
    /// passes). A second server of a service replaces the first.
    pub fn serve(&self, service: Service, queue: usize) -> mpsc::Receiver<Call> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        self.lock().servers.insert(service, tx);
        rx
    }

    /// A call's message arrived from `from` (the node's loop hands it over; never waits).
    pub(super) fn delivered(&self, from: NodeId, message: Message) {
        if message.answer {
            let waiter = self.lock().pending.remove(&message.id);
            if let Some(w) = waiter {
                let _ = w.send(message.body);
            }
            return;
        }
        let server = self.lock().servers.get(&message.service).cloned();
        let Some(server) = server else {
            tracing::debug!(
                peer = from,
                service = message.service,
                "a call for a service this broker does not serve: dropped"
            );
            return;
        };
        let call = Call {
            from,
            service: message.service,
            body: message.body,
            id: message.id,
            transport: self.transport.clone(),
        };
        // The node's loop never waits for a server: a request its server cannot take now is
        // dropped like a lost message, and its caller's limit passes.
        #[expect(
            clippy::disallowed_methods,
            reason = "the Raft loop must not wait; a dropped call is a lost message its caller times out on"
        )]
        if server.try_send(call).is_err() {
            tracing::debug!(
                peer = from,
                service = message.service,
                "the server of a call is busy: dropped"
            );
        }
    }
}

/// The top bits of a transport message's first word that mark a call (see `wire`).
pub(super) const CALL_FLAG: u64 = 1 << 61;

/// A call's message as it travels: a request or an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    id: u64,
    answer: bool,
    service: Service,
    body: Bytes,
}

/// `u64 CALL_FLAG`, `u64 id`, `u8 answer`, `u8 service`, then the body.
fn encode(id: u64, answer: bool, service: Service, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(18 + body.len());
    out.put_u64(CALL_FLAG);
    out.put_u64(id);
    out.put_u8(answer as u8);
    out.put_u8(service);
    out.put_slice(body);
    out.freeze()
}

/// Decode what `encode` made (the flag word included); `None` when it does not.
pub(super) fn decode(bytes: &[u8]) -> Option<Message> {
    if bytes.len() < 18 {
        return None;
    }
    let mut b = &bytes[8..];
    let id = b.get_u64();
    let answer = match b.get_u8() {
        0 => false,
        1 => true,
        _ => return None,
    };
    let service = b.get_u8();
    Some(Message {
        id,
        answer,
        service,
        body: Bytes::copy_from_slice(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_comes_back_as_it_went_and_garbage_does_not_decode() {
        let m = encode(42, true, 3, b"body");
        assert_eq!(
            decode(&m),
            Some(Message {
                id: 42,
                answer: true,
                service: 3,
                body: Bytes::from_static(b"body"),
            })
        );
        assert_eq!(decode(&m.slice(..10)), None);
        let mut bad = m.to_vec();
        bad[16] = 7;
        assert_eq!(decode(&Bytes::from(bad)), None);
    }
}

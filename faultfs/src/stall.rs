//! Stalled syncs: an fsync that starts while a stall is in force is answered from the staller
//! thread when the stall ends, so that the request threads stay free for every other operation
//! (the point of the fault: one stuck fsync must not be a stuck filesystem).
//!
//! Invariant: every sync request is answered exactly once — at once, by the staller when the
//! stall ends or is lifted, with EIO by a crash, or at shutdown — and it is listed in flight
//! from its request to its answer. The stall queue is bounded by the kernel's own limit on
//! requests in flight (`max_background` and the callers' threads), not by this module.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use fuser::{Errno, ReplyEmpty};

use crate::volume::{lock, Volume};

/// What a sync syncs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SyncTarget {
    File { ino: u64, fh: u64, datasync: bool },
    Dir { fh: u64 },
}

#[derive(Debug)]
struct Pending {
    id: u64,
    target: SyncTarget,
    reply: ReplyEmpty,
}

#[derive(Debug, Default)]
struct Queue {
    /// Syncs starting before this instant are held until it.
    until: Option<Instant>,
    pending: Vec<Pending>,
    /// The mount is going away: run everything now, hold nothing more.
    stopped: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Stalls {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Volume {
    /// Hold every sync that starts before `until` until then (`None` lifts the stall: held
    /// syncs go ahead at once).
    pub(crate) fn set_stall(&self, until: Option<Instant>) {
        lock(&self.stalls.queue).until = until;
        self.stalls.wake.notify_all();
    }

    /// A sync request: answered now, or held while a stall is in force.
    pub(crate) fn begin_sync(&self, target: SyncTarget, reply: ReplyEmpty) {
        let path = match target {
            SyncTarget::File { ino, .. } => self.path_of(ino).unwrap_or_default(),
            SyncTarget::Dir { fh } => match self.handle(fh) {
                Ok(crate::volume::Handle::Dir { ino, .. }) => self.path_of(ino).unwrap_or_default(),
                _ => Default::default(),
            },
        };
        let id = self.sync_started(path);
        let p = Pending { id, target, reply };
        let mut q = lock(&self.stalls.queue);
        let stalled = !q.stopped && q.until.is_some_and(|t| Instant::now() < t);
        if stalled {
            q.pending.push(p);
            drop(q);
            self.stalls.wake.notify_all();
        } else {
            drop(q);
            let began = Instant::now();
            self.finish(p);
            self.counters.sync_latency.record(began.elapsed());
        }
    }

    fn finish(&self, p: Pending) {
        let result = match p.target {
            SyncTarget::File { ino, fh, datasync } => self.sync_file(ino, fh, datasync),
            SyncTarget::Dir { fh } => match self.handle(fh) {
                Ok(crate::volume::Handle::Dir { dir, .. }) => self.sync_dir(&dir),
                Ok(_) => Err(Errno::ENOTDIR),
                Err(e) => Err(e),
            },
        };
        self.answer(p, result);
    }

    fn answer(&self, p: Pending, result: Result<(), Errno>) {
        use std::sync::atomic::Ordering::Relaxed;
        // Counted and off the in-flight list before the caller can see the answer.
        self.sync_done(p.id);
        self.counters.syncs.fetch_add(1, Relaxed);
        match result {
            Ok(()) => p.reply.ok(),
            Err(e) => {
                self.counters.syncs_failed.fetch_add(1, Relaxed);
                p.reply.error(e);
            }
        }
    }

    /// The staller thread: waits for held syncs and for their stall to end, then runs them.
    pub(crate) fn run_staller(self: Arc<Self>) {
        let mut q = lock(&self.stalls.queue);
        loop {
            let now = Instant::now();
            let held = q.until.filter(|&t| now < t && !q.stopped);
            if let (Some(t), false) = (held, q.pending.is_empty()) {
                q = self
                    .stalls
                    .wake
                    .wait_timeout(q, t - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
                continue;
            }
            if !q.pending.is_empty() {
                let due = std::mem::take(&mut q.pending);
                drop(q);
                for p in due {
                    self.finish(p);
                }
                q = lock(&self.stalls.queue);
                continue;
            }
            if q.stopped {
                return;
            }
            q = self.stalls.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stop the staller: held syncs run now, and later ones are never held.
    pub(crate) fn stop_staller(&self) {
        lock(&self.stalls.queue).stopped = true;
        self.stalls.wake.notify_all();
    }

    /// A crash: every held sync fails with EIO without writing anything (its data is about
    /// to be dropped with the rest). Returns how many there were.
    pub(crate) fn fail_stalled(&self) -> usize {
        let held = std::mem::take(&mut lock(&self.stalls.queue).pending);
        let n = held.len();
        for p in held {
            self.answer(p, Err(Errno::EIO));
        }
        n
    }
}

//! The broker's locks, all of them, through one small module: a [`Mutex`], an [`RwLock`] and an
//! [`AsyncMutex`], each with a name (`"storage.catalog"`), so that the simulator can see them.
//!
//! In one simulated thread no sync lock is ever contended: a guard is never held across an
//! `.await` (clippy's `await_holding_lock`), so no other task runs while it is held. Under
//! `--cfg madsim` these locks therefore do what contention would:
//! - a `try_*` may fail, as it can under real contention, when the simulator's fault hook
//!   says so at the point `lock.try` (a scenario's `[fault_points]` chance);
//! - an [`AsyncMutex`] acquisition passes the fault point `lock.acquire` (it may be delayed,
//!   letting other tasks take locks meanwhile);
//! - every acquisition while other locks are held records the order (held → acquired, with
//!   the code location of each acquisition); an acquisition in the order opposite to one
//!   already seen (directly or through a chain) is a lock-order inversion, told to the
//!   simulator once per pair ([`Inversion`], through [`crate::observe`]) with both locations —
//!   the kernel's lockdep, for a run ([`order`]).
//!
//! On real threads the same record is kept when the process is started with
//! `STILLWATER_LOCK_AUDIT=<file>` ([`audit`]): every order taken, every inversion, and every
//! acquisition that had to wait or a `try_*` that failed, written to that file as they happen
//! — the check, in a twin run, that the simulation's model of locks is not kinder than real
//! threads. Without it a normal build records nothing (one relaxed load per acquisition), and
//! these are the standard library's and tokio's locks with a name beside them; `lock`, `read`
//! and `write` return a `LockResult` as std's do (a poisoned lock's guard is in the error), so
//! callers keep their poison policy.
//!
//! Invariant: the order of acquisitions is recorded only for locks taken and released within
//! one synchronous stretch (the sync locks, whose guards never leave their thread); an
//! [`AsyncMutex`] held across awaits joins no order (which task holds it is not known), but
//! its acquisition may be delayed, and a wait for it is counted as contention in both worlds.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::{LockResult, PoisonError, TryLockError};

use serde::{Deserialize, Serialize};

pub mod audit;
pub mod order;

/// Two locks taken in both orders: `first` then `second` at `first_at`, and the other way
/// round at `second_at` (each "held lock's acquisition → this acquisition").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inversion {
    pub first: String,
    pub second: String,
    /// Where `first` was taken, then where `second` was taken while it was held.
    pub first_at: String,
    /// Where `second` was taken, then where `first` was taken while it was held (the chain,
    /// when the opposite order went through other locks).
    pub second_at: String,
}

/// One order of acquisition seen: `second` taken while `first` was held, at these places
/// (the first time it was seen).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Order {
    pub first: String,
    pub second: String,
    pub first_at: String,
    pub second_at: String,
}

/// What a run's locks did, in either world: the orders taken, the inversions among them,
/// and per lock how many acquisitions had to wait for it (`contended`) and how many `try_*`
/// of it failed (`try_failed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockUse {
    pub orders: Vec<Order>,
    pub inversions: Vec<Inversion>,
    pub contended: BTreeMap<String, u64>,
    pub try_failed: BTreeMap<String, u64>,
}

impl LockUse {
    /// Add another process's (or run's) use: orders and inversions each once, counts summed.
    pub fn merge(&mut self, other: LockUse) {
        for o in other.orders {
            if !self
                .orders
                .iter()
                .any(|x| x.first == o.first && x.second == o.second)
            {
                self.orders.push(o);
            }
        }
        self.orders.sort();
        let pair = |i: &Inversion| {
            let (a, b) = (i.first.clone(), i.second.clone());
            if a < b {
                (a, b)
            } else {
                (b, a)
            }
        };
        for i in other.inversions {
            if !self.inversions.iter().any(|x| pair(x) == pair(&i)) {
                self.inversions.push(i);
            }
        }
        for (to, from) in [
            (&mut self.contended, other.contended),
            (&mut self.try_failed, other.try_failed),
        ] {
            for (name, n) in from {
                *to.entry(name).or_default() += n;
            }
        }
    }
}

/// A mutual-exclusion lock with a name (std's underneath).
#[derive(Debug)]
pub struct Mutex<T> {
    name: &'static str,
    inner: std::sync::Mutex<T>,
}

/// A reader-writer lock with a name (std's underneath).
#[derive(Debug)]
pub struct RwLock<T> {
    name: &'static str,
    inner: std::sync::RwLock<T>,
}

/// A lock held across awaits, with a name (tokio's underneath).
#[derive(Debug)]
pub struct AsyncMutex<T> {
    name: &'static str,
    inner: tokio::sync::Mutex<T>,
}

/// The guard of an [`AsyncMutex`] (tokio's).
pub type AsyncMutexGuard<'a, T> = tokio::sync::MutexGuard<'a, T>;

/// The guard of a [`Mutex`].
pub struct MutexGuard<'a, T> {
    guard: std::sync::MutexGuard<'a, T>,
    _held: order::Held,
}

/// A read guard of an [`RwLock`].
pub struct RwLockReadGuard<'a, T> {
    guard: std::sync::RwLockReadGuard<'a, T>,
    _held: order::Held,
}

/// A write guard of an [`RwLock`].
pub struct RwLockWriteGuard<'a, T> {
    guard: std::sync::RwLockWriteGuard<'a, T>,
    _held: order::Held,
}

/// A std lock's result with the guard wrapped (poison kept).
fn wrap<G, W>(
    r: LockResult<G>,
    held: order::Held,
    f: impl FnOnce(G, order::Held) -> W,
) -> LockResult<W> {
    match r {
        Ok(g) => Ok(f(g, held)),
        Err(p) => Err(PoisonError::new(f(p.into_inner(), held))),
    }
}

/// Whether the simulator makes this `try_*` of `name` fail as a contended lock would
/// (counted as a failed try).
#[inline]
fn contended(name: &'static str) -> bool {
    #[cfg(madsim)]
    {
        let busy = crate::fault::delay("lock.try").is_some();
        if busy {
            order::count(name, order::Event::TryFailed);
        }
        busy
    }
    #[cfg(not(madsim))]
    {
        let _ = name;
        false
    }
}

/// A `try_*`'s guard (a poisoned lock's too), or `None`, counted as a failed try, when the
/// lock is held.
fn tried<G>(name: &'static str, r: Result<G, TryLockError<G>>) -> Option<G> {
    match r {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => {
            order::count(name, order::Event::TryFailed);
            None
        }
    }
}

/// Take a sync lock: at once if it is free, else (counted as contention) by waiting with
/// `wait`. Counting needs the first try, so it is made only when something records.
#[inline]
fn take<G>(
    name: &'static str,
    try_now: impl FnOnce() -> Result<G, TryLockError<G>>,
    wait: impl FnOnce() -> LockResult<G>,
) -> LockResult<G> {
    if !order::recording() {
        return wait();
    }
    match try_now() {
        Ok(g) => Ok(g),
        Err(TryLockError::Poisoned(p)) => Err(p),
        Err(TryLockError::WouldBlock) => {
            order::count(name, order::Event::Contended);
            wait()
        }
    }
}

impl<T> Mutex<T> {
    pub const fn new(name: &'static str, value: T) -> Mutex<T> {
        Mutex {
            name,
            inner: std::sync::Mutex::new(value),
        }
    }

    /// Take the lock (std's `lock`: the guard, or a poisoned lock's guard in the error).
    #[track_caller]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let held = order::acquire(self.name, Location::caller());
        #[expect(
            clippy::disallowed_methods,
            reason = "only to tell a wait (counted as contention) from a free lock; lock() follows"
        )]
        let taken = take(self.name, || self.inner.try_lock(), || self.inner.lock());
        wrap(taken, held, |guard, _held| MutexGuard { guard, _held })
    }

    /// Take the lock if it is free now (under simulation it may be "busy" as under load).
    #[track_caller]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if contended(self.name) {
            return None;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the one place the broker's try_lock is made; its callers say why"
        )]
        let guard = tried(self.name, self.inner.try_lock())?;
        let _held = order::acquire(self.name, Location::caller());
        Some(MutexGuard { guard, _held })
    }

    pub fn into_inner(self) -> LockResult<T> {
        self.inner.into_inner()
    }

    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        self.inner.get_mut()
    }
}

impl<T> RwLock<T> {
    pub const fn new(name: &'static str, value: T) -> RwLock<T> {
        RwLock {
            name,
            inner: std::sync::RwLock::new(value),
        }
    }

    #[track_caller]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let held = order::acquire(self.name, Location::caller());
        #[expect(
            clippy::disallowed_methods,
            reason = "only to tell a wait (counted as contention) from a free lock; read() follows"
        )]
        let taken = take(self.name, || self.inner.try_read(), || self.inner.read());
        wrap(taken, held, |guard, _held| RwLockReadGuard { guard, _held })
    }

    #[track_caller]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let held = order::acquire(self.name, Location::caller());
        #[expect(
            clippy::disallowed_methods,
            reason = "only to tell a wait (counted as contention) from a free lock; write() follows"
        )]
        let taken = take(self.name, || self.inner.try_write(), || self.inner.write());
        wrap(taken, held, |guard, _held| RwLockWriteGuard {
            guard,
            _held,
        })
    }

    /// Write-lock it if it is free now (under simulation it may be "busy" as under load).
    #[track_caller]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        if contended(self.name) {
            return None;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the one place the broker's try_write is made; its callers say why"
        )]
        let guard = tried(self.name, self.inner.try_write())?;
        let _held = order::acquire(self.name, Location::caller());
        Some(RwLockWriteGuard { guard, _held })
    }
}

impl<T> AsyncMutex<T> {
    pub fn new(name: &'static str, value: T) -> AsyncMutex<T> {
        AsyncMutex {
            name,
            inner: tokio::sync::Mutex::new(value),
        }
    }

    /// Wait for the lock (under simulation the wait may be lengthened: `lock.acquire`).
    pub async fn lock(&self) -> AsyncMutexGuard<'_, T> {
        crate::fault_point!("lock.acquire");
        if !order::recording() {
            return self.inner.lock().await;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "only to tell a wait (counted as contention) from a free lock; lock() follows"
        )]
        let tried = self.inner.try_lock();
        match tried {
            Ok(g) => g,
            Err(_) => {
                order::count(self.name, order::Event::Contended);
                self.inner.lock().await
            }
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

macro_rules! deref {
    ($guard:ident, $($mut:ident)?) => {
        impl<T> Deref for $guard<'_, T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.guard
            }
        }
        $(
            impl<T> DerefMut for $guard<'_, T> {
                fn $mut(&mut self) -> &mut T {
                    &mut self.guard
                }
            }
        )?
    };
}

deref!(MutexGuard, deref_mut);
deref!(RwLockReadGuard,);
deref!(RwLockWriteGuard, deref_mut);

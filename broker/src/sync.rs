//! The broker's locks, all of them, through one small module: a [`Mutex`], an [`RwLock`] and an
//! [`AsyncMutex`], each with a name (`"storage.catalog"`), so that the simulator can see them.
//!
//! In one simulated thread no lock is ever contended: a guard is never held across an `.await`
//! (clippy's `await_holding_lock`), so no other task runs while it is held. Under `--cfg
//! madsim` these locks therefore do what contention would:
//! - a `try_*` may fail, as it can under real contention, when the simulator's fault hook
//!   says so at the point `lock.try` (a scenario's `[fault_points]` chance);
//! - an [`AsyncMutex`] acquisition passes the fault point `lock.acquire` (it may be delayed,
//!   letting other tasks take locks meanwhile);
//! - every acquisition while other locks are held records the order (held → acquired, with
//!   the code location of each acquisition); an acquisition in the order opposite to one
//!   already seen (directly or through a chain) is a lock-order inversion, told to the
//!   simulator once per pair ([`Inversion`], through [`crate::observe`]) with both locations —
//!   the kernel's lockdep, for a run.
//!
//! In a normal build they are the standard library's and tokio's locks with a name beside
//! them; `lock`, `read` and `write` return a `LockResult` as std's do (a poisoned lock's guard
//! is in the error), so callers keep their poison policy.
//!
//! Invariant: the order of acquisitions is recorded only for locks taken and released within
//! one synchronous stretch (the sync locks); an [`AsyncMutex`] held across awaits joins no
//! order (which task holds it is not known), but its acquisition may be delayed.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::{LockResult, PoisonError, TryLockError};

/// Two locks taken in both orders: `first` then `second` at `first_at`, and the other way
/// round at `second_at` (each "held lock's acquisition → this acquisition").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inversion {
    pub first: &'static str,
    pub second: &'static str,
    /// Where `first` was taken, then where `second` was taken while it was held.
    pub first_at: String,
    /// Where `second` was taken, then where `first` was taken while it was held (the chain,
    /// when the opposite order went through other locks).
    pub second_at: String,
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

/// Whether the simulator makes this `try_*` fail as a contended lock would.
#[inline]
fn contended() -> bool {
    #[cfg(madsim)]
    {
        crate::fault::delay("lock.try").is_some()
    }
    #[cfg(not(madsim))]
    {
        false
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
        wrap(self.inner.lock(), held, |guard, _held| MutexGuard {
            guard,
            _held,
        })
    }

    /// Take the lock if it is free now (under simulation it may be "busy" as under load).
    #[track_caller]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if contended() {
            return None;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the one place the broker's try_lock is made; its callers say why"
        )]
        let tried = self.inner.try_lock();
        let guard = match tried {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
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
        wrap(self.inner.read(), held, |guard, _held| RwLockReadGuard {
            guard,
            _held,
        })
    }

    #[track_caller]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let held = order::acquire(self.name, Location::caller());
        wrap(self.inner.write(), held, |guard, _held| RwLockWriteGuard {
            guard,
            _held,
        })
    }

    /// Write-lock it if it is free now (under simulation it may be "busy" as under load).
    #[track_caller]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        if contended() {
            return None;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the one place the broker's try_write is made; its callers say why"
        )]
        let tried = self.inner.try_write();
        let guard = match tried {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
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
        self.inner.lock().await
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

/// The order of acquisitions (simulation only; nothing in a normal build).
#[cfg(not(madsim))]
mod order {
    pub struct Held;

    #[inline(always)]
    pub fn acquire(_: &'static str, _: &'static std::panic::Location<'static>) -> Held {
        Held
    }
}

#[cfg(madsim)]
mod order {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::panic::Location;

    use crate::sync::Inversion;

    type Site = &'static Location<'static>;

    /// One lock this thread holds.
    struct Holding {
        name: &'static str,
        at: Site,
        token: u64,
    }

    #[derive(Default)]
    struct State {
        held: Vec<Holding>,
        next_token: u64,
        /// held → acquired, with where each was taken the first time the order was seen.
        edges: BTreeMap<(&'static str, &'static str), (Site, Site)>,
        reported: BTreeSet<(&'static str, &'static str)>,
    }

    thread_local! {
        // Per thread: each simulated run has a thread of its own.
        static STATE: RefCell<State> = RefCell::default();
    }

    /// Released when dropped (with its guard).
    pub struct Held(u64);

    impl Drop for Held {
        fn drop(&mut self) {
            let token = self.0;
            let _ = STATE.try_with(|s| {
                let mut s = s.borrow_mut();
                if let Some(i) = s.held.iter().rposition(|h| h.token == token) {
                    s.held.remove(i);
                }
            });
        }
    }

    fn site(at: Site) -> String {
        format!("{}:{}", at.file(), at.line())
    }

    /// A chain of recorded orders from `from` to `to`, if there is one.
    fn path(
        edges: &BTreeMap<(&'static str, &'static str), (Site, Site)>,
        from: &'static str,
        to: &'static str,
    ) -> Option<Vec<(&'static str, &'static str)>> {
        let mut stack = vec![(from, Vec::new())];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            if at == to {
                return Some(trail);
            }
            if !seen.insert(at) {
                continue;
            }
            for (&(a, b), _) in edges.range((at, "")..) {
                if a != at {
                    break;
                }
                let mut t = trail.clone();
                t.push((a, b));
                stack.push((b, t));
            }
        }
        None
    }

    pub fn acquire(name: &'static str, at: Site) -> Held {
        let mut found = Vec::new();
        let token = STATE.with(|s| {
            let mut s = s.borrow_mut();
            let held: Vec<(&'static str, Site)> = s
                .held
                .iter()
                .filter(|h| h.name != name)
                .map(|h| (h.name, h.at))
                .collect();
            for (before, before_at) in held {
                if s.edges.contains_key(&(before, name)) {
                    continue;
                }
                // The opposite order, seen before (directly or through other locks)?
                if let Some(chain) = path(&s.edges, name, before) {
                    let pair = if before < name {
                        (before, name)
                    } else {
                        (name, before)
                    };
                    if s.reported.insert(pair) {
                        let second_at = chain
                            .iter()
                            .map(|e| {
                                let (a_at, b_at) = s.edges[e];
                                format!("{} at {} then {} at {}", e.0, site(a_at), e.1, site(b_at))
                            })
                            .collect::<Vec<_>>()
                            .join(", then ");
                        found.push(Inversion {
                            first: before,
                            second: name,
                            first_at: format!(
                                "{before} at {} then {name} at {}",
                                site(before_at),
                                site(at)
                            ),
                            second_at,
                        });
                    }
                }
                s.edges.insert((before, name), (before_at, at));
            }
            s.next_token += 1;
            let token = s.next_token;
            s.held.push(Holding { name, at, token });
            token
        });
        for inversion in found {
            tracing::error!(?inversion, "lock-order inversion");
            crate::observe::emit(|| inversion);
        }
        Held(token)
    }
}

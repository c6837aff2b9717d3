//! The order locks are taken in, the kernel's lockdep for a run: each thread keeps the locks it
//! holds; an acquisition while others are held records "held → acquired" (with where each was
//! taken, the first time the order is seen) in one graph; an acquisition whose opposite order
//! is already in the graph, directly or through a chain, is a lock-order inversion, told once
//! per pair with both places. Also counted per lock: acquisitions that had to wait, and `try_*`
//! that failed.
//!
//! Where it lives: under `--cfg madsim`, per thread (each simulated run has a thread of its
//! own), and always on, the inversions told to the simulator through [`crate::observe`]. In a
//! normal build only when [`super::audit`] was started: one graph for the process, shared by
//! its threads, and every new order, inversion and count written to the audit file.
//!
//! Invariant: a sync guard never leaves the thread that took it (std's guards are `!Send`), so
//! a thread's list of held locks is exactly what it holds.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::Location;

use super::{Inversion, LockUse, Order};

pub(super) type Site = &'static Location<'static>;
type Pair = (&'static str, &'static str);

fn site(at: Site) -> String {
    format!("{}:{}", at.file(), at.line())
}

/// What a lock did that is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An acquisition that found it held and waited.
    Contended,
    /// A `try_*` that found it held (or, under simulation, was told it was).
    TryFailed,
}

/// The orders seen and the pairs already told as inverted.
#[derive(Default)]
pub(super) struct Graph {
    edges: BTreeMap<Pair, (Site, Site)>,
    reported: BTreeSet<Pair>,
    contended: BTreeMap<&'static str, u64>,
    try_failed: BTreeMap<&'static str, u64>,
}

impl Graph {
    /// A chain of recorded orders from `from` to `to`, if there is one.
    fn path(&self, from: &'static str, to: &'static str) -> Option<Vec<Pair>> {
        let mut stack = vec![(from, Vec::new())];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            if at == to {
                return Some(trail);
            }
            if !seen.insert(at) {
                continue;
            }
            for (&(a, b), _) in self.edges.range((at, "")..) {
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

    /// Record that `name` was taken at `at` while `before` (taken at `before_at`) was held.
    /// `None` if the order was known; else the new order, and the inversion it makes if the
    /// opposite order was seen before (once per pair).
    fn add(
        &mut self,
        before: &'static str,
        before_at: Site,
        name: &'static str,
        at: Site,
    ) -> Option<(Order, Option<Inversion>)> {
        if self.edges.contains_key(&(before, name)) {
            return None;
        }
        let mut inversion = None;
        if let Some(chain) = self.path(name, before) {
            let pair = if before < name {
                (before, name)
            } else {
                (name, before)
            };
            if self.reported.insert(pair) {
                let second_at = chain
                    .iter()
                    .map(|e| {
                        let (a_at, b_at) = self.edges[e];
                        format!("{} at {} then {} at {}", e.0, site(a_at), e.1, site(b_at))
                    })
                    .collect::<Vec<_>>()
                    .join(", then ");
                inversion = Some(Inversion {
                    first: before.to_string(),
                    second: name.to_string(),
                    first_at: format!(
                        "{before} at {} then {name} at {}",
                        site(before_at),
                        site(at)
                    ),
                    second_at,
                });
            }
        }
        self.edges.insert((before, name), (before_at, at));
        let order = Order {
            first: before.to_string(),
            second: name.to_string(),
            first_at: site(before_at),
            second_at: site(at),
        };
        Some((order, inversion))
    }

    /// Count one event of `name`; its new count.
    fn count(&mut self, name: &'static str, event: Event) -> u64 {
        let counts = match event {
            Event::Contended => &mut self.contended,
            Event::TryFailed => &mut self.try_failed,
        };
        let n = counts.entry(name).or_default();
        *n += 1;
        *n
    }

    fn take(&mut self) -> LockUse {
        let g = std::mem::take(self);
        let named = |m: BTreeMap<&'static str, u64>| {
            m.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>()
        };
        LockUse {
            orders: g
                .edges
                .iter()
                .map(|(&(a, b), &(a_at, b_at))| Order {
                    first: a.to_string(),
                    second: b.to_string(),
                    first_at: site(a_at),
                    second_at: site(b_at),
                })
                .collect(),
            inversions: Vec::new(),
            contended: named(g.contended),
            try_failed: named(g.try_failed),
        }
    }
}

/// One lock this thread holds.
struct Holding {
    name: &'static str,
    at: Site,
    token: u64,
}

#[derive(Default)]
struct Thread {
    held: Vec<Holding>,
    next_token: u64,
    /// The orders this thread already put in the graph (a normal build's graph is shared:
    /// this spares its lock on every nested acquisition).
    known: BTreeSet<Pair>,
}

thread_local! {
    static THREAD: RefCell<Thread> = RefCell::default();
}

#[cfg(madsim)]
thread_local! {
    // Per thread: each simulated run has a thread of its own.
    static GRAPH: RefCell<Graph> = RefCell::default();
}

/// The graph, for `f` (the run's, under simulation; the process's, in a normal build).
fn with_graph<R>(f: impl FnOnce(&mut Graph) -> R) -> R {
    #[cfg(madsim)]
    {
        GRAPH.with(|g| f(&mut g.borrow_mut()))
    }
    #[cfg(not(madsim))]
    {
        static GRAPH: std::sync::LazyLock<std::sync::Mutex<Graph>> =
            std::sync::LazyLock::new(Default::default);
        f(&mut GRAPH.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Whether acquisitions are recorded: always under simulation; in a normal build once the
/// audit has started.
#[inline(always)]
pub fn recording() -> bool {
    cfg!(madsim) || super::audit::on()
}

/// Released when dropped (with its guard); 0 when nothing was recorded.
pub struct Held(u64);

impl Drop for Held {
    fn drop(&mut self) {
        let token = self.0;
        if token == 0 {
            return;
        }
        let _ = THREAD.try_with(|t| {
            let mut t = t.borrow_mut();
            if let Some(i) = t.held.iter().rposition(|h| h.token == token) {
                t.held.remove(i);
            }
        });
    }
}

/// `name` is being taken at `at`: record its order after every lock this thread holds.
#[inline]
pub fn acquire(name: &'static str, at: Site) -> Held {
    if !recording() {
        return Held(0);
    }
    let mut new = Vec::new();
    let token = THREAD
        .try_with(|t| {
            let mut t = t.borrow_mut();
            // Nothing allocated for an order already known (nearly every acquisition).
            let Thread { held, known, .. } = &mut *t;
            for h in held.iter().filter(|h| h.name != name) {
                if known.insert((h.name, name)) {
                    if let Some(found) = with_graph(|g| g.add(h.name, h.at, name, at)) {
                        new.push(found);
                    }
                }
            }
            t.next_token += 1;
            let token = t.next_token;
            t.held.push(Holding { name, at, token });
            token
        })
        .unwrap_or(0);
    for (order, inversion) in new {
        super::audit::order(&order);
        if let Some(inversion) = inversion {
            tracing::error!(?inversion, "lock-order inversion");
            super::audit::inversion(&inversion);
            crate::observe::emit(|| inversion);
        }
    }
    Held(token)
}

/// Count an event of `name` (nothing unless recording).
#[inline]
pub fn count(name: &'static str, event: Event) {
    if !recording() {
        return;
    }
    let n = with_graph(|g| g.count(name, event));
    super::audit::count(name, event, n);
}

/// What this run's locks did so far, taken (the graph starts over): under simulation the
/// run's, in a normal build the process's. Inversions are not in it: they were told as they
/// were found.
pub fn take() -> LockUse {
    THREAD.with(|t| t.borrow_mut().known.clear());
    with_graph(Graph::take)
}

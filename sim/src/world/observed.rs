//! What the brokers tell the simulator of their own state (`broker::observe`): each time a
//! broker published its replica of the security metadata, with when — for the security
//! checker, which judges every login and request against the point of the metadata log its
//! broker had applied; and each membership change a replica applied and each move record the
//! metadata applied — for the checker of moves ([`crate::checks::moves`]).

use std::cell::RefCell;

use broker::controller::moves::MoveApplied;
use broker::controller::SecurityPublished;
use broker::replication::node::MembershipApplied;
use tokio::time::Instant;

use crate::history::Publication;

pub use crate::history::MovesObserved;

thread_local! {
    /// This run's publications (a run is one thread: madsim's).
    static PUBLISHED: RefCell<Vec<(Instant, SecurityPublished)>> = const { RefCell::new(Vec::new()) };
    /// This run's membership changes and move records, as applied.
    static MOVES: RefCell<MovesObserved> = RefCell::new(Default::default());
    /// The lock-order inversions the brokers' locks told of (`broker::sync`).
    static INVERSIONS: RefCell<Vec<broker::sync::Inversion>> = const { RefCell::new(Vec::new()) };
}

/// Start recording what the brokers of this thread's run publish.
pub fn install() {
    PUBLISHED.with(|p| p.borrow_mut().clear());
    MOVES.with(|m| *m.borrow_mut() = Default::default());
    // What the locks of an earlier run on this thread did is not this run's.
    let _ = broker::sync::order::take();
    broker::observe::set_hook(|what| {
        if let Some(p) = what.downcast_ref::<SecurityPublished>() {
            PUBLISHED.with(|all| all.borrow_mut().push((Instant::now(), p.clone())));
        } else if let Some(m) = what.downcast_ref::<MembershipApplied>() {
            MOVES.with(|all| all.borrow_mut().memberships.push(m.clone()));
        } else if let Some(m) = what.downcast_ref::<MoveApplied>() {
            MOVES.with(|all| all.borrow_mut().moves.push(m.clone()));
        } else if let Some(i) = what.downcast_ref::<broker::sync::Inversion>() {
            INVERSIONS.with(|all| all.borrow_mut().push(i.clone()));
        }
    });
}

/// Stop recording; what was published, in order, timed from `start` (the run's clock origin).
pub fn take(start: Instant) -> Vec<Publication> {
    broker::observe::clear_hook();
    PUBLISHED
        .with(|p| std::mem::take(&mut *p.borrow_mut()))
        .into_iter()
        .map(|(at, p)| Publication {
            broker: (p.node as usize).saturating_sub(1),
            incarnation: p.incarnation,
            at_s: if at >= start {
                (at - start).as_secs_f64()
            } else {
                -(start - at).as_secs_f64()
            },
            position: p.position,
            changes: p.changes,
        })
        .collect()
}

/// The first joint configuration applied among the memberships observed from the `from`-th
/// on: the broker that applied it (the first to: its group's leader, as a rule) and how many
/// memberships were observed by then.
pub fn joint_entered(from: usize) -> (usize, Option<u64>) {
    MOVES.with(|m| {
        let m = m.borrow();
        let first = m.memberships[from.min(m.memberships.len())..]
            .iter()
            .find(|a| !a.members.outgoing.is_empty())
            .map(|a| a.node);
        (m.memberships.len(), first)
    })
}

/// The membership changes and move records observed in this thread's run (taken once).
pub fn take_moves() -> MovesObserved {
    MOVES.with(|m| std::mem::take(&mut *m.borrow_mut()))
}

/// The lock-order inversions told in this thread's run (taken once).
pub fn take_inversions() -> Vec<broker::sync::Inversion> {
    INVERSIONS.with(|i| std::mem::take(&mut *i.borrow_mut()))
}

//! What the brokers tell the simulator of their own state (`broker::observe`): each time a
//! broker published its replica of the security metadata, with when — for the security
//! checker, which judges every login and request against the point of the metadata log its
//! broker had applied.

use std::cell::RefCell;

use broker::controller::SecurityPublished;
use tokio::time::Instant;

use crate::history::Publication;

thread_local! {
    /// This run's publications (a run is one thread: madsim's).
    static PUBLISHED: RefCell<Vec<(Instant, SecurityPublished)>> = const { RefCell::new(Vec::new()) };
}

/// Start recording what the brokers of this thread's run publish.
pub fn install() {
    PUBLISHED.with(|p| p.borrow_mut().clear());
    broker::observe::set_hook(|what| {
        if let Some(p) = what.downcast_ref::<SecurityPublished>() {
            PUBLISHED.with(|all| all.borrow_mut().push((Instant::now(), p.clone())));
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

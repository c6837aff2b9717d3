//! The broker's locks as the simulator sees them (`broker::sync`): two locks taken in both
//! orders are told once, as a lock-order inversion with where each order was taken, also when
//! the opposite order went through a third lock; one order alone is no inversion; a `try_lock`
//! fails when the fault hook says the lock is contended.
#![cfg(madsim)]

use std::cell::RefCell;
use std::rc::Rc;

use broker::sync::{Inversion, Mutex, RwLock};

fn recording() -> Rc<RefCell<Vec<Inversion>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    broker::observe::set_hook(move |what| {
        if let Some(i) = what.downcast_ref::<Inversion>() {
            sink.borrow_mut().push(i.clone());
        }
    });
    seen
}

#[test]
fn locks_taken_in_both_orders_are_told_once_with_both_places() {
    // Each test thread has its own record of orders.
    std::thread::spawn(|| {
        let seen = recording();
        let (a, b) = (Mutex::new("test.a", 0), RwLock::new("test.b", 0));
        {
            let _a = a.lock().unwrap();
            let _b = b.read().unwrap();
        }
        {
            let _a = a.lock().unwrap();
            let _b = b.write().unwrap();
        }
        assert!(seen.borrow().is_empty(), "one order is no inversion");
        for _ in 0..2 {
            let _b = b.write().unwrap();
            let _a = a.lock().unwrap();
        }
        broker::observe::clear_hook();
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            (seen[0].first.as_str(), seen[0].second.as_str()),
            ("test.b", "test.a")
        );
        assert!(seen[0].first_at.contains("lock_order.rs"), "{:?}", seen[0]);
        assert!(seen[0].second_at.starts_with("test.a at "), "{:?}", seen[0]);
        // Every order taken is kept for the fidelity table, each once.
        let used = broker::sync::order::take();
        let pairs: Vec<(&str, &str)> = used
            .orders
            .iter()
            .map(|o| (o.first.as_str(), o.second.as_str()))
            .collect();
        assert_eq!(pairs, vec![("test.a", "test.b"), ("test.b", "test.a")]);
    })
    .join()
    .unwrap();
}

#[test]
fn an_inversion_through_a_third_lock_is_found() {
    std::thread::spawn(|| {
        let seen = recording();
        let (a, b, c) = (
            Mutex::new("test.a", 0),
            Mutex::new("test.b", 0),
            Mutex::new("test.c", 0),
        );
        {
            let _a = a.lock().unwrap();
            let _b = b.lock().unwrap();
        }
        {
            let _b = b.lock().unwrap();
            let _c = c.lock().unwrap();
        }
        {
            let _c = c.lock().unwrap();
            let _a = a.lock().unwrap();
        }
        broker::observe::clear_hook();
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].second_at.contains("test.a at") && seen[0].second_at.contains("then test.c"),
            "{:?}",
            seen[0]
        );
    })
    .join()
    .unwrap();
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "what try_lock does is the question here"
)]
fn try_lock_fails_when_the_simulator_says_the_lock_is_contended() {
    std::thread::spawn(|| {
        let m = Mutex::new("test.m", 0);
        assert!(m.try_lock().is_some(), "no hook: free");
        broker::fault::set_hook(|point| (point == "lock.try").then_some(std::time::Duration::ZERO));
        assert!(m.try_lock().is_none(), "contended");
        broker::fault::clear_hook();
        let held = m.lock().unwrap();
        assert!(m.try_lock().is_none(), "really held");
        drop(held);
        assert!(m.try_lock().is_some());
        // Both failed tries are counted, for the fidelity table to hold against real threads.
        let used = broker::sync::order::take();
        assert_eq!(used.try_failed.get("test.m"), Some(&2), "{used:?}");
        assert!(
            used.contended.is_empty(),
            "a sync lock never waits here: {used:?}"
        );
    })
    .join()
    .unwrap();
}

//! The lock audit on real threads (`STILLWATER_LOCK_AUDIT`): the check, in a twin run, that
//! the simulation's model of the broker's locks is not kinder than real threads. Its own test
//! process: the audit is started once per process. Volume: four locks, two threads, a second.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use broker::sync::{audit, Mutex, RwLock};

#[test]
fn real_threads_record_their_orders_an_inversion_and_a_wait_in_the_audit_file() {
    let dir = std::env::temp_dir().join(format!("lock-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.locks");
    let _ = std::fs::remove_file(&path);
    let a = Arc::new(Mutex::new("test.a", 0u32));
    let b = Arc::new(RwLock::new("test.b", 0u32));
    // Before the audit starts nothing is recorded.
    {
        let _b = b.write().unwrap();
        let _a = a.lock().unwrap();
    }
    audit::start(&path).unwrap();
    assert!(audit::start(&path).is_err(), "a second start is refused");

    // One thread takes a then b; another, later, b then a (no deadlock: one after the other).
    let (a1, b1) = (a.clone(), b.clone());
    std::thread::spawn(move || {
        let _a = a1.lock().unwrap();
        let _b = b1.read().unwrap();
    })
    .join()
    .unwrap();
    let (a2, b2) = (a.clone(), b.clone());
    std::thread::spawn(move || {
        let _b = b2.write().unwrap();
        let _a = a2.lock().unwrap();
    })
    .join()
    .unwrap();

    // A wait: one thread holds a while the other asks for it.
    let held = Arc::new(Barrier::new(2));
    let (a3, h3) = (a.clone(), held.clone());
    let holder = std::thread::spawn(move || {
        let mut g = a3.lock().unwrap();
        h3.wait();
        std::thread::sleep(Duration::from_millis(200));
        *g += 1;
    });
    held.wait();
    *a.lock().unwrap() += 1;
    holder.join().unwrap();
    // A try that fails on a held lock.
    let g = b.write().unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "the failed try is what is tested"
    )]
    let tried = b.try_write();
    assert!(tried.is_none());
    drop(g);

    // The counts are written once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let text = std::fs::read_to_string(&path).unwrap();
    let u = audit::parse(&text);
    let pairs: Vec<(&str, &str)> = u
        .orders
        .iter()
        .map(|o| (o.first.as_str(), o.second.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![("test.a", "test.b"), ("test.b", "test.a")],
        "{text}"
    );
    assert!(u.orders[0].first_at.contains("lock_audit.rs:"), "{text}");
    assert_eq!(u.inversions.len(), 1, "{text}");
    let i = &u.inversions[0];
    assert_eq!((i.first.as_str(), i.second.as_str()), ("test.b", "test.a"));
    assert!(
        i.first_at.contains("lock_audit.rs") && i.second_at.contains("lock_audit.rs"),
        "both places named: {i:?}"
    );
    assert_eq!(u.contended.get("test.a"), Some(&1), "{text}");
    assert_eq!(u.try_failed.get("test.b"), Some(&1), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The lock audit of a real process: with `STILLWATER_LOCK_AUDIT=<file>` the broker records
//! what its locks do on real threads ([`super::order`]) and appends it to that file as it
//! happens, one line each, tab-separated:
//! - `start` when the process starts recording (a restarted broker appends after it);
//! - `order  FIRST  SECOND  FIRST_AT  SECOND_AT` the first time SECOND is taken while FIRST is
//!   held;
//! - `inversion  FIRST  SECOND  FIRST_AT  SECOND_AT` when an order is seen both ways;
//! - `contended NAME N` and `try-failed NAME N`: this start's totals, written once a second
//!   while they change.
//!
//! [`parse`] reads such a file back into a [`LockUse`] (a twin run's runner does, to hold the
//! real threads' orders and contention against the simulation's).
//!
//! Invariant: a line is written whole by one `write` on a file opened for appending, so a
//! process killed at any moment leaves only whole lines; nothing is written unless [`start`]
//! was called (never under simulation).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use super::order::Event;
use super::{Inversion, LockUse, Order};

static ON: AtomicBool = AtomicBool::new(false);
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
/// This start's counts, as the writer last wrote them and as they are now.
static COUNTS: Mutex<BTreeMap<(&'static str, bool), u64>> = Mutex::new(BTreeMap::new());

/// The environment variable that names the audit file.
pub const ENV: &str = "STILLWATER_LOCK_AUDIT";

/// Whether the audit is recording.
#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Start recording to `path` (appended to): from now on every lock acquisition of this
/// process is recorded. A thread writes the counts once a second while they change.
#[cfg(not(madsim))]
pub fn start(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if FILE.set(Mutex::new(file)).is_err() {
        return Err(std::io::Error::other("the lock audit was started already"));
    }
    line("start\n");
    ON.store(true, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("lock-audit".into())
        .spawn(|| {
            let mut written = BTreeMap::new();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let now = lock(&COUNTS).clone();
                for (&(name, tried), &n) in &now {
                    if written.get(&(name, tried)) != Some(&n) {
                        let kind = if tried { "try-failed" } else { "contended" };
                        line(&format!("{kind}\t{name}\t{n}\n"));
                    }
                }
                written = now;
            }
        })?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn line(text: &str) {
    if let Some(f) = FILE.get() {
        // One write of the whole line; a failed write loses that line, never the broker.
        let _ = lock(f).write_all(text.as_bytes());
    }
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n'], " ")
}

/// A line of two locks and the places they were taken (`order` or `inversion`).
fn pair_line(kind: &str, first: &str, second: &str, first_at: &str, second_at: &str) {
    if on() {
        let (a_at, b_at) = (clean(first_at), clean(second_at));
        line(&format!("{kind}\t{first}\t{second}\t{a_at}\t{b_at}\n"));
    }
}

pub(super) fn order(o: &Order) {
    pair_line("order", &o.first, &o.second, &o.first_at, &o.second_at);
}

pub(super) fn inversion(i: &Inversion) {
    pair_line("inversion", &i.first, &i.second, &i.first_at, &i.second_at);
}

pub(super) fn count(name: &'static str, event: Event, n: u64) {
    if on() {
        lock(&COUNTS).insert((name, event == Event::TryFailed), n);
    }
}

/// An audit file read back: the orders and inversions each once (the first seen), and the
/// counts summed over the process's starts (each start's last total).
pub fn parse(text: &str) -> LockUse {
    let mut out = LockUse::default();
    let (mut orders, mut inverted) = (BTreeSet::new(), BTreeSet::new());
    let mut done: Vec<BTreeMap<(bool, String), u64>> = Vec::new();
    let mut this: BTreeMap<(bool, String), u64> = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        match f.as_slice() {
            ["start"] => done.push(std::mem::take(&mut this)),
            ["order", a, b, a_at, b_at] if orders.insert((a.to_string(), b.to_string())) => {
                out.orders.push(Order {
                    first: a.to_string(),
                    second: b.to_string(),
                    first_at: a_at.to_string(),
                    second_at: b_at.to_string(),
                });
            }
            ["inversion", a, b, a_at, b_at] => {
                let pair = if a < b { (*a, *b) } else { (*b, *a) };
                if inverted.insert(pair) {
                    out.inversions.push(Inversion {
                        first: a.to_string(),
                        second: b.to_string(),
                        first_at: a_at.to_string(),
                        second_at: b_at.to_string(),
                    });
                }
            }
            [kind @ ("contended" | "try-failed"), name, n] => {
                if let Ok(n) = n.parse::<u64>() {
                    let key = (*kind == "try-failed", name.to_string());
                    let v = this.entry(key).or_default();
                    *v = (*v).max(n);
                }
            }
            // A line cut short or of a later version: skipped.
            _ => {}
        }
    }
    done.push(this);
    for ((tried, name), n) in done.into_iter().flatten() {
        let to = if tried {
            &mut out.try_failed
        } else {
            &mut out.contended
        };
        *to.entry(name).or_default() += n;
    }
    out.orders.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_file_reads_back_with_each_order_once_and_counts_summed_over_starts() {
        let text = "start\n\
            order\ta\tb\tx.rs:1\tx.rs:2\n\
            contended\ta\t3\n\
            contended\ta\t7\n\
            start\n\
            order\ta\tb\tx.rs:1\tx.rs:2\n\
            order\tb\ta\ty.rs:5\ty.rs:6\n\
            inversion\tb\ta\tb at y.rs:5 then a at y.rs:6\ta at x.rs:1 then b at x.rs:2\n\
            inversion\ta\tb\tsame pair\tagain\n\
            contended\ta\t2\n\
            try-failed\tb\t1\n\
            contended\tcut";
        let u = parse(text);
        assert_eq!(u.orders.len(), 2);
        assert_eq!(u.orders[0].first, "a");
        assert_eq!(u.orders[1].first, "b");
        assert_eq!(u.inversions.len(), 1);
        assert_eq!(u.inversions[0].first, "b");
        assert_eq!(u.contended.get("a"), Some(&9));
        assert_eq!(u.try_failed.get("b"), Some(&1));
    }
}

//! The Stillwater broker: a Kafka-compatible message broker.
//!
//! Code map: [`server`] (listener, connections within the [`memory`] budget) → [`protocol`]
//! (framing, decoding, versions) → [`api`] (what each request does; [`records`] checks every
//! produced record, [`compression`] applies a topic's codec, [`batch`] is the record batch
//! format) → [`storage`] (a data directory: the
//! [`catalog`] of topics, partition logs, and the group-commit pipeline that is the only writer
//! of their files, over disk operations with deadlines) → the `io-backend` traits. [`config`],
//! [`metrics`] and [`throttle`] serve all. [`replication`] holds the parts of the replicated
//! cluster built so far (the transport between brokers, Raft's wire format, offset
//! translation, deterministic election timeouts).
//!
//! Architecture invariant: nothing here touches `std::fs`, `std::net` or the system clock (the
//! configuration file read at start-up is the one exception); all of it goes through the
//! [`io_backend::Env`] handed to [`server::start`], so the same code runs under simulation.

pub mod alloc;
pub mod api;
pub mod batch;
pub mod broker_configs;
pub mod compression;
pub mod config;
pub mod conn_limit;
pub mod controller;
pub mod coverage;
pub mod features;
pub mod group;
pub mod memory;
pub mod metrics;
pub mod observe;
pub mod producer_state;
pub mod protocol;
pub mod quota;
pub mod records;
pub mod replication;
pub mod schema;
pub mod security;
pub mod server;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod throttle;
pub mod tools;
pub mod topic_config;
pub mod txn;
pub mod txn_marker;

#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: alloc::LazyLargeAlloc = alloc::LazyLargeAlloc;

/// A named point in a critical section where the simulator may delay or yield (to create lock
/// contention and unusual interleavings). Use it only in async code, never while holding a lock.
/// It compiles to nothing in a normal build; under `--cfg madsim` it asks [`fault::delay`].
#[cfg(not(madsim))]
#[macro_export]
macro_rules! fault_point {
    ($name:literal) => {};
}

#[cfg(madsim)]
#[macro_export]
macro_rules! fault_point {
    ($name:literal) => {
        if let Some(pause) = $crate::fault::delay($name) {
            ::tokio::time::sleep(pause).await;
        }
    };
}

/// Work done here costs CPU time: `units` of `kind` (`"request"`, `"raft"`, `"append"`,
/// `"bytes"`). It compiles to nothing in a normal build (the units are still evaluated, so
/// give it plain counts); under `--cfg madsim` the task waits as long as [`fault::cpu`] says
/// the node's processors take for that work — an overloaded node falls behind, as a real one
/// does. Use it only in async code, never while holding a lock.
#[cfg(not(madsim))]
#[macro_export]
macro_rules! cpu_work {
    ($kind:literal, $units:expr) => {{
        let _units: u64 = $units as u64;
    }};
}

#[cfg(madsim)]
#[macro_export]
macro_rules! cpu_work {
    ($kind:literal, $units:expr) => {{
        let units: u64 = $units as u64;
        if let Some(busy) = $crate::fault::cpu($kind, units) {
            ::tokio::time::sleep(busy).await;
        }
    }};
}

/// The simulator's hooks behind [`fault_point!`] and [`cpu_work!`]: only in `--cfg madsim`
/// builds.
#[cfg(madsim)]
pub mod fault {
    use std::cell::RefCell;
    use std::time::Duration;

    type Hook = Box<dyn Fn(&'static str) -> Option<Duration>>;
    type CpuHook = Box<dyn Fn(&'static str, u64) -> Option<Duration>>;

    thread_local! {
        // Per thread: each simulated run has its own thread, so runs never share a hook.
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
        static CPU_HOOK: RefCell<Option<CpuHook>> = const { RefCell::new(None) };
    }

    /// Install the function that says how long `units` of work of a kind keep the calling
    /// task (its node's processors, shared by its tasks); none: work costs no time.
    pub fn set_cpu_hook(hook: Option<impl Fn(&'static str, u64) -> Option<Duration> + 'static>) {
        CPU_HOOK.with(|h| *h.borrow_mut() = hook.map(|f| Box::new(f) as CpuHook));
    }

    /// How long `units` of `kind` keep the calling task (none without a hook or for no work).
    pub fn cpu(kind: &'static str, units: u64) -> Option<Duration> {
        if units == 0 {
            return None;
        }
        CPU_HOOK.with(|h| h.borrow().as_ref().and_then(|f| f(kind, units)))
    }

    /// Install the function that decides, per fault point hit, how long to pause there.
    pub fn set_hook(hook: impl Fn(&'static str) -> Option<Duration> + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    }

    pub fn clear_hook() {
        HOOK.with(|h| *h.borrow_mut() = None);
    }

    /// How long to pause at `point` (none without a hook).
    pub fn delay(point: &'static str) -> Option<Duration> {
        HOOK.with(|h| h.borrow().as_ref().and_then(|f| f(point)))
    }
}

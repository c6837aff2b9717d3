//! The brokers' processors: work costs simulated time.
//!
//! The broker says where it works and how much (`cpu_work!`: requests, Raft steps, appended
//! files, bytes); each simulated broker has `cores` processors that its tasks share in the
//! order the work came, so a task whose work finds them busy waits for them — an overloaded
//! broker falls behind (its ticks late, its answers slow), as a real one does. Another process
//! on the same host (`busy-cpu`) takes a share of them for a while.
//!
//! Invariant: the time a piece of work takes is a function of the scenario, the work before it
//! on the same node and the simulated clock alone (nothing measures the host), so a seed
//! replays bit for bit. Without a `[cpu]` section, work costs nothing, as before.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use crate::scenario::CpuSpec;
use madsim::task::NodeId;
use tokio::time::Instant;

/// One node's processors.
#[derive(Default)]
struct Processors {
    /// When each is free next.
    free_at: Vec<Instant>,
    /// Percent of the processors another process takes (`busy-cpu`).
    taken_percent: u32,
    /// Work done, and the longest a piece of work waited for a processor.
    used: Duration,
    wait_max: Duration,
}

#[derive(Default)]
struct Machines {
    spec: Option<CpuSpec>,
    nodes: BTreeMap<NodeId, Processors>,
}

thread_local! {
    // Per thread: a run is one thread.
    static MACHINES: Rc<RefCell<Machines>> = Rc::default();
}

/// Make the brokers' work cost time as `spec` says (none: no cost), for this run.
pub(crate) fn install(spec: Option<CpuSpec>) {
    let machines = MACHINES.with(Rc::clone);
    *machines.borrow_mut() = Machines {
        spec: spec.clone(),
        nodes: BTreeMap::new(),
    };
    if spec.is_none() {
        broker::fault::set_cpu_hook(None::<fn(&'static str, u64) -> Option<Duration>>);
        return;
    }
    broker::fault::set_cpu_hook(Some(move |kind: &'static str, units: u64| {
        let mut m = machines.borrow_mut();
        let cost = m.spec.as_ref()?.cost(kind, units);
        let cores = m.spec.as_ref()?.cores.max(1);
        let p = m.nodes.entry(madsim::plugin::node()).or_default();
        Some(p.run(cores, cost))
    }));
}

impl Processors {
    /// Run `cost` of work on the processor free first: how long until it is done.
    fn run(&mut self, cores: usize, cost: Duration) -> Duration {
        let now = Instant::now();
        if self.free_at.len() != cores {
            self.free_at = vec![now; cores];
        }
        // Another process's share stretches every piece of work.
        let taken = self.taken_percent.min(95) as u64;
        let cost = cost * 100 / (100 - taken) as u32;
        let (i, free) = self
            .free_at
            .iter()
            .enumerate()
            .min_by_key(|(_, at)| **at)
            .map(|(i, at)| (i, *at))
            .expect("at least one processor");
        let start = free.max(now);
        let done = start + cost;
        self.free_at[i] = done;
        self.used += cost;
        self.wait_max = self.wait_max.max(start - now);
        done - now
    }
}

/// Another process takes `percent` of node `node`'s processors from now on (0: none).
pub(crate) fn take_share(node: NodeId, percent: u32) {
    MACHINES.with(|m| {
        m.borrow_mut().nodes.entry(node).or_default().taken_percent = percent;
    });
}

/// What a node's processors did: work done, the longest wait for one.
pub fn usage(node: NodeId) -> (Duration, Duration) {
    MACHINES.with(|m| {
        m.borrow()
            .nodes
            .get(&node)
            .map_or((Duration::ZERO, Duration::ZERO), |p| (p.used, p.wait_max))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processors, three pieces of 10 ms of work at once: two run together, the third
    /// waits for one of them; another process's half share doubles what comes after.
    #[madsim::test]
    async fn work_waits_for_a_free_processor_and_a_taken_share_slows_it() {
        let ms = Duration::from_millis;
        let mut p = Processors::default();
        assert_eq!(p.run(2, ms(10)), ms(10));
        assert_eq!(p.run(2, ms(10)), ms(10));
        assert_eq!(p.run(2, ms(10)), ms(20));
        assert_eq!((p.used, p.wait_max), (ms(30), ms(10)));
        tokio::time::sleep(ms(100)).await;
        p.taken_percent = 50;
        assert_eq!(p.run(2, ms(10)), ms(20));
    }
}

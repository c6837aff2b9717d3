//! Elections of three raft-rs nodes over an in-memory network, driven tick by tick: with the
//! [`ElectionTimer`] the same seed holds the same elections.

use std::collections::BTreeSet;

use io_backend::EnvRng;
use raft::eraftpb::Message;
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};

use super::logger::raft_logger;
use super::{ElectionStretch, ElectionTimer};

struct Node {
    raw: RawNode<MemStorage>,
    timer: ElectionTimer,
}

/// Who became leader, when and in which term, over `ticks` ticks during which the current
/// leader is cut off from the others for 40 ticks every 80.
fn elections(seed: u64, ticks: u64) -> Vec<(u64, u64, u64)> {
    let ids = [1u64, 2, 3];
    let rng = EnvRng::seeded(seed);
    let mut nodes: Vec<Node> = ids
        .iter()
        .map(|&id| {
            let config = raft::Config {
                id,
                election_tick: 10,
                heartbeat_tick: 2,
                pre_vote: true,
                check_quorum: true,
                ..Default::default()
            };
            let storage = MemStorage::new_with_conf_state((ids.to_vec(), vec![]));
            let logger = raft_logger(slog::o!("node" => id));
            let mut raw = RawNode::new(&config, storage, &logger).expect("valid config");
            let mut timer = ElectionTimer::new(rng.clone(), &config, ElectionStretch::default());
            timer.settle(&mut raw);
            Node { raw, timer }
        })
        .collect();
    let mut isolated: BTreeSet<u64> = BTreeSet::new();
    let mut leaders = Vec::new();
    let mut in_flight: Vec<Message> = Vec::new();
    for tick in 0..ticks {
        if tick % 80 == 20 {
            if let Some(leader) = nodes.iter().find(|n| n.raw.raft.state == StateRole::Leader) {
                isolated.insert(leader.raw.raft.id);
            }
        }
        if tick % 80 == 60 {
            isolated.clear();
        }
        for node in &mut nodes {
            node.raw.tick();
            node.timer.settle(&mut node.raw);
        }
        // Deliver until quiet: each round hands every node its messages, then collects.
        for _ in 0..16 {
            for message in std::mem::take(&mut in_flight) {
                if isolated.contains(&message.from) || isolated.contains(&message.to) {
                    continue;
                }
                let node = &mut nodes[(message.to - 1) as usize];
                let _ = node.raw.step(message);
                node.timer.settle(&mut node.raw);
            }
            for node in &mut nodes {
                let was_leader = node.raw.raft.state == StateRole::Leader;
                if !node.raw.has_ready() {
                    continue;
                }
                let mut ready = node.raw.ready();
                in_flight.extend(ready.take_messages());
                let store = node.raw.store().clone();
                store.wl().append(ready.entries()).expect("append");
                if let Some(hs) = ready.hs() {
                    store.wl().set_hardstate(hs.clone());
                }
                in_flight.extend(ready.take_persisted_messages());
                let mut light = node.raw.advance(ready);
                in_flight.extend(light.take_messages());
                node.raw.advance_apply();
                if !was_leader && node.raw.raft.state == StateRole::Leader {
                    leaders.push((tick, node.raw.raft.id, node.raw.raft.term));
                }
            }
            if in_flight.is_empty() {
                break;
            }
        }
        for node in &nodes {
            if node.raw.raft.state == StateRole::Leader
                && !leaders
                    .iter()
                    .any(|&(_, id, term)| id == node.raw.raft.id && term == node.raw.raft.term)
            {
                leaders.push((tick, node.raw.raft.id, node.raw.raft.term));
            }
        }
    }
    leaders
}

#[test]
fn the_same_seed_holds_the_same_elections() {
    for seed in [1, 7, 42] {
        let first = elections(seed, 600);
        assert!(
            first.len() >= 4,
            "seed {seed}: a leader cut off every 80 ticks must be replaced: {first:?}"
        );
        // At most one leader per term.
        let terms: BTreeSet<u64> = first.iter().map(|&(_, _, term)| term).collect();
        assert_eq!(
            terms.len(),
            first.len(),
            "two leaders in one term: {first:?}"
        );
        for _ in 0..3 {
            assert_eq!(
                elections(seed, 600),
                first,
                "seed {seed} held other elections"
            );
        }
    }
}

#[test]
fn different_seeds_hold_different_elections() {
    let runs: BTreeSet<Vec<(u64, u64, u64)>> = (1..=8).map(|seed| elections(seed, 600)).collect();
    assert!(
        runs.len() > 1,
        "the seed does not reach the election timeouts"
    );
}

#[test]
fn the_timeout_stays_in_rafts_range() {
    let config = raft::Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 2,
        ..Default::default()
    };
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
    let mut raw = RawNode::new(&config, storage, &raft_logger(slog::o!())).expect("valid");
    let mut timer = ElectionTimer::new(EnvRng::seeded(3), &config, ElectionStretch::default());
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        raw.campaign().expect("campaign");
        timer.settle(&mut raw);
        let t = raw.raft.randomized_election_timeout();
        assert!((10..20).contains(&t), "timeout {t} outside [10, 20)");
        assert_eq!(t, timer.timeout_ticks());
        seen.insert(t);
    }
    assert!(seen.len() > 5, "timeouts hardly vary: {seen:?}");
}

#[test]
fn a_slow_disk_stretches_the_timeouts_and_a_quick_one_brings_them_back() {
    let config = raft::Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 2,
        max_election_tick: ElectionTimer::max_election_tick(10),
        ..Default::default()
    };
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
    let mut raw = RawNode::new(&config, storage, &raft_logger(slog::o!())).expect("valid");
    let stretch = ElectionStretch::new(std::time::Duration::from_millis(100), 40);
    let mut timer = ElectionTimer::new(EnvRng::seeded(3), &config, stretch.clone());
    let mut draw = |raw: &mut RawNode<MemStorage>| {
        raw.campaign().expect("campaign");
        timer.settle(raw);
        raw.raft.randomized_election_timeout()
    };
    assert!(
        (10..20).contains(&draw(&mut raw)),
        "a quick disk: raft's range"
    );
    // Writes of 250 ms: an election of four of them takes 1 s, ten ticks more at both ends
    // (the far end twice that, so the spread grows too).
    for _ in 0..100 {
        stretch.observe(std::time::Duration::from_millis(250));
    }
    assert_eq!(stretch.ticks(), 10);
    let stretched: Vec<usize> = (0..100).map(|_| draw(&mut raw)).collect();
    assert!(
        stretched.iter().all(|t| (20..40).contains(t)),
        "stretched timeouts outside [20, 40): {stretched:?}"
    );
    // A stalled disk stretches them no further than the bound.
    for _ in 0..100 {
        stretch.observe(std::time::Duration::from_secs(60));
    }
    assert_eq!(stretch.ticks(), 40);
    assert!((0..100)
        .map(|_| draw(&mut raw))
        .all(|t| (50..100).contains(&t)));
    // Quick again: back to raft's range.
    for _ in 0..200 {
        stretch.observe(std::time::Duration::from_micros(100));
    }
    assert_eq!(stretch.ticks(), 1, "a write of 0.1 ms is under a tick");
    assert!((0..100)
        .map(|_| draw(&mut raw))
        .all(|t| (11..22).contains(&t)));
    // Slow, then no write at all (quiet groups): each election timeout without one halves
    // what the stretch remembers, and one with a write keeps it.
    for _ in 0..100 {
        stretch.observe(std::time::Duration::from_millis(250));
    }
    stretch.idle();
    assert_eq!(stretch.ticks(), 10, "writes were seen since the last check");
    stretch.idle();
    assert_eq!(stretch.ticks(), 5);
    for _ in 0..8 {
        stretch.idle();
    }
    assert_eq!(stretch.ticks(), 1);
}

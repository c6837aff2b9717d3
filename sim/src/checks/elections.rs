//! Elections at scale: no storm, no partition left without a leader once the faults are over,
//! leaderships spread back over the brokers. Pure functions over the brokers' Raft counters,
//! sampled every second of the run ([`RaftSample`]).
//!
//! - **storms**: the run is cut into episodes — the topic's creation, and each fault's window
//!   up to `settle_s` after it heals (overlapping windows merge) — and the quiet stretches
//!   between them. An episode may cost at most `ELECTIONS_PER_GROUP` elections per Raft group
//!   per fault in it (a failure moves each group's leadership once: a pre-vote and a vote on
//!   one or two replicas); a quiet stretch as much as one fault (the leaderships going back to
//!   their preferred replicas). More is elections that do not conclude — the livelock of a
//!   thousand groups splitting their votes on a busy host.
//! - **leaderless**: at every sample outside the episodes, no broker counts a group without a
//!   leader (the brokers' `raft_groups_leaderless`: groups leaderless for several election
//!   timeouts).
//! - **balance**: at the run's end, when the last episode ended long enough before it for the
//!   leaderships to have gone back, no broker leads more than `BALANCE_SLACK` times its share
//!   (plus two).

use crate::findings::Finding;
use crate::scenario::Fault;

/// Elections (Raft's counted campaigns, pre-votes included) per group per fault.
pub const ELECTIONS_PER_GROUP: u64 = 6;
/// How far above an even share of the leaderships a broker may stay.
pub const BALANCE_SLACK: f64 = 1.25;

/// One broker's Raft counters at a sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerRaft {
    pub node: String,
    /// Elections it stood in, over all its starts.
    pub elections: u64,
    /// Groups it leads now, and groups it has seen without a leader for several election
    /// timeouts.
    pub leaders: i64,
    pub leaderless: i64,
}

/// The brokers' counters `at_s` seconds into the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftSample {
    pub at_s: f64,
    pub brokers: Vec<BrokerRaft>,
}

impl RaftSample {
    fn elections(&self) -> u64 {
        self.brokers.iter().map(|b| b.elections).sum()
    }
}

/// A stretch of the run and how many faults (or the creation) it answers for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Episode {
    from_s: f64,
    to_s: f64,
    causes: u64,
}

/// The creation (`[0, settle_s)`) and each fault's window to `settle_s` after it heals, merged.
fn episodes(faults: &[Fault], settle_s: f64) -> Vec<Episode> {
    let mut windows: Vec<(f64, f64)> = std::iter::once((0.0, settle_s))
        .chain(
            faults
                .iter()
                .map(|f| (f.at_s() as f64, f.healed_at_s() as f64 + settle_s)),
        )
        .collect();
    windows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<Episode> = Vec::new();
    for (from_s, to_s) in windows {
        match out.last_mut() {
            Some(e) if from_s <= e.to_s => {
                e.to_s = e.to_s.max(to_s);
                e.causes += 1;
            }
            _ => out.push(Episode {
                from_s,
                to_s,
                causes: 1,
            }),
        }
    }
    out
}

/// Elections between the samples nearest `from_s` and `to_s`.
fn elections_within(samples: &[RaftSample], from_s: f64, to_s: f64) -> u64 {
    let at = |t: f64| {
        samples
            .iter()
            .rev()
            .find(|s| s.at_s <= t)
            .or(samples.first())
            .map_or(0, RaftSample::elections)
    };
    at(to_s).saturating_sub(at(from_s))
}

/// Episodes and quiet stretches that cost more elections than their faults allow.
pub fn storms(
    samples: &[RaftSample],
    faults: &[Fault],
    groups: u64,
    settle_s: f64,
) -> Vec<Finding> {
    let Some(end) = samples.last().map(|s| s.at_s) else {
        return Vec::new();
    };
    let episodes = episodes(faults, settle_s);
    let mut stretches: Vec<Episode> = Vec::new();
    let mut quiet_from = 0.0;
    for e in &episodes {
        if e.from_s > quiet_from {
            stretches.push(Episode {
                from_s: quiet_from,
                to_s: e.from_s,
                causes: 1,
            });
        }
        stretches.push(*e);
        quiet_from = e.to_s;
    }
    if quiet_from < end {
        stretches.push(Episode {
            from_s: quiet_from,
            to_s: end,
            causes: 1,
        });
    }
    stretches
        .into_iter()
        .filter(|s| s.from_s < end)
        .filter_map(|s| {
            let elections = elections_within(samples, s.from_s, s.to_s.min(end));
            let bound = ELECTIONS_PER_GROUP * groups.max(1) * s.causes;
            (elections > bound).then(|| Finding::ElectionStorm {
                from_s: s.from_s,
                to_s: s.to_s.min(end),
                elections,
                bound,
            })
        })
        .collect()
}

/// Brokers that counted leaderless groups outside every episode (the first such sample each).
pub fn leaderless(samples: &[RaftSample], faults: &[Fault], settle_s: f64) -> Vec<Finding> {
    let episodes = episodes(faults, settle_s);
    let quiet = |t: f64| !episodes.iter().any(|e| t >= e.from_s && t < e.to_s);
    let mut out: Vec<Finding> = Vec::new();
    for s in samples.iter().filter(|s| quiet(s.at_s)) {
        for b in s.brokers.iter().filter(|b| b.leaderless > 0) {
            let told = out
                .iter()
                .any(|f| matches!(f, Finding::Leaderless { node, .. } if *node == b.node));
            if !told {
                out.push(Finding::Leaderless {
                    node: b.node.clone(),
                    at_s: s.at_s,
                    groups: b.leaderless,
                });
            }
        }
    }
    out
}

/// At the last sample, when it came `rebalance_s` after the last episode ended: a broker that
/// leads more than its share allows.
pub fn balance(
    samples: &[RaftSample],
    faults: &[Fault],
    settle_s: f64,
    rebalance_s: f64,
) -> Vec<Finding> {
    let Some(last) = samples.last() else {
        return Vec::new();
    };
    let settled_at = episodes(faults, settle_s).last().map_or(0.0, |e| e.to_s) + rebalance_s;
    if last.at_s < settled_at || last.brokers.is_empty() {
        return Vec::new();
    }
    let total: i64 = last.brokers.iter().map(|b| b.leaders).sum();
    let share = total as f64 / last.brokers.len() as f64;
    let allowed = share * BALANCE_SLACK + 2.0;
    last.brokers
        .iter()
        .filter(|b| b.leaders as f64 > allowed)
        .map(|b| Finding::LeadershipImbalance {
            node: b.node.clone(),
            leaders: b.leaders,
            share,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, counts: &[(u64, i64, i64)]) -> RaftSample {
        RaftSample {
            at_s,
            brokers: counts
                .iter()
                .enumerate()
                .map(|(i, &(elections, leaders, leaderless))| BrokerRaft {
                    node: format!("broker-{}", i + 1),
                    elections,
                    leaders,
                    leaderless,
                })
                .collect(),
        }
    }

    fn crash(at_s: u64) -> Fault {
        Fault::Crash {
            at_s,
            torn: false,
            wipe: false,
            in_joint: false,
            while_cleaning: false,
            at_point: None,
            hold_ms: None,
            down_s: 5,
            node: None,
        }
    }

    /// 100 groups: a crash at 60 s may cost 600 elections within 60..95 s; 700 is a storm, and
    /// so are 700 in the quiet stretch after it; 500 in each is not.
    #[test]
    fn a_storm_is_more_elections_than_the_faults_allow() {
        let run = |during: u64, after: u64| {
            let samples = vec![
                sample(0.0, &[(0, 0, 0)]),
                sample(30.0, &[(200, 100, 0)]),
                sample(60.0, &[(200, 100, 0)]),
                sample(95.0, &[(200 + during, 100, 0)]),
                sample(200.0, &[(200 + during + after, 100, 0)]),
            ];
            storms(&samples, &[crash(60)], 100, 30.0)
        };
        assert!(run(500, 500).is_empty());
        assert!(matches!(
            run(700, 0)[..],
            [Finding::ElectionStorm {
                elections: 700,
                bound: 600,
                ..
            }]
        ));
        assert!(matches!(
            run(0, 700)[..],
            [Finding::ElectionStorm { from_s, elections: 700, .. }] if from_s == 95.0
        ));
    }

    /// Leaderless groups inside a fault's window and its settling time are allowed; after it,
    /// each broker is told once.
    #[test]
    fn leaderless_groups_outside_the_faults_are_found() {
        let samples = vec![
            sample(10.0, &[(0, 5, 3), (0, 5, 0)]),
            sample(70.0, &[(0, 5, 4), (0, 5, 0)]),
            sample(100.0, &[(0, 5, 0), (0, 5, 0)]),
            sample(120.0, &[(0, 5, 2), (0, 5, 1)]),
            sample(121.0, &[(0, 5, 2), (0, 5, 1)]),
        ];
        let found = leaderless(&samples, &[crash(60)], 30.0);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            matches!(&found[0], Finding::Leaderless { node, at_s, groups: 2 } if node == "broker-1" && *at_s == 120.0)
        );
    }

    /// Balance is judged only once the leaderships had time to go back.
    #[test]
    fn a_broker_leading_most_is_found_once_things_settled() {
        let skewed = vec![sample(200.0, &[(0, 80, 0), (0, 10, 0), (0, 10, 0)])];
        let even = vec![sample(200.0, &[(0, 35, 0), (0, 33, 0), (0, 32, 0)])];
        assert!(balance(&even, &[crash(60)], 30.0, 20.0).is_empty());
        let found = balance(&skewed, &[crash(60)], 30.0, 20.0);
        assert!(matches!(
            &found[..],
            [Finding::LeadershipImbalance { leaders: 80, .. }]
        ));
        // The crash at 160 s heals at 165 s; 165 + 30 + 20 is past the end: no judgement.
        assert!(balance(&skewed, &[crash(160)], 30.0, 20.0).is_empty());
    }
}

//! Feature levels (Kafka's KIP-584): a named behaviour of the cluster with a level. Each broker
//! says which levels of each feature it can run (its *supported* range, sent when it
//! registers); the cluster *finalizes* one level of each, the level every broker runs at.
//! Clients read both from ApiVersions (v3+) and choose their protocol by the finalized level
//! (a Kafka 4 consumer uses KIP-848's protocol only when `group.version` is at 1); Kafka's
//! admin client shows them as `describeFeatures` and changes them with `updateFeatures`
//! (`kafka-features.sh`).
//!
//! The finalized levels live in the cluster's metadata (a single node's in its data
//! directory); a feature never recorded is at its [`Feature::unrecorded`] level — the level of
//! every cluster before levels could change, so a broker of any version reads an unrecorded
//! feature the same way.
//!
//! `stillwater.version` is the level of this broker's own formats and of what brokers send
//! each other (the role of Kafka's `metadata.version`): a behaviour that changes what one
//! broker writes, or sends another, comes with a new level and stays off until the operator
//! raises it — once every broker runs a version that supports it. Until then any broker can
//! be rolled back; after it, an older broker refuses to run ([`Unsupported`]).
//!
//! Architecture invariants: a level is finalized only within the range every registered
//! broker supports; a broker never runs at a finalized level outside its own range; the
//! levels change only by a recorded update, in the metadata's order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A feature this broker knows: its name, the levels it supports, and its level where none
/// was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    /// The lowest and highest level this broker can run at.
    pub min: i16,
    pub max: i16,
    /// The level of a cluster (or single node) that never recorded one: fixed forever, as
    /// brokers of every version must agree on it.
    pub unrecorded: i16,
}

/// The features, by name.
pub const FEATURES: &[Feature] = &[
    // KIP-848's consumer group protocol (ConsumerGroupHeartbeat, broker-side assignment) at
    // level 1; level 0 is the classic protocol alone.
    Feature {
        name: "group.version",
        min: 0,
        max: 1,
        unrecorded: 1,
    },
    // Level 2 is KIP-890's transactions v2 (EndTxn v5 bumping the epoch, partitions added to
    // a transaction by its Produce): not served, so clients keep the original protocol.
    Feature {
        name: "transaction.version",
        min: 0,
        max: 0,
        unrecorded: 0,
    },
    // This broker's formats and inter-broker messages. 1: the formats of every version before
    // levels; 2: every file of the data directory names its format.
    Feature {
        name: STILLWATER_VERSION,
        min: 1,
        max: 2,
        unrecorded: 1,
    },
];

/// The feature of this broker's formats and of what brokers send each other.
pub const STILLWATER_VERSION: &str = "stillwater.version";

/// The levels of one feature a broker supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub name: String,
    pub min: i16,
    pub max: i16,
}

/// What this broker supports, feature by feature.
pub fn supported() -> Vec<Range> {
    FEATURES
        .iter()
        .map(|f| Range {
            name: f.name.to_string(),
            min: f.min,
            max: f.max,
        })
        .collect()
}

/// The levels a new cluster or single node starts at (`initial_features`, `name=level,…`):
/// every feature this broker knows at its highest level, as Kafka formats a cluster without
/// `--release-version`, but those the text names. A name this broker does not know, or a
/// level outside its range, is refused with why.
pub fn initial_levels(spec: &str) -> Result<BTreeMap<String, i16>, String> {
    let mut levels: BTreeMap<String, i16> = FEATURES
        .iter()
        .map(|f| (f.name.to_string(), f.max))
        .collect();
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, level) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not name=level"))?;
        let (name, level) = (name.trim(), level.trim());
        let f = FEATURES.iter().find(|f| f.name == name).ok_or_else(|| {
            let known: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
            format!("no feature {name:?} (known: {})", known.join(", "))
        })?;
        let level: i16 = level
            .parse()
            .map_err(|_| format!("{item:?}: the level is not a number"))?;
        if level < f.min || level > f.max {
            return Err(format!(
                "{name}={level}: this broker supports levels {} to {}",
                f.min, f.max
            ));
        }
        levels.insert(name.to_string(), level);
    }
    Ok(levels)
}

/// What a broker that did not say supported: the levels of every version before brokers sent
/// their ranges.
pub fn supported_before_ranges() -> Vec<Range> {
    [
        ("group.version", 0, 1),
        ("transaction.version", 0, 0),
        (STILLWATER_VERSION, 1, 1),
    ]
    .into_iter()
    .map(|(name, min, max)| Range {
        name: name.to_string(),
        min,
        max,
    })
    .collect()
}

/// The features ApiVersions lists as supported at `version`: below v4 those whose lowest level
/// is 0 are left out (older clients cannot read a range from 0), as Kafka does.
pub fn supported_at(version: i16) -> impl Iterator<Item = &'static Feature> {
    FEATURES.iter().filter(move |f| version >= 4 || f.min > 0)
}

/// The finalized levels: those recorded (a feature not recorded is at its unrecorded level)
/// and the epoch, which changes whenever one does (the metadata offset of the last change on
/// a cluster; a count on a single node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finalized {
    pub levels: BTreeMap<String, i16>,
    pub epoch: i64,
}

impl Finalized {
    /// Every feature this broker knows at its highest level (a single node made here starts
    /// there, as a Kafka cluster formatted without `--release-version` does).
    pub fn newest() -> Finalized {
        Finalized {
            levels: FEATURES
                .iter()
                .map(|f| (f.name.to_string(), f.max))
                .collect(),
            epoch: 0,
        }
    }

    /// The level `name` runs at.
    pub fn level(&self, name: &str) -> i16 {
        self.levels.get(name).copied().unwrap_or_else(|| {
            FEATURES
                .iter()
                .find(|f| f.name == name)
                .map_or(0, |f| f.unrecorded)
        })
    }

    /// The levels ApiVersions lists as finalized: every feature above level 0, known or
    /// recorded, by name.
    pub fn listed(&self) -> Vec<(String, i16)> {
        let mut names: Vec<String> = FEATURES.iter().map(|f| f.name.to_string()).collect();
        names.extend(self.levels.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let level = self.level(&n);
                (n, level)
            })
            .filter(|(_, level)| *level > 0)
            .collect()
    }

    /// The first finalized level outside `ranges` (a feature `ranges` does not name supports
    /// level 0 only).
    pub fn unsupported_by(&self, ranges: &[Range]) -> Option<Unsupported> {
        self.listed().into_iter().find_map(|(name, level)| {
            let (min, max) = ranges
                .iter()
                .find(|r| r.name == name)
                .map_or((0, 0), |r| (r.min, r.max));
            (level < min || level > max).then_some(Unsupported {
                feature: name,
                level,
                min,
                max,
            })
        })
    }

    /// Set `name` to `level` (level 0 removes the record, as Kafka does), the epoch to `epoch`.
    pub fn set(&mut self, name: &str, level: i16, epoch: i64) {
        if level == 0 && FEATURES.iter().all(|f| f.name != name || f.unrecorded == 0) {
            self.levels.remove(name);
        } else {
            self.levels.insert(name.to_string(), level);
        }
        self.epoch = epoch;
    }
}

/// A finalized level this broker cannot run at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cluster runs feature {feature} at level {level}; this broker (version {}) supports {min} to {max}: run a version that supports it", env!("CARGO_PKG_VERSION"))]
pub struct Unsupported {
    pub feature: String,
    pub level: i16,
    pub min: i16,
    pub max: i16,
}

/// How an update may move a level (UpdateFeatures' `upgrade_type`; v0's `allow_downgrade`
/// is `SafeDowngrade` when set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
    Unknown,
}

impl UpgradeType {
    pub fn of(code: i8) -> UpgradeType {
        match code {
            1 => UpgradeType::Upgrade,
            2 => UpgradeType::SafeDowngrade,
            3 => UpgradeType::UnsafeDowngrade,
            _ => UpgradeType::Unknown,
        }
    }
}

/// One feature's asked change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub name: String,
    pub level: i16,
    pub upgrade: UpgradeType,
}

/// Why an update is refused: Kafka's INVALID_UPDATE_VERSION with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid update version {level} for feature {name}. {why}")]
pub struct Refused {
    pub name: String,
    pub level: i16,
    pub why: String,
}

/// Check `updates` as the broker that takes the request does, before anything is recorded:
/// the upgrade type, the level's sign, and this broker's own support (node `controller`, the
/// "local controller" of Kafka's messages). `Ok` only if all of them pass (the updates are made
/// together or not at all); the registered brokers are checked where the update is recorded
/// ([`check_recorded`]).
pub fn check_request(now: &Finalized, updates: &[Update], controller: i32) -> Result<(), Refused> {
    for u in updates {
        let refuse = |why: String| Refused {
            name: u.name.clone(),
            level: u.level,
            why,
        };
        if u.upgrade == UpgradeType::Unknown {
            return Err(refuse(
                "The controller does not support the given upgrade type.".into(),
            ));
        }
        if u.level < 0 {
            return Err(refuse("A feature version cannot be less than 0.".into()));
        }
        let Some(known) = FEATURES.iter().find(|f| f.name == u.name) else {
            return Err(refuse(format!(
                "Local controller {controller} does not support this feature."
            )));
        };
        let outside = if u.level == 0 {
            known.min > 0
        } else {
            u.level < known.min || u.level > known.max
        };
        if outside {
            return Err(refuse(format!(
                "Local controller {controller} only supports versions {}-{}",
                known.min, known.max
            )));
        }
    }
    check_recorded(now, updates, &[])
}

/// Check `updates` where they are recorded — from the record and the metadata alone, so
/// every broker decides the same whatever its version: each level within the range of every
/// registered broker (`brokers`: id and ranges), and a level lowered only with a downgrade
/// type, never `stillwater.version`'s.
pub fn check_recorded(
    now: &Finalized,
    updates: &[Update],
    brokers: &[(i32, &[Range])],
) -> Result<(), Refused> {
    for u in updates {
        let refuse = |why: String| Refused {
            name: u.name.clone(),
            level: u.level,
            why,
        };
        if u.level < 0 {
            return Err(refuse("A feature version cannot be less than 0.".into()));
        }
        for (id, ranges) in brokers {
            match ranges.iter().find(|r| r.name == u.name) {
                None if u.level != 0 => {
                    return Err(refuse(format!(
                        "Broker {id} does not support this feature."
                    )))
                }
                Some(r) if u.level != 0 && (u.level < r.min || u.level > r.max) => {
                    return Err(refuse(format!(
                        "Broker {id} only supports versions {}-{}",
                        r.min, r.max
                    )))
                }
                _ => {}
            }
        }
        let current = now.level(&u.name);
        if u.level < current {
            if u.upgrade == UpgradeType::Upgrade {
                return Err(refuse(
                    "Can't downgrade the version of this feature without setting the upgrade \
                     type to either safe or unsafe downgrade."
                        .into(),
                ));
            }
            if u.name == STILLWATER_VERSION {
                return Err(refuse(format!(
                    "Downgrades of {STILLWATER_VERSION} are not supported: files of level {current} may already be written."
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, level: i16) -> Update {
        Update {
            name: name.into(),
            level,
            upgrade: UpgradeType::Upgrade,
        }
    }

    #[test]
    fn the_unrecorded_levels_are_those_every_earlier_broker_ran_at() {
        let none = Finalized::default();
        assert_eq!(none.level("group.version"), 1);
        assert_eq!(none.level("transaction.version"), 0);
        assert_eq!(none.level(STILLWATER_VERSION), 1);
        assert_eq!(none.level("no.such.feature"), 0);
        let listed: Vec<_> = none.listed().into_iter().map(|(n, _)| n).collect();
        assert_eq!(listed, ["group.version", STILLWATER_VERSION]);
        assert_eq!(none.unsupported_by(&supported_before_ranges()), None);
        assert_eq!(none.unsupported_by(&supported()), None);
        for f in FEATURES {
            assert!(f.min <= f.unrecorded && f.unrecorded <= f.max, "{f:?}");
        }
    }

    #[test]
    fn a_new_cluster_starts_at_the_newest_levels_but_those_named() {
        let newest = initial_levels("").unwrap();
        assert_eq!(newest.len(), FEATURES.len());
        for f in FEATURES {
            assert_eq!(newest[f.name], f.max, "{}", f.name);
        }
        let some = initial_levels(" stillwater.version=1 , group.version=0").unwrap();
        assert_eq!(some[STILLWATER_VERSION], 1);
        assert_eq!(some["group.version"], 0);
        for bad in [
            "stillwater.version",
            "no.such=1",
            "group.version=x",
            "stillwater.version=0",
            "group.version=2",
        ] {
            assert!(initial_levels(bad).is_err(), "{bad}");
        }
        assert!(initial_levels("nope=1")
            .unwrap_err()
            .contains("known: group.version"));
    }

    #[test]
    fn old_versions_get_no_range_from_zero() {
        let old: Vec<_> = supported_at(3).map(|f| f.name).collect();
        assert_eq!(old, [STILLWATER_VERSION]);
        assert_eq!(supported_at(4).count(), FEATURES.len());
    }

    #[test]
    fn a_level_is_finalized_only_within_every_brokers_range() {
        let now = Finalized::default();
        let narrow = vec![Range {
            name: "group.version".into(),
            min: 0,
            max: 0,
        }];
        let e = check_recorded(&now, &[up("group.version", 1)], &[(2, &narrow)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid update version 1 for feature group.version. Broker 2 only supports versions 0-0"
        );
        let e = check_request(&now, &[up("no.such", 1)], 1).unwrap_err();
        assert!(e.why.contains("does not support this feature"), "{e}");
        let e = check_request(&now, &[up("group.version", 5)], 1).unwrap_err();
        assert!(e.why.contains("only supports versions 0-1"), "{e}");
        let e = check_request(&now, &[up("group.version", -1)], 1).unwrap_err();
        assert!(e.why.contains("cannot be less than 0"), "{e}");
        // Lowering needs a downgrade type; the format level is never lowered.
        let e = check_request(&now, &[up("group.version", 0)], 1).unwrap_err();
        assert!(e.why.contains("without setting the upgrade type"), "{e}");
        let down = Update {
            upgrade: UpgradeType::SafeDowngrade,
            ..up("group.version", 0)
        };
        assert_eq!(check_request(&now, std::slice::from_ref(&down), 1), Ok(()));
        let all = supported();
        assert_eq!(check_recorded(&now, &[down], &[(2, &all)]), Ok(()));
        let mut at2 = Finalized::default();
        at2.set(STILLWATER_VERSION, 2, 7);
        let down = Update {
            upgrade: UpgradeType::UnsafeDowngrade,
            ..up(STILLWATER_VERSION, 1)
        };
        assert!(check_recorded(&at2, &[down], &[])
            .unwrap_err()
            .why
            .contains("not supported"));
    }

    #[test]
    fn a_finalized_level_outside_a_range_is_found() {
        let mut f = Finalized::default();
        f.set(STILLWATER_VERSION, 9, 42);
        assert_eq!(f.epoch, 42);
        let u = f.unsupported_by(&supported()).unwrap();
        assert_eq!((u.feature.as_str(), u.level), (STILLWATER_VERSION, 9));
        f.set("group.version", 0, 43);
        assert_eq!(f.level("group.version"), 0);
        assert!(!f.listed().iter().any(|(n, _)| n == "group.version"));
    }
}

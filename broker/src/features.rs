//! Feature levels (Kafka's KIP-584): a named behaviour of the cluster with a level. Each broker
//! says which levels of each feature it can run (its *supported* range); the cluster *finalizes*
//! one level of each, the level every broker runs at. Clients read both from ApiVersions (v3+)
//! and choose their protocol by the finalized level: a Kafka 4 producer uses transactions v2
//! (KIP-890's second part) only when `transaction.version` is finalized at 2 or more; Kafka's
//! admin client shows them as `describeFeatures`.
//!
//! The finalized levels are the levels of this version of the broker: every broker of a
//! cluster runs one version, and no request raises or lowers a level (UpdateFeatures is not
//! served). A level is listed as finalized only when it is above 0, as Kafka does.
//!
//! Architecture invariant: a behaviour a client chooses by a feature is served by every broker
//! at the finalized level; a level is never finalized above what this broker supports.

/// A feature: its name, the levels this broker supports and the level the cluster runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    /// The lowest and highest level this broker can run at.
    pub min: i16,
    pub max: i16,
    /// The level the cluster runs at (0: the feature's behaviour is off; not listed).
    pub finalized: i16,
}

/// The features, by name.
pub const FEATURES: &[Feature] = &[
    // KIP-848's consumer group protocol (ConsumerGroupHeartbeat, broker-side assignment) at
    // level 1; level 0 is the classic protocol alone.
    Feature {
        name: "group.version",
        min: 0,
        max: 1,
        finalized: 1,
    },
    // Level 2 is KIP-890's transactions v2 (EndTxn v5 bumping the epoch, partitions added to
    // a transaction by its Produce): not served, so clients keep the original protocol.
    Feature {
        name: "transaction.version",
        min: 0,
        max: 0,
        finalized: 0,
    },
    // The level of this broker's own formats and of what brokers send each other (the role of
    // Kafka's `metadata.version`, on this broker's own scale): 1 is every format so far.
    Feature {
        name: "stillwater.version",
        min: 1,
        max: 1,
        finalized: 1,
    },
];

/// The epoch of the finalized levels: the version of the set of levels, which changes when a
/// level does (never, while no request changes one).
pub const FINALIZED_EPOCH: i64 = 0;

/// The level `name` is finalized at (0 for a feature this broker does not know).
pub fn finalized(name: &str) -> i16 {
    FEATURES
        .iter()
        .find(|f| f.name == name)
        .map_or(0, |f| f.finalized)
}

/// The features ApiVersions lists as supported at `version`: below v4 those whose lowest level
/// is 0 are left out (older clients cannot read a range from 0), as Kafka does.
pub fn supported_at(version: i16) -> impl Iterator<Item = &'static Feature> {
    FEATURES.iter().filter(move |f| version >= 4 || f.min > 0)
}

/// The features listed as finalized: those above level 0.
pub fn finalized_listed() -> impl Iterator<Item = &'static Feature> {
    FEATURES.iter().filter(|f| f.finalized > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finalized_level_is_within_what_this_broker_supports() {
        for f in FEATURES {
            assert!(f.min <= f.finalized && f.finalized <= f.max, "{f:?}");
        }
    }

    #[test]
    fn old_versions_get_no_range_from_zero_and_level_zero_is_not_finalized() {
        let old: Vec<_> = supported_at(3).map(|f| f.name).collect();
        assert_eq!(old, ["stillwater.version"]);
        assert_eq!(supported_at(4).count(), FEATURES.len());
        let listed: Vec<_> = finalized_listed().map(|f| f.name).collect();
        assert_eq!(listed, ["group.version", "stillwater.version"]);
        assert_eq!(finalized("transaction.version"), 0);
        assert_eq!(finalized("no.such.feature"), 0);
    }
}

//! Snapshots of the cluster metadata (KRaft's metadata snapshots): the state every broker
//! applied from the metadata log, written at an offset where a segment of the log begins, so
//! that the segments below it can go and a start loads the snapshot and applies only the tail.
//!
//! The file `metadata.snapshot` in the metadata partition's directory is a small file (whole or
//! absent, CRC'd: [`crate::storage::small_file`]) whose body is `{"offset": X, "state": …}` in
//! JSON: the state after every record below offset X. A leader's Raft snapshot of the metadata
//! group carries this file's text, packed ([`small_file::pack`]: gzip, about a tenth of the
//! JSON; [`crate::replication::entries`]), so a follower
//! behind the leader's log start — a new or wiped broker, or one down for long — writes the
//! same file before its log is reset to X, and its controller loads it.
//!
//! Invariants: a snapshot is written before the log below it is deleted (a crash in between
//! leaves a log that starts below the snapshot, which is harmless); the state in a snapshot is
//! the state at its offset on every broker (the state is a function of the log's records), so a
//! snapshot taken on one broker and loaded on another gives the same metadata; the outcomes
//! kept for proposers are not in a snapshot (a broker that loads one has no proposal waiting
//! for an outcome older than it, but after taking a leader's snapshot while it waits for one,
//! it proposes again and gets the later outcome).

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::state::ClusterMetadata;
use crate::storage::{small_file, Io, StorageError};

/// The largest snapshot, packed, a leader sends in one Raft message (under the transport's
/// 16 MiB frames, with room for the message around it). The log below a larger one is kept.
const SEND_BYTES_MAX: usize = 12 << 20;

/// The snapshot's file, in the metadata partition's directory.
pub const FILE: &str = crate::storage::log::STATE_SNAPSHOT_FILE;

#[derive(Serialize, Deserialize)]
struct Image<S> {
    /// The metadata log's offset the state is at: every record below it applied.
    offset: i64,
    state: S,
}

/// A snapshot as loaded: its offset, the state, and the file's text (what a Raft snapshot of
/// the metadata group carries, packed).
pub struct Loaded {
    pub offset: i64,
    pub state: ClusterMetadata,
    pub text: Bytes,
}

/// Write `state` at `offset` durably; the file's text.
pub async fn write(
    io: &Io,
    dir: &Path,
    offset: i64,
    state: &ClusterMetadata,
) -> Result<Bytes, StorageError> {
    let body =
        serde_json::to_string(&Image { offset, state }).map_err(|e| StorageError::Corrupt {
            path: dir.join(FILE),
            reason: format!("cannot encode the metadata snapshot: {e}"),
        })?;
    let format = io.format();
    small_file::write_at(io, dir, &[(FILE, &body)], format).await?;
    Ok(Bytes::from(small_file::text(format, &body)))
}

/// The snapshot in `dir`, if any.
pub async fn read(io: &Io, dir: &Path) -> Result<Option<Loaded>, StorageError> {
    small_file::read(io, &dir.join(FILE), |body| {
        let image: Image<ClusterMetadata> =
            serde_json::from_str(body).map_err(|e| format!("unreadable snapshot: {e}"))?;
        Ok(Loaded {
            offset: image.offset,
            state: image.state,
            text: Bytes::from(small_file::text(io.format(), body)),
        })
    })
    .await
}

/// The offset a snapshot's text (as a Raft snapshot carries it) is at, if it is whole.
pub fn offset_of(text: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Offset {
        offset: i64,
    }
    let body = small_file::check(text).ok()?;
    let o: Offset = serde_json::from_str(body).ok()?;
    Some(o.offset)
}

/// Whether a snapshot of `bytes` (`packed` once packed) can go to a follower: one Raft message
/// carries it, and the follower takes it unpacked.
fn sendable(bytes: usize, packed: usize) -> bool {
    packed <= SEND_BYTES_MAX && bytes <= crate::storage::log::STATE_SNAPSHOT_BYTES_MAX
}

impl super::Controller {
    /// Load the snapshot of the metadata if it is at `at_least` or later (the log's start):
    /// it becomes this broker's metadata. Where it is, if loaded.
    pub(super) async fn load_snapshot(&self, at_least: i64) -> Option<i64> {
        let dir = &self.partition.dir;
        let loaded = match read(self.store.io(), dir).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                if at_least > 0 {
                    tracing::error!(log_start = at_least, "the cluster metadata log starts past its beginning but no snapshot of the metadata is there");
                }
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the snapshot of the cluster metadata");
                return None;
            }
        };
        if loaded.offset < at_least {
            tracing::error!(
                snapshot = loaded.offset,
                log_start = at_least,
                "the snapshot of the cluster metadata is older than its log's start"
            );
            return None;
        }
        tracing::info!(
            offset = loaded.offset,
            bytes = loaded.text.len(),
            "loaded the snapshot of the cluster metadata"
        );
        let packed = small_file::pack(&loaded.text);
        let cut = loaded.offset > self.partition.log_start_offset()
            && sendable(loaded.text.len(), packed.len());
        self.partition.set_state_snapshot(loaded.offset, packed);
        let mut state = loaded.state;
        state.applying_end = loaded.offset;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(state);
        self.applied.send_replace(loaded.offset);
        self.version.send_modify(|v| *v += 1);
        if cut {
            // A crash came between the snapshot and the cut of the log below it.
            if let Err(e) = self
                .store
                .delete_records(self.partition.clone(), loaded.offset)
                .await
            {
                tracing::warn!(offset = loaded.offset, error = %e, "could not delete the cluster metadata log below its snapshot");
            }
        }
        Some(loaded.offset)
    }

    /// Whether the metadata (as a snapshot gave it) has this broker registered by an earlier
    /// start of it.
    pub(super) fn registered_before(&self) -> bool {
        self.metadata()
            .brokers
            .get(&self.node_id)
            .is_some_and(|b| b.incarnation != self.incarnation)
    }

    /// Where the next snapshot is due, if at or before `hw`: the first segment boundary at or
    /// above `applied` with at least the interval's bytes of log since the last snapshot
    /// (`snapshot_at`).
    pub(super) fn snapshot_due(&self, applied: i64, snapshot_at: i64, hw: i64) -> Option<i64> {
        let mut from = applied;
        loop {
            let (base, bytes) = self.partition.next_boundary(from, snapshot_at)?;
            if base > hw {
                return None;
            }
            if bytes >= self.snapshot_interval_bytes {
                return Some(base);
            }
            from = base + 1;
        }
    }

    /// Write a snapshot of `state` at `offset` (where a segment begins), then delete the log
    /// below it; whether the snapshot was written.
    pub(super) async fn take_snapshot(&self, offset: i64, state: &ClusterMetadata) -> bool {
        let io = self.store.io();
        let text = match write(io, &self.partition.dir, offset, state).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(offset, error = %e, "could not write a snapshot of the cluster metadata; the next one is taken further on");
                return false;
            }
        };
        let packed = small_file::pack(&text);
        tracing::info!(
            offset,
            bytes = text.len(),
            packed = packed.len(),
            "took a snapshot of the cluster metadata"
        );
        crate::coverage::reached(crate::coverage::Event::MetadataSnapshotTaken);
        let sendable = sendable(text.len(), packed.len());
        self.partition.set_state_snapshot(offset, packed);
        if !sendable {
            tracing::warn!(offset, bytes = text.len(), max_packed = SEND_BYTES_MAX, max = crate::storage::log::STATE_SNAPSHOT_BYTES_MAX, "the snapshot of the cluster metadata is too large for a leader to send: the log below it is kept (followers catch up from entries)");
            return true;
        }
        if let Err(e) = self
            .store
            .delete_records(self.partition.clone(), offset)
            .await
        {
            tracing::warn!(offset, error = %e, "could not delete the cluster metadata log below its snapshot; retention tries again later");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::MetadataRecord;

    #[test]
    fn a_snapshot_gives_back_the_state_it_was_taken_of() {
        let mut state = ClusterMetadata::new();
        state.apply(&MetadataRecord::RegisterBroker {
            id: 1,
            host: "h".into(),
            port: 9092,
            incarnation: 7,
            listeners: Vec::new(),
            rack: Some("r1".into()),
            inter_broker: None,
            features: None,
            bootstrap: None,
        });
        state
            .cluster_configs
            .insert("log.retention.ms".into(), "1000".into());
        let body = serde_json::to_string(&Image {
            offset: 42,
            state: &state,
        })
        .expect("encodes");
        for format in [1, crate::storage::format::READS] {
            let text = small_file::text(format, &body);
            assert_eq!(offset_of(text.as_bytes()), Some(42));
            // A torn text is no snapshot.
            assert_eq!(offset_of(&text.as_bytes()[..text.len() - 3]), None);
        }
        let back: Image<ClusterMetadata> = serde_json::from_str(&body).expect("decodes");
        assert_eq!(back.offset, 42);
        assert_eq!(back.state.brokers, state.brokers);
        assert_eq!(back.state.cluster_configs, state.cluster_configs);
        assert_eq!(back.state.next_group, state.next_group);
    }

    /// A snapshot of a large cluster's metadata travels packed: its JSON over the 12 MiB one
    /// Raft message may carry, packed well under it (so the log below it is cut, not kept),
    /// and unpacked to the same text; a packed text that would unpack past the bound is
    /// refused, and a text sent unpacked (by a broker from before packing) is taken as it is.
    /// Volume: 40,000 topics of 3 partitions on 3 brokers (~17 MiB of JSON).
    #[test]
    fn a_large_clusters_snapshot_is_sent_packed_and_unpacked_to_the_same_text() {
        let mut state = ClusterMetadata::new();
        for id in 1..=3 {
            state.apply(&MetadataRecord::RegisterBroker {
                id,
                host: format!("broker-{id}.example.internal"),
                port: 9092,
                incarnation: 1,
                listeners: Vec::new(),
                rack: None,
                inter_broker: None,
                features: None,
                bootstrap: None,
            });
        }
        state.apply(&MetadataRecord::CreateTopic {
            request: 1,
            name: "service-events".into(),
            id: crate::controller::records::id_text(1),
            partitions: 3,
            replication_factor: 3,
            assignments: Some(vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]),
            overrides: [("retention.ms".to_string(), "3600000".to_string())].into(),
        });
        // The same topic made again under other names and ids (applying each would make the
        // test slow, not the state more real).
        let one = state.topics.values().next().expect("made").clone();
        for n in 2..=40_000u64 {
            let mut t = one.clone();
            t.name = format!("service-{}-events-{n}", n % 97);
            t.id = n as u128 * 0x9e37_79b9_7f4a_7c15;
            t.overrides = [("retention.ms".to_string(), format!("{}", 3_600_000 + n))].into();
            state.topics.insert(t.name.clone(), t);
        }
        let body = serde_json::to_string(&Image {
            offset: 7,
            state: &state,
        })
        .expect("encodes");
        let text = small_file::text(crate::storage::format::READS, &body);
        assert!(
            text.len() > SEND_BYTES_MAX,
            "the test's state is too small: {} bytes",
            text.len()
        );
        let packed = small_file::pack(text.as_bytes());
        assert!(
            sendable(text.len(), packed.len()),
            "{} bytes packed to {}",
            text.len(),
            packed.len()
        );
        let back = small_file::unpack(&packed, crate::storage::log::STATE_SNAPSHOT_BYTES_MAX)
            .expect("unpacks");
        assert_eq!(back, text.as_bytes());
        assert_eq!(offset_of(&back), Some(7));
        assert!(small_file::unpack(&packed, text.len() - 1).is_err());
        assert_eq!(
            small_file::unpack(text.as_bytes(), 16).expect("plain"),
            text.as_bytes()
        );
        assert!(!sendable(SEND_BYTES_MAX * 30, SEND_BYTES_MAX));
    }
}

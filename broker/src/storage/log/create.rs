//! A new partition's files, and what a start restores of an unsettled one.
//!
//! Invariant: a replicated partition made here is unsettled — its directory and first segment
//! are not synced, and its entries are durable only as pieces of the data directory's file of
//! hard states (`storage::raft_states`) — until the commit pipeline settles it; a start writes
//! an unsettled partition's pieces into its first segment again before recovering it.

use std::collections::BTreeMap;
use std::path::Path;

use io_backend::OpenMode;

use super::replica::{ReplicaMeta, ReplicaState};
use super::{segment_name, LogConfig, Naming, Partition, PartitionState, Segment};
use crate::producer_state::ProducerStates;
use crate::storage::io::{Io, StorageError};
use crate::storage::raft_states::{pieces_end, Piece};

/// A new partition in `dir`, which does not exist: the directory and its first segment, the
/// directory synced so that the segment's name is durable before anything is written to it —
/// except for a replicated one, made unsettled (its first entries are kept in the data
/// directory's file of hard states until it is settled: `storage::raft_states`). Nothing else
/// is written: recovery of an empty log derives its Raft record (its first Raft index follows
/// its snapshot point), and a crash leaves a directory that recovers as this. A few disk
/// operations, where [`recover`] of an empty directory takes about a dozen and four syncs.
pub async fn create(
    io: &Io,
    dir: &Path,
    of: Naming<'_>,
    config: LogConfig,
    replicated: bool,
) -> Result<Partition, StorageError> {
    io.create_dir_all(dir).await?;
    let file = io
        .open(&dir.join(segment_name(0, "log")), OpenMode::Create)
        .await?;
    if !replicated {
        io.sync_dir(dir).await?;
    }
    let mut segments = BTreeMap::new();
    segments.insert(0, Segment::empty(0, file));
    let replica = replicated.then(|| {
        let mut meta = ReplicaMeta::default();
        // The log holds its group's first entry from its first segment on (what
        // `recover_replica` records for an empty log).
        let first_index = meta.prev.0 + 1;
        meta.segments.insert(0, first_index);
        let mut replica = ReplicaState {
            next_index: first_index,
            undo_from: first_index,
            unsettled: Some(0),
            ..ReplicaState::default()
        };
        // No file: recovery finds the same record, which tells nothing of its own.
        replica.meta_is_written(&meta, 0);
        replica.meta = meta;
        replica
    });
    Ok(Partition::new(
        of,
        dir.to_path_buf(),
        config,
        PartitionState::new(segments, 0, ProducerStates::default(), replica),
    ))
}

/// Before an unsettled partition in `dir` is recovered: its pieces written into its first
/// segment again (the directory and segment made if a crash lost them) and the segment cut at
/// their end, without a sync — the pieces stay durable where they are. A piece is written to
/// the segment only once durable, so this gives back every entry a crash lost or tore, and
/// what lies past the pieces' end was never acknowledged.
pub async fn restore_pieces(io: &Io, dir: &Path, pieces: &[Piece]) -> Result<(), StorageError> {
    io.create_dir_all(dir).await?;
    let file = io
        .open(&dir.join(segment_name(0, "log")), OpenMode::Create)
        .await?;
    for piece in pieces {
        io.write_at(&file, piece.data.clone(), piece.position)
            .await?;
    }
    io.truncate(&file, pieces_end(pieces)).await?;
    crate::coverage::reached(crate::coverage::Event::PiecesRestored);
    Ok(())
}

/// After a start recovered a replicated partition: `Some(bytes)` if it is unsettled — it had
/// `pieces`, or its log holds no entry yet (a partition made and never written, whose files'
/// names may not be durable; taking a settled one for unsettled costs nothing but a settling
/// later) — `None` if settled.
pub fn unsettled_after_start(p: &Partition, pieces: Option<&[Piece]>) -> Option<u64> {
    if let Some(pieces) = pieces {
        return Some(pieces.iter().map(|p| p.data.len() as u64).sum());
    }
    let st = p.state();
    let r = st.replica.as_ref()?;
    let empty = st.segments.len() == 1
        && st.segments.get(&0).is_some_and(|s| s.size == 0)
        && r.next_index == r.meta.prev.0 + 1
        && r.meta.prev.0 == 0;
    empty.then_some(0)
}

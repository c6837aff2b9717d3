//! What one commit round takes from the pipeline's queue: the commands queued behind its first,
//! within bounds on appends, bytes, records and partitions. The bounds keep a round a piece of
//! work a healthy disk finishes well within the I/O deadline; what is left waits for the next
//! round, in queue order.

use super::log;
use super::pipeline::Pipeline;
use super::Command;
use crate::batch;

/// Appends taken into one commit round at most (the rest wait for the next round).
pub const ROUND_APPENDS_MAX: usize = 4096;
const ROUND_BYTES_MAX: usize = 32 << 20;
/// Records taken into one round at most: what one round appends to a partition must fit the
/// relative offsets of one segment (a fresh one, if the active segment has no room left).
const ROUND_RECORDS_MAX: i64 = log::RELATIVE_OFFSET_MAX / 2;
/// Partitions written in one round at most. A round is answered within the I/O deadline, and
/// its disk operations queue for a few disk threads: a partition's share is one sync for its
/// data, and for a Raft write up to three more (its Raft record, its hard state, their
/// directory) with an open and a rename per file (an election). 300 partitions created at once
/// on three brokers of one host gave rounds of 1,500 syncs that outlasted the deadline on a
/// disk that was only busy, and every node declared its directory failed. 64 partitions' worst
/// is 64 syncs per disk thread of the default four. Fewer when the directory's queue is
/// narrower (a device that serves slowly).
pub const ROUND_PARTITIONS_MAX: usize = 64;

impl Pipeline {
    /// The round that begins with `first`: every command queued behind it, up to the bounds. A
    /// command that would make the round write one partition too many is carried to the next.
    pub(super) fn take_round(&mut self, first: Command) -> Vec<Command> {
        // No more partitions writing files of their own than the directory's queue lets into
        // the device at once: a round is then about one turn of the device, whatever its speed
        // ([`super::gate`]). Hard states alone are not counted: all of them together are one
        // frame and one sync of the directory's file, so a round takes every vote queued (the
        // elections of many groups are written as one).
        let most = ROUND_PARTITIONS_MAX.min(self.io().gate.width()).max(1);
        let mut partitions = std::collections::HashSet::new();
        partitions.extend(first.partition().filter(|_| writes_files(&first)));
        let mut taken = vec![first];
        let mut bytes = 0usize;
        let mut records = 0i64;
        while taken.len() < ROUND_APPENDS_MAX
            && bytes < ROUND_BYTES_MAX
            && records < ROUND_RECORDS_MAX
        {
            let Ok(cmd) = self.rx.try_recv() else {
                break;
            };
            if let Some(p) = cmd.partition().filter(|_| writes_files(&cmd)) {
                if !partitions.contains(&p) && partitions.len() >= most {
                    // The next round's first, ahead of everything queued behind it.
                    self.carried = Some(cmd);
                    break;
                }
                partitions.insert(p);
            }
            match &cmd {
                Command::Append(a) => {
                    bytes += a.payload.len();
                    records += batch::record_count(&a.headers);
                }
                Command::Raft(w, _) => {
                    bytes += w.entries.iter().map(|e| e.data.len()).sum::<usize>();
                    records += w.entries.len() as i64;
                }
                Command::Retire { .. } => {}
            }
            taken.push(cmd)
        }
        taken
    }
}

/// Whether the command writes files of its partition (and syncs them): an append, Raft
/// entries, a cut or reset, a membership record. A Raft write of a hard state alone (a vote, a
/// new term, a commit index) is only a frame of the directory's shared file.
fn writes_files(cmd: &Command) -> bool {
    match cmd {
        Command::Append(_) => true,
        Command::Raft(w, _) => {
            !w.entries.is_empty()
                || w.reset.is_some()
                || w.truncate_from.is_some()
                || w.conf.is_some()
        }
        Command::Retire { .. } => false,
    }
}

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
    /// The round that begins with `first`: the commands carried from the last round, then
    /// every command queued, up to the bounds. A command that would make the round write one
    /// partition's files too many is carried to the next round, with every later command of
    /// its partition (each partition's commands keep their order); the commands behind it that
    /// fit still join this round. So the hard states of many groups (votes, a thousand new
    /// partitions' first terms) are written in the next round, not behind every partition's
    /// own write queued before them. A retirement ends the round: what is behind it waits.
    pub(super) fn take_round(&mut self, first: Command) -> Vec<Command> {
        // No more partitions writing files of their own than the directory's queue lets into
        // the device at once: a round is then about one turn of the device, whatever its speed
        // ([`super::gate`]). Hard states alone are not counted: all of them together are one
        // frame and one sync of the directory's file.
        let most = ROUND_PARTITIONS_MAX.min(self.io().gate.width()).max(1);
        let mut partitions = std::collections::HashSet::new();
        let mut held_back = std::collections::HashSet::new();
        let mut carried = std::collections::VecDeque::new();
        let mut earlier = std::mem::take(&mut self.carried);
        let mut taken = Vec::new();
        let mut bytes = 0usize;
        let mut records = 0i64;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            let full = taken.len() >= ROUND_APPENDS_MAX
                || bytes >= ROUND_BYTES_MAX
                || records >= ROUND_RECORDS_MAX;
            if full || matches!(cmd, Command::Retire { .. }) && !taken.is_empty() {
                // The rest waits, in order.
                carried.push_back(cmd);
                carried.append(&mut earlier);
                break;
            }
            let partition = cmd.partition();
            let own_files = partition.filter(|_| writes_files(&cmd));
            let wait = partition.is_some_and(|p| held_back.contains(&p))
                || own_files.is_some_and(|p| !partitions.contains(&p) && partitions.len() >= most);
            if wait {
                held_back.extend(partition);
                carried.push_back(cmd);
            } else {
                partitions.extend(own_files);
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
                let retire = matches!(cmd, Command::Retire { .. });
                taken.push(cmd);
                if retire {
                    carried.append(&mut earlier);
                    break;
                }
            }
            // Commands carried before come first; new ones only while few wait (what waits
            // here is out of the queue's bound).
            next = earlier.pop_front().or_else(|| {
                let pulled = (carried.len() < ROUND_APPENDS_MAX)
                    .then(|| self.rx.try_recv().ok())
                    .flatten();
                self.pulled += i64::from(pulled.is_some());
                pulled
            });
        }
        self.carried = carried;
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

//! How each finding reads: one sentence naming what was seen, where and when.

use super::{short, Finding, NotLatest};

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::LostWrite {
                partition,
                value,
                seen,
            } => write!(
                f,
                "lost write: {:?} ({seen} in partition {partition}) is not in the log",
                short(value)
            ),
            Finding::Duplicate {
                partition,
                value,
                offsets,
                attempts,
            } => write!(
                f,
                "duplicate: {:?} is at offsets {offsets:?} of partition {partition} but could have \
                 been written {attempts} time(s)",
                short(value)
            ),
            Finding::InconsistentOffset {
                partition,
                offset,
                seen,
            } => write!(
                f,
                "inconsistent offset {partition}/{offset}: {}",
                seen.join("; ")
            ),
            Finding::NonMonotonicSend {
                producer,
                partition,
                previous,
                offset,
            } => write!(
                f,
                "non-monotonic send: producer {producer} was acknowledged offset {offset} in \
                 partition {partition} after offset {previous}"
            ),
            Finding::NonMonotonicPoll {
                consumer,
                partition,
                previous,
                offset,
            } => write!(
                f,
                "non-monotonic poll: consumer {consumer} read offset {offset} of partition \
                 {partition} after offset {previous}"
            ),
            Finding::PollSkip {
                consumer,
                partition,
                from,
                to,
                skipped,
            } => write!(
                f,
                "poll skip: consumer {consumer} went from offset {from} to {to} in partition \
                 {partition}, skipping {} record(s) in the log (first: {:?})",
                skipped.len(),
                &skipped[..skipped.len().min(5)]
            ),
            Finding::FailedWriteRead {
                partition,
                value,
                offset,
                codes,
            } => write!(
                f,
                "read of a failed write: {:?} at {partition}/{offset}, although every attempt \
                 definitely failed (error codes {codes:?})",
                short(value)
            ),
            Finding::PhantomRead {
                partition,
                value,
                offset,
            } => write!(
                f,
                "phantom read: {:?} at {partition}/{offset} was never sent",
                short(value)
            ),
            Finding::Unseen {
                partition,
                count,
                first,
            } => write!(
                f,
                "unseen: {count} acknowledged write(s) in partition {partition} were never \
                 polled by a consumer (first: {:?})",
                first.iter().map(short).collect::<Vec<_>>()
            ),
            Finding::Hung {
                node,
                at_s,
                waited_s,
                stuck,
            } => write!(
                f,
                "liveness: node {node} did not answer a produce for {waited_s} s (at t={at_s:.1} s); \
                 {stuck}"
            ),
            Finding::NoProgress {
                partition,
                what,
                healed_s,
                deadline_s,
                stuck,
            } => write!(
                f,
                "liveness: partition {partition} {what} within {deadline_s} s after the faults \
                 healed at t={healed_s} s; then: {stuck}"
            ),
            Finding::Refused { count, first_code } => write!(
                f,
                "{count} produce request(s) refused (first error code {first_code}) although \
                 nothing justified a refusal"
            ),
            Finding::TooFewAcknowledged {
                acknowledged,
                floor,
            } => write!(
                f,
                "progress: {acknowledged} record(s) acknowledged in the run, where the scenario \
                 asks for at least {floor}"
            ),
            Finding::Slow {
                figure,
                value,
                bound,
            } => write!(
                f,
                "slow: {figure} was {value:.2}, outside the scenario's bound {bound} (measured \
                 outside fault windows)"
            ),
            Finding::SequenceRefused {
                producer,
                partition,
                producer_id,
                sequence,
            } => write!(
                f,
                "sequence refused: producer {producer} (id {producer_id}) sent sequence {sequence} \
                 to partition {partition} right after the one before was acknowledged, and was \
                 told OUT_OF_ORDER_SEQUENCE_NUMBER"
            ),
            Finding::CommitRegressed {
                partition,
                previous,
                offset,
                member,
                generation,
            } => write!(
                f,
                "committed offset went backwards: partition {partition} from {previous} to \
                 {offset} (member {member}, generation {generation})"
            ),
            Finding::StaleCommittedRead {
                partition,
                read,
                acknowledged,
                member,
                at_s,
            } => write!(
                f,
                "stale committed offset: member {member} read {read} for partition {partition} \
                 at {at_s:.3} s, after {acknowledged} was acknowledged"
            ),
            Finding::DoubleOwner {
                generation,
                partition,
                members,
            } => write!(
                f,
                "double owner: partition {partition} was given to {members:?} in generation \
                 {generation}"
            ),
            Finding::ReplicaBehind {
                partition,
                node,
                end,
                wanted,
            } => write!(
                f,
                "replica behind: {node}'s log of partition {partition} ends at log offset {end} \
                 after the run settled, where the others reach {wanted}"
            ),
            Finding::FloodHeld {
                broker,
                port,
                at_s,
                why,
            } => write!(
                f,
                "flood held: the flood of broker-{}'s {port} port at {at_s:.1} s: {why}",
                broker + 1
            ),
            Finding::QuotaNotHeld { why } => write!(f, "quota not held: {why}"),
            Finding::OwnedTwice {
                partition,
                generation,
                holder,
                taker,
                at_s,
            } => write!(
                f,
                "owned twice: at {at_s:.3} s partition {partition} was given to {taker} in \
                 generation {generation} while {holder}, a member of that generation, still \
                 owned it"
            ),
            Finding::CommitMismatch {
                partition,
                committed,
                processed,
                log_end,
            } => write!(
                f,
                "commit mismatch: the group committed {committed} for partition {partition}, \
                 its members read to {processed}, the log ends at {log_end}"
            ),
            Finding::GroupUnconsumed {
                partition,
                count,
                first,
            } => write!(
                f,
                "group unconsumed: {count} acknowledged write(s) in partition {partition} were \
                 never polled by a member of the group (first: {:?})",
                first.iter().map(short).collect::<Vec<_>>()
            ),
            Finding::GroupNotDrained { partitions } => write!(
                f,
                "liveness: the group did not read and commit partitions {partitions:?} to their \
                 end in time"
            ),
            Finding::ReplicaDivergence {
                partition,
                offset,
                nodes,
            } => write!(
                f,
                "replicas disagree: partition {partition} at offset {offset} below the high \
                 watermark differs between {}",
                nodes.join(" and ")
            ),
            Finding::OffsetGap {
                partition,
                expected,
                found,
            } => write!(
                f,
                "offsets not dense: partition {partition} read back has offset {found} where \
                 {expected} was next (no compaction or transaction leaves a gap)"
            ),
            Finding::WatermarkBackwards {
                partition,
                before,
                after,
                at_s,
            } => write!(
                f,
                "high watermark went back: partition {partition} was {before}, then {after} at \
                 t={at_s:.1} s"
            ),
            Finding::TwoLeaders {
                partition,
                epoch,
                leaders,
            } => write!(
                f,
                "two leaders in one epoch: partition {partition} epoch {epoch} led by {leaders:?}"
            ),
            Finding::BoundBroken {
                node,
                bound,
                peak,
                limit,
            } => write!(
                f,
                "bound broken: {node} held {peak} of {bound}, whose bound is {limit}"
            ),
            Finding::ElectionStorm {
                from_s,
                to_s,
                elections,
                bound,
            } => write!(
                f,
                "election storm: {elections} elections from {from_s:.0} s to {to_s:.0} s, where its faults allow {bound}"
            ),
            Finding::Leaderless { node, at_s, groups } => write!(
                f,
                "leaderless: {node} had {groups} Raft group(s) without a leader at {at_s:.0} s, with no fault in force or settling"
            ),
            Finding::LeadershipImbalance {
                node,
                leaders,
                share,
            } => write!(
                f,
                "leadership imbalance: {node} led {leaders} groups at the end of a settled run, where an even share is {share:.0}"
            ),
            Finding::DirFailed { node, times } => write!(
                f,
                "data directory failed: {node}'s was declared failed {times} time(s) with no disk fault in the run"
            ),
            Finding::LockOrderInversion {
                first,
                second,
                first_at,
                second_at,
            } => write!(
                f,
                "lock-order inversion: {first} then {second} ({first_at}), and the other way round ({second_at})"
            ),
            Finding::LeaderRefuses {
                broker,
                partition,
                epoch,
                refused_at_s,
                named_at_s,
            } => write!(
                f,
                "leader that refuses: broker {broker} refused a produce to partition {partition} as not its leader at t={refused_at_s:.1} s and acknowledged none there since, yet named itself its leader in epoch {epoch} at t={named_at_s:.1} s"
            ),
            Finding::ServedUnauthorized(d) => write!(
                f,
                "served unauthorized: {d} allowed it, although no point in that range did"
            ),
            Finding::RefusedAuthorized(d) => write!(
                f,
                "refused authorized: {d} refused it, although every point in that range allowed it"
            ),
            Finding::SecurityDiverged { offset, what } => write!(
                f,
                "security metadata diverged at offset {offset} of the metadata log: {what}"
            ),
            Finding::SecurityUnapplied {
                broker,
                furthest,
                change,
                settled_s,
            } => write!(
                f,
                "security change unapplied: {broker} applied the metadata log only to offset {furthest}, never the change at {change} that another broker had applied by t={settled_s:.1} s"
            ),
            Finding::MembershipDiverged {
                group,
                index,
                nodes,
                members,
            } => write!(
                f,
                "membership diverged: group {group} at index {index}: nodes {nodes:?} applied {}",
                members.join(" and ")
            ),
            Finding::RetireUnfinished { what, why } => write!(f, "{what} did not end: {why}"),
            Finding::MetadataDiverged {
                broker,
                topic,
                expected,
            } => write!(
                f,
                "metadata diverged: after the run {broker} {} topic {topic:?}, which the admin \
                 client was told was {}",
                if *expected { "does not list" } else { "lists" },
                if *expected { "created" } else { "deleted" }
            ),
            Finding::Txn {
                anomaly,
                reader,
                detail,
            } => write!(
                f,
                "transactions: {} (reader {reader}): {detail}",
                anomaly.meaning()
            ),
            Finding::Acks0Blackholed {
                producer,
                partition,
                sent,
                broker,
                since_s,
            } => write!(
                f,
                "acks=0 writes black-holed: none of producer {producer}'s {sent} sends to \
                 partition {partition} from {since_s:.1} s on (every fault healed, the liveness \
                 deadline past; the first sent to {broker}) is in the log"
            ),
            Finding::StopStalled {
                stop,
                node,
                partition,
                gap_s,
                since_s,
                bound_s,
            } => write!(
                f,
                "writes stalled by a planned stop: partition {partition} took no acknowledged \
                 write for {gap_s:.2} s from {since_s:.3} s, while {node} stopped ({stop}; at \
                 most {bound_s} s: its leaderships are handed over first)"
            ),
            Finding::CutStalled {
                cut,
                partition,
                gap_s,
                since_s,
                bound_s,
            } => write!(
                f,
                "writes did not resume during a cut: partition {partition} took no acknowledged \
                 write for {gap_s:.2} s from {since_s:.3} s, while {cut} (at most {bound_s} s: \
                 the side the clients can reach elects leaders and they must follow)"
            ),
            Finding::MoveStalled {
                partition,
                moving,
                gap_s,
                since_s,
                bound_s,
            } => write!(
                f,
                "writes stalled during a move: partition {partition}, moving from {:.3} s to \
                 {:.3} s, took no acknowledged write for {gap_s:.2} s from {since_s:.3} s, and no \
                 fault explains it (at most {bound_s} s: a new replica is made a voter only once \
                 it has caught up)",
                moving.0,
                moving.1
            ),
            Finding::ConfigLost {
                broker,
                at_s,
                topic,
                key,
                found,
                acknowledged,
            } => write!(
                f,
                "config update lost: {} {broker} describes {key} of topic {topic:?} as {found:?}, \
                 though the last change to it acknowledged before was \"{acknowledged}\"",
                match at_s {
                    Some(t) => format!("at {t:.3} s"),
                    None => "after the run".into(),
                }
            ),
            Finding::NotLatest {
                how,
                partition,
                key,
                acked,
                read,
            } => {
                let what = match how {
                    NotLatest::Lost => "latest lost",
                    NotLatest::Stale => "stale value",
                    NotLatest::Resurrected => "resurrected",
                };
                let found = match read {
                    Some((offset, name)) => format!("{name:?} at offset {offset}"),
                    None => "no record of it".into(),
                };
                write!(
                    f,
                    "{what}: key {key:?} of partition {partition} was last acknowledged as \
                     {:?} at offset {}, but reading the compacted log from its start finds {found}",
                    acked.1, acked.0
                )
            }
            Finding::ScanMissed {
                reader,
                partition,
                started_s,
                key,
                latest,
                read_at_s,
                horizon_s,
            } => {
                let what = match horizon_s {
                    Some(h) => format!("its tombstone {:?}, which could expire at {h:.3} s at the earliest", latest.1),
                    None => format!("its latest value {:?}", latest.1),
                };
                write!(
                    f,
                    "scan missed: far-behind reader {reader}'s read of partition {partition} from \
                     its start (begun at {started_s:.3} s) went past offset {} at {read_at_s:.3} s \
                     without key {key:?}'s latest record, {what}",
                    latest.0
                )
            }
            Finding::MoveUnfinished {
                group,
                epoch,
                target,
                why,
            } => write!(
                f,
                "move unfinished: group {group}'s move to {target:?} (epoch {epoch}): {why}"
            ),
        }
    }
}

//! Raft's hard state (term, vote, commit) as a partition keeps it: in the data directory's
//! file of hard states (`storage::raft_states`), or, written by an older version, in the
//! partition's own file `raft-state`, which a start still reads for a partition that file has
//! no record of.

use serde::{Deserialize, Serialize};

/// The file of a partition's Raft hard state an older version wrote.
pub const HARD_STATE_FILE: &str = "raft-state";

/// Raft's hard state as a partition keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardStateRecord {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

impl HardStateRecord {
    pub fn encode(&self) -> String {
        format!(
            "term={} vote={} commit={}",
            self.term, self.vote, self.commit
        )
    }

    pub fn decode(body: &str) -> Result<HardStateRecord, String> {
        let mut record = HardStateRecord::default();
        let mut seen = 0;
        for field in body.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("bad field {field:?}"))?;
            let value: u64 = value
                .parse()
                .map_err(|_| format!("bad number in {field:?}"))?;
            match key {
                "term" => record.term = value,
                "vote" => record.vote = value,
                "commit" => record.commit = value,
                _ => return Err(format!("unknown field {key:?}")),
            }
            seen += 1;
        }
        if seen != 3 {
            return Err("want term, vote and commit".into());
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_file_round_trips_and_refuses_nonsense() {
        let hs = HardStateRecord {
            term: 7,
            vote: 2,
            commit: 99,
        };
        assert_eq!(HardStateRecord::decode(&hs.encode()), Ok(hs));
        assert!(HardStateRecord::decode("term=1 vote=2").is_err());
        assert!(HardStateRecord::decode("term=x vote=2 commit=3").is_err());
    }
}

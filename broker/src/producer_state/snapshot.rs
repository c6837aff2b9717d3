//! The producer state's snapshot file (`<base offset>.snapshot`): a version, every producer's
//! entry, and the CRC-32 of all that precedes it.

use std::collections::{HashMap, VecDeque};

use super::{BatchMeta, ProducerEntry, ProducerStates, BATCHES_RETAINED};

impl ProducerStates {
    /// The snapshot file's content: version, entries, CRC-32 of all that precedes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<_> = self.entries.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(8 + ids.len() * 64);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &self.entries[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_write_ms.to_be_bytes());
            out.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Read a snapshot written by [`ProducerStates::encode`]; why not, if it is damaged.
    pub fn decode(data: &[u8]) -> Result<ProducerStates, String> {
        let (body, crc) = data
            .split_last_chunk::<4>()
            .ok_or_else(|| "shorter than its checksum".to_string())?;
        let stored = u32::from_be_bytes(*crc);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(format!(
                "checksum {stored:08x} does not match {computed:08x}"
            ));
        }
        let mut r = Reader(body);
        let version = r.u16()?;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(format!("unknown snapshot version {version}"));
        }
        let count = r.u32()?;
        let mut entries = HashMap::new();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_write_ms = r.i64()?;
            let (txn_first_offset, coordinator_epoch) = match version {
                1 => (None, -1),
                _ => (Some(r.i64()?).filter(|o| *o >= 0), r.i32()?),
            };
            let n = r.u8()? as usize;
            if n > BATCHES_RETAINED {
                return Err(format!("{n} batches for producer {id}"));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            entries.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_write_ms,
                    txn_first_offset,
                    coordinator_epoch,
                },
            );
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the last entry", r.0.len()));
        }
        Ok(ProducerStates::from_entries(entries))
    }
}

/// Version 2 added each producer's open transaction and coordinator epoch; version 1 is read.
const SNAPSHOT_VERSION: u16 = 2;

/// Big-endian fields off the front of a snapshot.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| "cut short".to_string())?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

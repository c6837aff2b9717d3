//! A file's bytes as the simulated disk keeps them: what reads see, what a crash comes back
//! to, and the changes between the two.

use bytes::Bytes;

/// A change not yet made durable by `sync_data`.
#[derive(Clone)]
pub(super) enum Pending {
    Write { offset: u64, data: Bytes },
    Truncate(u64),
}

/// A file's bytes: `len` long, of which the first `bytes.len()` are held and the rest are zeros
/// (a file grown by `truncate`, as preallocation does, costs nothing until written).
#[derive(Clone, Default, Debug)]
pub(super) struct Content {
    pub(super) bytes: Vec<u8>,
    pub(super) len: usize,
}

impl Content {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.len = 0;
    }

    /// `len` bytes from `start` (fewer past the end).
    pub(super) fn read(&self, start: usize, len: usize) -> Vec<u8> {
        let start = start.min(self.len);
        let end = (start + len).min(self.len);
        let mut out = vec![0; end - start];
        let held = end.min(self.bytes.len());
        if start < held {
            out[..held - start].copy_from_slice(&self.bytes[start..held]);
        }
        out
    }
}

/// Equal when they read the same (held zeros and implied ones alike).
impl PartialEq for Content {
    fn eq(&self, other: &Content) -> bool {
        let zeros = |b: &[u8]| b.iter().all(|&x| x == 0);
        let common = self.bytes.len().min(other.bytes.len());
        self.len == other.len
            && self.bytes[..common] == other.bytes[..common]
            && zeros(&self.bytes[common..])
            && zeros(&other.bytes[common..])
    }
}

/// One file's contents (an inode: open handles keep it across renames and removals).
#[derive(Default)]
pub(super) struct Inode {
    pub(super) durable: Content,
    pub(super) current: Content,
    pub(super) pending: Vec<Pending>,
}

impl Inode {
    pub(super) fn apply(c: &mut Content, change: &Pending) {
        match change {
            Pending::Write { offset, data } => {
                let end = *offset as usize + data.len();
                // Zeros past the bytes held (preallocation) only lengthen the file.
                if *offset as usize >= c.bytes.len() && data.iter().all(|&b| b == 0) {
                    c.len = c.len.max(end);
                    return;
                }
                if c.bytes.len() < end {
                    c.bytes.resize(end, 0);
                }
                c.bytes[*offset as usize..end].copy_from_slice(data);
                c.len = c.len.max(end);
            }
            Pending::Truncate(len) => {
                let len = *len as usize;
                c.bytes.truncate(len);
                c.len = len;
            }
        }
    }
}

//! The path table: which path under the backing directory each inode number the kernel holds
//! stands for, and the dirty data of each file.
//!
//! Invariant: `by_path` and the nodes' paths agree — a path maps to the node whose path it is,
//! and a node without a path (unlinked, or replaced by a rename) is in no entry of `by_path`.
//! A node is removed only when the kernel has forgotten it, no handle has it open and it holds
//! no dirty data that its path could still reach; the root is never removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::extents::Extents;

/// The inode number FUSE gives the mount's root.
pub(crate) const ROOT: u64 = 1;

/// One file's (or directory's) volatile state. Shared by `Arc` so that write-back and reads
/// can hold it without holding the table.
#[derive(Debug, Default)]
pub(crate) struct Inode {
    pub(crate) data: Mutex<FileData>,
    /// The dirty bytes of `data.extents`, readable without its lock (to pick the largest
    /// dirty file when the cap is reached).
    pub(crate) dirty_bytes: AtomicU64,
}

/// What a file's lock guards.
#[derive(Debug, Default)]
pub(crate) struct FileData {
    pub(crate) extents: Extents,
    /// A writable handle of the backing file, kept while there are extents to write back
    /// (so that they can be, even after the file was renamed, unlinked or closed).
    pub(crate) writer: Option<Arc<std::fs::File>>,
}

impl Inode {
    pub(crate) fn dirty(&self) -> u64 {
        self.dirty_bytes.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Node {
    /// Relative to the backing directory ("" is the root); `None` once unlinked.
    path: Option<PathBuf>,
    /// Lookups the kernel has not yet forgotten.
    lookups: u64,
    /// Open handles (files and directories).
    open: u64,
    inode: Arc<Inode>,
}

/// Inode number ⇄ relative path.
#[derive(Debug)]
pub(crate) struct InodeTable {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
}

impl InodeTable {
    pub(crate) fn new() -> Self {
        let mut t = InodeTable {
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            next_ino: ROOT + 1,
        };
        t.nodes.insert(
            ROOT,
            Node {
                path: Some(PathBuf::new()),
                lookups: 1,
                open: 0,
                inode: Arc::default(),
            },
        );
        t.by_path.insert(PathBuf::new(), ROOT);
        t
    }

    /// The relative path of `ino`, if it still has one.
    pub(crate) fn path(&self, ino: u64) -> Option<PathBuf> {
        self.nodes.get(&ino)?.path.clone()
    }

    pub(crate) fn inode(&self, ino: u64) -> Option<Arc<Inode>> {
        self.nodes.get(&ino).map(|n| n.inode.clone())
    }

    /// The inode number a path has, if the kernel knows it.
    pub(crate) fn ino_of(&self, path: &Path) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The kernel learns (again) of `path`: its inode, made if new, with one more lookup.
    pub(crate) fn lookup(&mut self, path: &Path) -> (u64, Arc<Inode>) {
        if let Some(&ino) = self.by_path.get(path) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.lookups += 1;
                return (ino, node.inode.clone());
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let inode = Arc::<Inode>::default();
        self.nodes.insert(
            ino,
            Node {
                path: Some(path.to_path_buf()),
                lookups: 1,
                open: 0,
                inode: inode.clone(),
            },
        );
        self.by_path.insert(path.to_path_buf(), ino);
        (ino, inode)
    }

    /// The kernel forgets `n` lookups of `ino`. Returns the node's inode if that removed it
    /// (its dirty data, unreachable now, is the caller's to discard).
    pub(crate) fn forget(&mut self, ino: u64, n: u64) -> Option<Arc<Inode>> {
        let node = self.nodes.get_mut(&ino)?;
        node.lookups = node.lookups.saturating_sub(n);
        self.collect(ino)
    }

    pub(crate) fn opened(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.open += 1;
        }
    }

    /// A handle of `ino` was released; as [`forget`](Self::forget).
    pub(crate) fn closed(&mut self, ino: u64) -> Option<Arc<Inode>> {
        let node = self.nodes.get_mut(&ino)?;
        node.open = node.open.saturating_sub(1);
        self.collect(ino)
    }

    /// `path` was unlinked (or removed as a directory).
    pub(crate) fn unlinked(&mut self, path: &Path) -> Option<Arc<Inode>> {
        let ino = self.by_path.remove(path)?;
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.path = None;
        }
        self.collect(ino)
    }

    /// `from` was renamed to `to` (or, with `exchange`, the two swapped). Paths below a renamed
    /// directory follow it. Returns the inode of a replaced target if that removed it.
    pub(crate) fn renamed(&mut self, from: &Path, to: &Path, exchange: bool) -> Option<Arc<Inode>> {
        let mut removed = None;
        if !exchange {
            if let Some(old) = self.by_path.remove(to) {
                if let Some(node) = self.nodes.get_mut(&old) {
                    node.path = None;
                }
                removed = self.collect(old);
            }
        }
        let mut moved = Vec::new();
        for (&ino, node) in &self.nodes {
            let Some(p) = &node.path else { continue };
            let new = if let Ok(rest) = p.strip_prefix(from) {
                rebase(to, rest)
            } else if let (true, Ok(rest)) = (exchange, p.strip_prefix(to)) {
                rebase(from, rest)
            } else {
                continue;
            };
            moved.push((ino, p.clone(), new));
        }
        for (_, old, _) in &moved {
            self.by_path.remove(old);
        }
        for (ino, _, new) in moved {
            self.by_path.insert(new.clone(), ino);
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = Some(new);
            }
        }
        removed
    }

    /// Every node's inode with its path, in path order (unlinked ones last, by inode number):
    /// a stable order for a seeded choice.
    pub(crate) fn all(&self) -> Vec<(u64, Option<PathBuf>, Arc<Inode>)> {
        let mut v: Vec<_> = self
            .nodes
            .iter()
            .map(|(&ino, n)| (ino, n.path.clone(), n.inode.clone()))
            .collect();
        v.sort_by(|a, b| match (&a.1, &b.1) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.0.cmp(&b.0),
        });
        v
    }

    /// Remove every node that nothing holds any more (after a crash dropped dirty data).
    pub(crate) fn collect_all(&mut self) -> Vec<Arc<Inode>> {
        let inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.into_iter().filter_map(|i| self.collect(i)).collect()
    }

    /// The inode holding the most dirty bytes, if any holds some.
    pub(crate) fn largest_dirty(&self) -> Option<Arc<Inode>> {
        self.nodes
            .values()
            .map(|n| &n.inode)
            .filter(|i| i.dirty() > 0)
            .max_by_key(|i| i.dirty())
            .cloned()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    fn collect(&mut self, ino: u64) -> Option<Arc<Inode>> {
        let node = self.nodes.get(&ino)?;
        let reachable_dirt = node.path.is_some() && node.inode.dirty() > 0;
        if ino == ROOT || node.lookups > 0 || node.open > 0 || reachable_dirt {
            return None;
        }
        let node = self.nodes.remove(&ino)?;
        if let Some(p) = &node.path {
            if self.by_path.get(p) == Some(&ino) {
                self.by_path.remove(p);
            }
        }
        Some(node.inode)
    }
}

/// `base/rest`, without the trailing separator `join("")` would add.
fn rebase(base: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_directory_takes_its_children_along() {
        let mut t = InodeTable::new();
        let (d, _) = t.lookup(Path::new("d"));
        let (f, _) = t.lookup(Path::new("d/f"));
        let (other, _) = t.lookup(Path::new("dx"));
        t.renamed(Path::new("d"), Path::new("e"), false);
        assert_eq!(t.path(d), Some(PathBuf::from("e")));
        assert_eq!(t.path(f), Some(PathBuf::from("e/f")));
        assert_eq!(
            t.path(other),
            Some(PathBuf::from("dx")),
            "a sibling sharing a prefix"
        );
        assert_eq!(t.ino_of(Path::new("e/f")), Some(f));
        assert_eq!(t.ino_of(Path::new("d/f")), None);
    }

    #[test]
    fn a_replaced_target_loses_its_path_and_goes_when_forgotten() {
        let mut t = InodeTable::new();
        let (a, _) = t.lookup(Path::new("a"));
        let (b, _) = t.lookup(Path::new("b"));
        assert!(t.renamed(Path::new("a"), Path::new("b"), false).is_none());
        assert_eq!(t.ino_of(Path::new("b")), Some(a));
        assert_eq!(t.path(b), None);
        assert!(t.forget(b, 1).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn exchange_swaps_and_unlink_forgets_the_path() {
        let mut t = InodeTable::new();
        let (a, _) = t.lookup(Path::new("a"));
        let (b, _) = t.lookup(Path::new("b"));
        t.renamed(Path::new("a"), Path::new("b"), true);
        assert_eq!(t.path(a), Some(PathBuf::from("b")));
        assert_eq!(t.path(b), Some(PathBuf::from("a")));
        t.opened(a);
        assert!(
            t.unlinked(Path::new("b")).is_none(),
            "still looked up and open"
        );
        assert!(t.forget(a, 1).is_none(), "still open");
        assert!(t.closed(a).is_some());
        assert_eq!(t.ino_of(Path::new("b")), None);
    }
}

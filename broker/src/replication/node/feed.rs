//! Which groups' status changed, for readers that look at a few groups at a time: with
//! thousands of groups, a reader that scanned every group on each change would do work that
//! grows with the square of the groups while their leaders are elected.
//!
//! Invariant: every status change the loop makes after a feed was opened is in that feed's set
//! until its reader takes it; the watch counter is bumped after the set is filled, so a reader
//! woken by it finds the group.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use tokio::sync::watch;

use super::GroupId;
use crate::sync::Mutex;

type Changed = Arc<Mutex<BTreeSet<GroupId>>>;
/// The open feeds (a dropped feed's entry goes at the next change).
type Open = Arc<Mutex<Vec<Weak<Mutex<BTreeSet<GroupId>>>>>>;

/// The loop's side: tells every open feed, then bumps the counter.
pub(super) struct StatusChanges {
    counter: watch::Sender<u64>,
    feeds: Open,
}

/// The readers' side, kept by [`super::Replication`].
#[derive(Clone)]
pub(super) struct Feeds {
    counter: watch::Receiver<u64>,
    feeds: Open,
}

/// The groups whose status changed since the reader last took them.
pub struct StatusFeed {
    changed: Changed,
}

pub(super) fn channel() -> (StatusChanges, Feeds) {
    let (counter, receiver) = watch::channel(0);
    let feeds = Arc::new(Mutex::new("replication.status_feeds", Vec::new()));
    (
        StatusChanges {
            counter,
            feeds: feeds.clone(),
        },
        Feeds {
            counter: receiver,
            feeds,
        },
    )
}

impl StatusChanges {
    /// `group`'s status changed.
    pub(super) fn changed(&self, group: GroupId) {
        {
            let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
            feeds.retain(|feed| match feed.upgrade() {
                Some(set) => {
                    set.lock().unwrap_or_else(|p| p.into_inner()).insert(group);
                    true
                }
                None => false,
            });
        }
        self.counter.send_modify(|n| *n += 1);
    }
}

impl Feeds {
    pub(super) fn counter(&self) -> watch::Receiver<u64> {
        self.counter.clone()
    }

    pub(super) fn open(&self) -> StatusFeed {
        let changed: Changed = Arc::new(Mutex::new("replication.status_feed", BTreeSet::new()));
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&changed));
        StatusFeed { changed }
    }
}

impl StatusFeed {
    /// The groups whose status changed since the last call (or since the feed was opened).
    pub fn take(&self) -> BTreeSet<GroupId> {
        std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

//! Where a simulated client sends a partition's requests. With one broker, always to it. In a
//! cluster, to the partition's leader as Metadata names it — asked of the brokers in turn, and
//! asked again after a leadership error (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, a fenced
//! or unknown leader epoch) or a lost connection — as real clients do. Every (partition,
//! epoch, leader) Metadata named is kept for the one-leader-per-epoch check.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::{Client, ClientError};

/// Error codes after which a client asks for the leader again.
pub fn leadership_code(code: i16) -> bool {
    // LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH,
    // UNKNOWN_TOPIC_OR_PARTITION (a broker whose copy of the topic is not made yet).
    matches!(code, 3 | 5 | 6 | 74 | 75)
}

/// One observation of a partition's leadership: Metadata said `leader` leads it in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leadership {
    pub partition: i32,
    pub epoch: i32,
    pub leader: i32,
}

#[derive(Default)]
struct State {
    leaders: BTreeMap<(String, i32), SocketAddr>,
    /// Which bootstrap broker to ask next.
    next: usize,
    seen: std::collections::BTreeSet<Leadership>,
    /// The leader Metadata last named for each partition (-1: none), and every change of it.
    named: BTreeMap<(String, i32), i32>,
    changes: Vec<LeaderChange>,
    /// Every time a broker named itself a partition's leader.
    self_named: Vec<SelfNamed>,
}

/// A broker's Metadata answer named the broker itself as `partition`'s leader in `epoch`.
#[derive(Debug, Clone)]
pub struct SelfNamed {
    pub at: tokio::time::Instant,
    pub broker: i32,
    pub topic: String,
    pub partition: i32,
    pub epoch: i32,
}

/// Metadata named a new leader of a partition (-1: none) at `at`.
#[derive(Debug, Clone)]
pub struct LeaderChange {
    pub at: tokio::time::Instant,
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
}

/// The partitions' leaders as the clients know them.
pub struct Directory {
    brokers: Vec<SocketAddr>,
    state: Mutex<State>,
}

const ASK_TIMEOUT: Duration = Duration::from_secs(2);

impl Directory {
    pub fn new(brokers: Vec<SocketAddr>) -> Directory {
        Directory {
            brokers,
            state: Mutex::default(),
        }
    }

    pub fn brokers(&self) -> &[SocketAddr] {
        &self.brokers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A broker to send a request any broker may answer (admin requests): the bootstrap
    /// brokers in turn.
    pub fn any(&self) -> SocketAddr {
        let mut st = self.lock();
        let addr = self.brokers[st.next % self.brokers.len()];
        st.next += 1;
        addr
    }

    /// The leader of `topic`'s `partition`, asking Metadata when it is not known.
    pub async fn leader(&self, topic: &str, partition: i32) -> Option<SocketAddr> {
        if self.brokers.len() == 1 {
            return Some(self.brokers[0]);
        }
        if let Some(addr) = self.lock().leaders.get(&(topic.to_string(), partition)) {
            return Some(*addr);
        }
        self.refresh(topic).await;
        self.lock()
            .leaders
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// `partition`'s leader as last learnt, without asking anyone.
    pub fn known_leader(&self, topic: &str, partition: i32) -> Option<SocketAddr> {
        if self.brokers.len() == 1 {
            return Some(self.brokers[0]);
        }
        self.lock()
            .leaders
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// Forget what is known of `partition`'s leader (asked again next time).
    pub fn forget(&self, topic: &str, partition: i32) {
        self.lock().leaders.remove(&(topic.to_string(), partition));
    }

    /// Ask the brokers in turn for `topic`'s leaders until one answers.
    pub async fn refresh(&self, topic: &str) -> bool {
        for _ in 0..self.brokers.len() {
            let addr = self.any();
            let asked = tokio::time::timeout(ASK_TIMEOUT, async {
                let mut c = Client::connect(addr).await?;
                c.metadata(topic).await
            })
            .await;
            let Ok(Ok(md)) = asked else {
                continue;
            };
            let hosts: BTreeMap<i32, SocketAddr> = md.brokers.into_iter().collect();
            let asked = hosts.iter().find(|(_, a)| **a == addr).map(|(id, _)| *id);
            let mut st = self.lock();
            for (partition, leader, epoch) in md.partitions {
                if asked == Some(leader) {
                    st.self_named.push(SelfNamed {
                        at: tokio::time::Instant::now(),
                        broker: leader,
                        topic: topic.to_string(),
                        partition,
                        epoch,
                    });
                }
                let key = (topic.to_string(), partition);
                if st.named.get(&key) != Some(&leader) {
                    st.named.insert(key.clone(), leader);
                    st.changes.push(LeaderChange {
                        at: tokio::time::Instant::now(),
                        topic: topic.to_string(),
                        partition,
                        leader,
                    });
                }
                match hosts.get(&leader) {
                    Some(addr) if leader >= 0 => {
                        st.leaders.insert(key, *addr);
                        if epoch >= 0 {
                            st.seen.insert(Leadership {
                                partition,
                                epoch,
                                leader,
                            });
                        }
                    }
                    _ => {
                        st.leaders.remove(&key);
                    }
                }
            }
            return true;
        }
        // Nobody answered: a short pause before the caller tries again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        false
    }

    /// Every leadership Metadata named during the run.
    pub fn leaderships(&self) -> Vec<Leadership> {
        self.lock().seen.iter().copied().collect()
    }

    /// Every time a broker named itself a partition's leader, in order.
    pub fn self_named(&self) -> Vec<SelfNamed> {
        self.lock().self_named.clone()
    }

    /// Every change of a partition's leader as Metadata named it, in order.
    pub fn leader_changes(&self) -> Vec<LeaderChange> {
        self.lock().changes.clone()
    }
}

/// A client's connections, one per broker it talks to.
#[derive(Default)]
pub struct Conns {
    map: BTreeMap<SocketAddr, Client>,
}

impl Conns {
    /// The connection to `addr`, made if there is none (`None`, after a short pause, when the
    /// broker cannot be reached).
    pub async fn get(&mut self, addr: SocketAddr, request_timeout_ms: i32) -> Option<&mut Client> {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.map.entry(addr) {
            match Client::connect(addr).await {
                Ok(mut c) => {
                    c.request_timeout_ms = request_timeout_ms;
                    slot.insert(c);
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return None;
                }
            }
        }
        self.map.get_mut(&addr)
    }

    /// The connection to `addr` if there is one (none is made).
    pub fn existing(&mut self, addr: SocketAddr) -> Option<&mut Client> {
        self.map.get_mut(&addr)
    }

    /// Drop the connection to `addr` (it broke, or an answer on it is lost).
    pub fn drop_conn(&mut self, addr: SocketAddr) {
        self.map.remove(&addr);
    }
}

/// Whether an outcome means the connection cannot be used any more.
pub fn broken<T>(r: &Result<T, ClientError>) -> bool {
    matches!(r, Err(e) if !matches!(e, ClientError::Kafka(_)))
}

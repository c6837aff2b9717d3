//! Where a simulated client sends a partition's requests. With one broker, always to it. In a
//! cluster, to the partition's leader as Metadata names it, asked again after a leadership
//! error (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, a fenced or unknown leader epoch) or a
//! lost connection — as real clients do. Every (partition, epoch, leader) Metadata named is
//! kept for the one-leader-per-epoch check.
//!
//! Which broker Metadata is asked of follows librdkafka: the brokers the last answer listed
//! (it drops those an answer leaves out, as kafka-python does; the bootstrap list only before
//! any answer), the one a request was sent to last first (librdkafka's "least idle" broker), a
//! broker that did not answer skipped for a second. A client that asked the brokers in turn
//! left a broker that answers quickly but knows nothing current (one cut off from its peers)
//! after one question; a real one keeps asking it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Client, ClientError};

/// Error codes after which a client asks for the leader again.
pub fn leadership_code(code: i16) -> bool {
    // LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH,
    // UNKNOWN_TOPIC_OR_PARTITION (a broker whose copy of the topic is not made yet).
    matches!(code, 3 | 5 | 6 | 74 | 75)
}

/// One observation of a partition's leadership: Metadata said `leader` leads it in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leadership {
    pub topic: String,
    pub partition: i32,
    pub epoch: i32,
    pub leader: i32,
}

#[derive(Default)]
struct State {
    leaders: BTreeMap<(String, i32), SocketAddr>,
    /// Which bootstrap broker to ask next (admin requests), and which of equally idle ones
    /// for Metadata.
    next: usize,
    /// The brokers the last Metadata answer listed, by id.
    learned: BTreeMap<i32, SocketAddr>,
    /// When a request was last sent to each broker.
    last_used: BTreeMap<SocketAddr, Instant>,
    /// Brokers that did not answer a Metadata request, skipped until then.
    down_until: BTreeMap<SocketAddr, Instant>,
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
    pub at: Instant,
    pub broker: i32,
    pub topic: String,
    pub partition: i32,
    pub epoch: i32,
}

/// Metadata named a new leader of a partition (-1: none) at `at`.
#[derive(Debug, Clone)]
pub struct LeaderChange {
    pub at: Instant,
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

/// How long a broker that did not answer Metadata is skipped (librdkafka's reconnect backoff
/// grows to a second).
const DOWN_FOR: Duration = Duration::from_secs(1);

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

    /// The broker to ask for Metadata: of the brokers last listed (the bootstrap brokers
    /// before any answer), one not skipped, the one used last first; equally idle ones in turn.
    fn metadata_broker(&self) -> SocketAddr {
        let mut st = self.lock();
        let now = Instant::now();
        let listed: Vec<SocketAddr> = if st.learned.is_empty() {
            self.brokers.clone()
        } else {
            st.learned.values().copied().collect()
        };
        let up: Vec<SocketAddr> = listed
            .iter()
            .copied()
            .filter(|a| st.down_until.get(a).is_none_or(|&t| t <= now))
            .collect();
        let pool = if up.is_empty() { listed } else { up };
        let latest = pool.iter().map(|a| st.last_used.get(a).copied()).max();
        let used_last: Vec<SocketAddr> = pool
            .into_iter()
            .filter(|a| st.last_used.get(a).copied() == latest.flatten())
            .collect();
        let addr = used_last[st.next % used_last.len()];
        st.next += 1;
        st.last_used.insert(addr, now);
        addr
    }

    /// The leader of `topic`'s `partition`, asking Metadata when it is not known.
    pub async fn leader(&self, topic: &str, partition: i32) -> Option<SocketAddr> {
        if self.brokers.len() == 1 {
            return Some(self.brokers[0]);
        }
        if let Some(addr) = self.known_leader(topic, partition) {
            return Some(addr);
        }
        self.refresh(topic).await;
        self.known_leader(topic, partition)
    }

    /// `partition`'s leader as last learnt, without asking anyone (a request is sent to it:
    /// it is the broker used last).
    pub fn known_leader(&self, topic: &str, partition: i32) -> Option<SocketAddr> {
        if self.brokers.len() == 1 {
            return Some(self.brokers[0]);
        }
        let mut st = self.lock();
        let addr = st.leaders.get(&(topic.to_string(), partition)).copied()?;
        st.last_used.insert(addr, Instant::now());
        Some(addr)
    }

    /// Forget what is known of `partition`'s leader (asked again next time).
    pub fn forget(&self, topic: &str, partition: i32) {
        self.lock().leaders.remove(&(topic.to_string(), partition));
    }

    /// Ask brokers for `topic`'s leaders ([`Self::metadata_broker`]) until one answers.
    pub async fn refresh(&self, topic: &str) -> bool {
        for _ in 0..self.brokers.len() {
            let addr = self.metadata_broker();
            let asked = tokio::time::timeout(ASK_TIMEOUT, async {
                let mut c = Client::connect(addr).await?;
                c.metadata(topic).await
            })
            .await;
            let Ok(Ok(md)) = asked else {
                self.lock()
                    .down_until
                    .insert(addr, Instant::now() + DOWN_FOR);
                continue;
            };
            let hosts: BTreeMap<i32, SocketAddr> = md.brokers.into_iter().collect();
            // The broker asked, by its id in its own answer or in the list before.
            let asked = {
                let st = self.lock();
                hosts
                    .iter()
                    .chain(st.learned.iter())
                    .find(|(_, a)| **a == addr)
                    .map(|(id, _)| *id)
            };
            let mut st = self.lock();
            if !hosts.is_empty() {
                st.learned = hosts.clone();
            }
            for (partition, leader, epoch) in md.partitions {
                if asked == Some(leader) {
                    st.self_named.push(SelfNamed {
                        at: Instant::now(),
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
                        at: Instant::now(),
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
                                topic: topic.to_string(),
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
        self.lock().seen.iter().cloned().collect()
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
    /// The client id of the connections made (`None`: the simulated clients' own).
    client_id: Option<&'static str>,
}

impl Conns {
    /// Connections whose requests name `client_id`.
    pub fn for_client(client_id: &'static str) -> Conns {
        Conns {
            map: BTreeMap::new(),
            client_id: Some(client_id),
        }
    }

    /// The connection to `addr`, made if there is none (`None`, after a short pause, when the
    /// broker cannot be reached).
    pub async fn get(&mut self, addr: SocketAddr, request_timeout_ms: i32) -> Option<&mut Client> {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.map.entry(addr) {
            match Client::connect(addr).await {
                Ok(mut c) => {
                    c.request_timeout_ms = request_timeout_ms;
                    if let Some(id) = self.client_id {
                        c.client_id = id;
                    }
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

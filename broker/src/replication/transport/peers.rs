//! Who the transport links with, as the cluster's membership changes: the configured brokers
//! (the controller's voters) from the start, the brokers the metadata names as it names them
//! ([`Transport::set_peers`]), and — provisionally — a broker not yet known here that dials in
//! with its address (hello version 4): a broker that joined since this one last caught up with
//! the metadata. And the one request a broker outside the cluster may make: `JOIN`, on a
//! connection of its own, carrying its registration for the layer above to propose.
//!
//! Invariants: a provisional peer is only ever one that dialled in (a smaller id, so the link's
//! direction rule holds) and there are at most [`STRANGERS_MAX`] at once; a peer removed ends
//! its dial loop and its link; a `JOIN` is answered within the I/O timeout whatever the layer
//! above does, and at most [`JOINS_QUEUED_MAX`] wait.

use super::*;

/// Peers admitted on their own hello, at most (more are refused until one is listed or gone).
pub const STRANGERS_MAX: usize = 16;
/// `JOIN` requests waiting for the layer above, at most (more are refused at once).
pub const JOINS_QUEUED_MAX: usize = 16;

/// A broker outside the cluster asks to join: `registration` is what it wants proposed.
pub struct JoinRequest {
    pub from: NodeId,
    pub registration: Bytes,
    /// `Ok` once proposed; `Err(why)` if refused.
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

impl Inner {
    pub(super) fn peer_map(&self) -> Arc<BTreeMap<NodeId, Arc<Peer>>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.peer_map().get(&id).cloned()
    }
}

fn new_peer(id: NodeId, address: SocketAddr, listed: bool) -> Arc<Peer> {
    Arc::new(Peer {
        id,
        address,
        outbox: Mutex::new(
            "transport.outbox",
            Outbox {
                messages: VecDeque::new(),
                bytes: 0,
            },
        ),
        wake: Notify::new(),
        generation: watch::channel(0).0,
        connected: false.into(),
        holds_data: false.into(),
        removed: watch::channel(false).0,
        listed: listed.into(),
    })
}

impl Transport {
    /// The brokers this node links with, by id, with their inter-broker addresses (this node
    /// may be among them; it is skipped). A listed peer not known yet is added (and dialled if
    /// its id is larger); one whose address changed is replaced; a listed peer missing from
    /// `listed` is removed, and so is a provisional one whose link is down.
    pub fn set_peers(&self, listed: BTreeMap<NodeId, SocketAddr>) {
        let inner = &self.0;
        let mut dial = Vec::new();
        let mut removed = Vec::new();
        let mut added_ids = Vec::new();
        {
            let mut guard = inner.peers.write().unwrap_or_else(|p| p.into_inner());
            let mut map = (**guard).clone();
            for (&id, &address) in &listed {
                if id == inner.node_id {
                    continue;
                }
                match map.get(&id) {
                    Some(p) if p.address == address => {
                        p.listed.store(true, Ordering::Relaxed);
                        continue;
                    }
                    Some(p) => removed.push(p.clone()),
                    None => {}
                }
                let peer = new_peer(id, address, true);
                if inner.node_id < id {
                    dial.push(peer.clone());
                }
                map.insert(id, peer);
                added_ids.push(id);
            }
            map.retain(|id, p| {
                let keep = listed.contains_key(id)
                    || (!p.listed.load(Ordering::Relaxed) && p.connected.load(Ordering::Relaxed));
                if !keep {
                    removed.push(p.clone());
                }
                keep
            });
            if added_ids.is_empty() && removed.is_empty() {
                return;
            }
            *guard = Arc::new(map);
        }
        for peer in removed {
            tracing::info!(peer = peer.id, address = %peer.address, "inter-broker peer removed");
            peer.removed.send_replace(true);
        }
        for (&id, &address) in &listed {
            if id != inner.node_id && added_ids.contains(&id) {
                tracing::info!(peer = id, %address, "inter-broker peer added");
            }
        }
        for peer in dial {
            tokio::spawn(dial_loop(inner.clone(), peer));
        }
        inner.links.send_modify(|n| *n += 1);
    }

    /// The requests to join this cluster that reach this node (once: the layer above serves
    /// them; until it takes them, they are refused when their time is up).
    pub fn take_joins(&self) -> Option<mpsc::Receiver<JoinRequest>> {
        self.0
            .joins_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Ask the broker at `address` to propose `registration` (this broker joining the cluster):
    /// `Ok` once it has proposed it — whether it is applied shows in the metadata.
    pub async fn join(&self, address: SocketAddr, registration: Bytes) -> Result<(), String> {
        let inner = &self.0;
        let timeout = inner.settings.io_timeout;
        let ask = async {
            let conn = inner.env.net.connect(address).await?;
            let conn = match inner.settings.tls.as_ref().and_then(|t| t.inter_broker()) {
                None => conn,
                Some((_, connector)) => Box::new(
                    connector
                        .connect(crate::security::tls::peer_name(address), conn)
                        .await?,
                ) as Box<dyn Connection>,
            };
            let (reader, mut writer) = tokio::io::split(conn);
            let mut reader = BufReader::new(reader);
            let mut join = unsealed_frame(64 + registration.len());
            join.put_u8(KIND_JOIN);
            join.put_slice(MAGIC);
            join.put_u16(VERSION_ADDRESSED);
            join.put_u64(inner.node_id);
            join.put_u32(inner.cluster);
            join.put_slice(&registration);
            write_frame(&mut writer, &seal(join)).await?;
            let label = address.to_string();
            read_frame(&mut reader, &label, inner.settings.frame_bytes_max)
                .await
                .map_err(|e| io::Error::other(e.to_string()))
        };
        let mut answer = match inner.env.clock.timeout(timeout, ask).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Err(format!("cannot ask {address}: {e}")),
            Err(_) => return Err(format!("{address} did not answer within {timeout:?}")),
        };
        if answer.remaining() < 2 || answer.get_u8() != KIND_JOINED {
            return Err(format!(
                "{address} answered with something other than JOINED"
            ));
        }
        let ok = answer.get_u8() == 0;
        let why = String::from_utf8_lossy(&answer).into_owned();
        if ok {
            Ok(())
        } else {
            Err(format!("{address} refused: {why}"))
        }
    }
}

/// Admit node `id` (unknown here, a smaller id, of this cluster) on its own hello, at
/// `address`, provisionally.
pub(super) fn admit(
    inner: &Arc<Inner>,
    id: NodeId,
    address: SocketAddr,
) -> Result<Arc<Peer>, String> {
    let mut guard = inner.peers.write().unwrap_or_else(|p| p.into_inner());
    if let Some(peer) = guard.get(&id) {
        return Ok(peer.clone());
    }
    let strangers = guard
        .values()
        .filter(|p| !p.listed.load(Ordering::Relaxed))
        .count();
    if strangers >= STRANGERS_MAX {
        return Err(format!(
            "node {id} is not known here and {STRANGERS_MAX} other unknown nodes are linked already"
        ));
    }
    let peer = new_peer(id, address, false);
    let mut map = (**guard).clone();
    map.insert(id, peer.clone());
    *guard = Arc::new(map);
    tracing::info!(peer = id, %address, "inter-broker peer admitted on its hello (not in this node's metadata yet)");
    Ok(peer)
}

/// Serve a connection whose first frame is a `JOIN`: hand it to the layer above, answer
/// `JOINED`, close.
pub(super) async fn serve_join(
    inner: &Arc<Inner>,
    mut body: Bytes,
    mut writer: WriteHalf<Box<dyn Connection>>,
    label: &str,
) {
    let outcome: Result<(), String> = async {
        if body.remaining() < 1 + 4 + 2 + 8 + 4 {
            return Err("a JOIN too short".to_string());
        }
        body.advance(1);
        if &body.split_to(4)[..] != MAGIC {
            return Err("not a Stillwater broker".into());
        }
        let version = body.get_u16();
        if version != VERSION_ADDRESSED {
            return Err(format!(
                "JOIN version {version}, this broker speaks {VERSION_ADDRESSED}"
            ));
        }
        let from = body.get_u64();
        check_cluster(inner, from, body.get_u32())?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = JoinRequest {
            from,
            registration: body,
            reply,
        };
        #[expect(
            clippy::disallowed_methods,
            reason = "a joining broker asks again; a full queue (16 requests) must not hold its connection"
        )]
        let queued = inner.joins.try_send(request);
        queued.map_err(|_| "too many requests to join at once; ask again".to_string())?;
        match inner
            .env
            .clock
            .timeout(inner.settings.io_timeout, answer)
            .await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err("this node does not serve requests to join".into()),
            Err(_) => Err("not proposed in time; ask again".into()),
        }
    }
    .await;
    match &outcome {
        // Transient (no leader elected yet, a full queue, a slow proposal): the caller asks
        // again, and a cluster being formed sees these from brokers that start before the
        // metadata's group has elected its leader.
        Err(why) if why.ends_with("ask again") => {
            tracing::info!(caller = label, %why, "request to join refused for now");
        }
        Err(why) => tracing::warn!(caller = label, %why, "request to join refused"),
        Ok(()) => {}
    }
    let mut joined = unsealed_frame(64);
    joined.put_u8(KIND_JOINED);
    joined.put_u8(u8::from(outcome.is_err()));
    if let Err(why) = outcome {
        joined.put_slice(why.as_bytes());
    }
    let _ = inner
        .env
        .clock
        .timeout(
            inner.settings.io_timeout,
            write_frame(&mut writer, &seal(joined)),
        )
        .await;
}

//! The transport's frames (see the module's header for the format): `HELLO`, `STATUS` and
//! `MESSAGES` bodies, sealed with their length and CRC-32C, read and checked before anything in
//! them is believed.
//!
//! Invariant: a frame is never believed before its length is within `frame_bytes_max` and its
//! CRC matches; a hello from another cluster (its fingerprint) is refused, and so is one from an
//! unknown peer unless it tells its address (version 4; admitted provisionally, [`peers`]).

use super::*;

/// The hello a dialler writes first: version 3, or 4 with this node's address when it is not
/// one of the configured brokers.
pub(super) fn hello_frame(inner: &Inner, to: NodeId) -> Bytes {
    let mut hello = unsealed_frame(64);
    hello.put_u8(KIND_HELLO);
    hello.put_slice(MAGIC);
    hello.put_u16(if inner.settings.advertised.is_some() {
        VERSION_ADDRESSED
    } else {
        VERSION
    });
    hello.put_u64(inner.node_id);
    hello.put_u64(to);
    hello.put_u32(inner.cluster);
    if let Some(address) = inner.settings.advertised {
        put_text(&mut hello, &address.to_string());
    }
    seal(hello)
}

pub(super) fn parse_hello(
    inner: &Arc<Inner>,
    mut body: Bytes,
    label: &str,
) -> Result<Arc<Peer>, LinkError> {
    let refused = |why: String| LinkError::Refused {
        peer: label.to_string(),
        why,
    };
    if body.len() < 1 + 4 + 2 + 8 + 8 + 4 || body.get_u8() != KIND_HELLO {
        return Err(refused("not a hello".into()));
    }
    if &body.split_to(4)[..] != MAGIC {
        return Err(refused("not a Stillwater broker".into()));
    }
    let version = body.get_u16();
    if version != VERSION && version != VERSION_ADDRESSED {
        return Err(refused(format!(
            "version {version}, this broker speaks {VERSION} and {VERSION_ADDRESSED}"
        )));
    }
    let from = body.get_u64();
    let to = body.get_u64();
    let cluster = body.get_u32();
    let address = match version {
        VERSION_ADDRESSED => Some(
            get_text(&mut body)
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .ok_or_else(|| refused("a hello whose address is not one".into()))?,
        ),
        _ => None,
    };
    if body.has_remaining() {
        return Err(refused("bytes after the hello".into()));
    }
    check_cluster(inner, from, cluster).map_err(refused)?;
    if to != inner.node_id {
        return Err(refused(format!(
            "addressed to node {to}, this is node {}",
            inner.node_id
        )));
    }
    if from == inner.node_id {
        return Err(refused(format!(
            "the caller says it is node {from}, this node's own id: two brokers have one id"
        )));
    }
    if from > inner.node_id {
        return Err(refused(format!(
            "node {from} has the larger id, so this node dials it"
        )));
    }
    match (inner.peer(from), address) {
        (Some(peer), _) => Ok(peer),
        (None, Some(address)) => peers::admit(inner, from, address).map_err(refused),
        (None, None) => Err(refused(format!("node {from} is not a configured peer"))),
    }
}

/// A caller claiming to be `from` must be of this cluster (its fingerprint).
pub(super) fn check_cluster(inner: &Inner, from: NodeId, cluster: u32) -> Result<(), String> {
    if cluster == inner.cluster {
        return Ok(());
    }
    Err(format!(
        "node {from} belongs to another cluster (fingerprint {cluster:08x}, this one's \
         {:08x}): its controller voters (cluster_peers) differ from this node's",
        inner.cluster
    ))
}

/// `u16` length, then UTF-8.
pub(super) fn put_text(frame: &mut BytesMut, text: &str) {
    let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    frame.put_u16(text.len() as u16);
    frame.put_slice(text);
}

pub(super) fn get_text(body: &mut Bytes) -> Option<String> {
    if body.remaining() < 2 {
        return None;
    }
    let len = body.get_u16() as usize;
    if body.remaining() < len {
        return None;
    }
    String::from_utf8(body.split_to(len).to_vec()).ok()
}

/// The cluster's fingerprint: a CRC-32C of its members, `id@address;` in id order, as the
/// configuration names them (every broker's `cluster_peers` lists all of them, itself too).
pub(super) fn fingerprint(peers: &BTreeMap<NodeId, SocketAddr>) -> u32 {
    let mut text = String::new();
    for (id, address) in peers {
        text.push_str(&format!("{id}@{address};"));
    }
    crc32c::crc32c(text.as_bytes())
}

pub(super) fn parse_messages(mut body: Bytes, label: &str) -> Result<Vec<Bytes>, LinkError> {
    let malformed = |why| LinkError::Malformed {
        peer: label.to_string(),
        why,
    };
    if body.remaining() < 5 || body.get_u8() != KIND_MESSAGES {
        return Err(malformed("not a frame of messages"));
    }
    let count = body.get_u32() as usize;
    // Each message takes at least its 4-byte length: a count past that is a lie.
    if count > body.remaining() / 4 {
        return Err(malformed("message count past the frame's end"));
    }
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        if body.remaining() < 4 {
            return Err(malformed("message length past the frame's end"));
        }
        let len = body.get_u32() as usize;
        if len > body.remaining() {
            return Err(malformed("message past the frame's end"));
        }
        messages.push(body.split_to(len));
    }
    if body.has_remaining() {
        return Err(malformed("bytes after the last message"));
    }
    Ok(messages)
}

/// Everything queued for `peer` that fits in one frame, or `None` when nothing is.
pub(super) fn take_frame(peer: &Peer, frame_bytes_max: usize) -> Option<Bytes> {
    let mut outbox = peer.outbox();
    if outbox.messages.is_empty() {
        return None;
    }
    let mut body = unsealed_frame(0);
    body.put_u8(KIND_MESSAGES);
    body.put_u32(0);
    let mut count = 0u32;
    while let Some(next) = outbox.messages.front() {
        if count > 0 && body.len() + 4 + next.len() > frame_bytes_max {
            break;
        }
        let next = outbox.messages.pop_front().expect("front was just seen");
        outbox.bytes -= next.len();
        body.put_u32(next.len() as u32);
        body.put_slice(&next);
        count += 1;
    }
    drop(outbox);
    let at = FRAME_HEADER_BYTES + 1;
    body[at..at + 4].copy_from_slice(&count.to_be_bytes());
    Some(seal(body))
}

/// A frame's buffer with room for its header (length and CRC), filled in by [`seal`]: a frame
/// leaves in one write, not two.
pub(super) fn unsealed_frame(body_bytes: usize) -> BytesMut {
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_BYTES + body_bytes);
    frame.put_bytes(0, FRAME_HEADER_BYTES);
    frame
}

/// Fill in the header of a frame built on [`unsealed_frame`].
pub(super) fn seal(mut frame: BytesMut) -> Bytes {
    let crc = crc32c::crc32c(&frame[FRAME_HEADER_BYTES..]);
    let len = (frame.len() - FRAME_HEADER_BYTES + 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame[4..FRAME_HEADER_BYTES].copy_from_slice(&crc.to_be_bytes());
    frame.freeze()
}

/// Write a sealed frame (header included).
pub(super) async fn write_frame(
    writer: &mut WriteHalf<Box<dyn Connection>>,
    frame: &Bytes,
) -> io::Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await
}

pub(super) async fn read_frame(
    reader: &mut Reader,
    label: &str,
    frame_bytes_max: usize,
) -> Result<Bytes, LinkError> {
    let io = |source| LinkError::Io {
        peer: label.to_string(),
        source,
    };
    let len = reader.read_u32().await.map_err(io)? as usize;
    if len < 4 || len + 4 > frame_bytes_max {
        return Err(LinkError::FrameTooLarge {
            peer: label.to_string(),
            len,
            max: frame_bytes_max,
        });
    }
    let crc = reader.read_u32().await.map_err(io)?;
    let mut body = vec![0u8; len - 4];
    reader.read_exact(&mut body).await.map_err(io)?;
    if crc32c::crc32c(&body) != crc {
        return Err(LinkError::BadCrc {
            peer: label.to_string(),
        });
    }
    Ok(Bytes::from(body))
}

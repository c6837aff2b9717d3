//! The parsers of settings written as lists: addresses with counts, peers, `host:port`.

use std::net::SocketAddr;

/// `address:count,…` (an IPv6 address in brackets: `[::1]:10`).
pub(super) fn parse_overrides(text: &str) -> Result<Vec<(std::net::IpAddr, usize)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (addr, count) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("{entry:?} is not address:count"))?;
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            let ip = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IP address"))?;
            let n = count
                .parse()
                .map_err(|_| format!("{count:?} is not a count"))?;
            Ok((ip, n))
        })
        .collect()
}

/// `id@host:port,…` into a map (duplicate ids refused).
pub(super) fn parse_peers(
    text: &str,
) -> Result<std::collections::BTreeMap<u64, SocketAddr>, String> {
    let mut peers = std::collections::BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, address) = item
            .split_once('@')
            .ok_or_else(|| format!("{item:?} is not id@host:port"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("{id:?} in {item:?} is not a broker id"))?;
        if id > i32::MAX as u64 {
            return Err(format!("broker id {id} is larger than {}", i32::MAX));
        }
        let address: SocketAddr = address
            .parse()
            .map_err(|_| format!("{address:?} in {item:?} is not an address (ip:port)"))?;
        if peers.insert(id, address).is_some() {
            return Err(format!("broker {id} is named twice"));
        }
    }
    Ok(peers)
}

pub(super) fn parse_host_port(s: &str) -> Result<(String, i32), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?} has an invalid port"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has an empty host"));
    }
    Ok((host.to_string(), port as i32))
}

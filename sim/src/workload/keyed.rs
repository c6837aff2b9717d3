//! Keyed records, for compacted topics. A workload value named `<id>@<key>` is sent with that
//! key; one named `<id>@<key>!` is a tombstone: a null value, with its name in a `name` header
//! so that a read still names which record it is. The checkers take a record's key and whether
//! it is a tombstone from its name; a record read back with another key than its name's reads
//! as a value nobody sent.

use bytes::Bytes;

use crate::scenario::Compacted;

/// The header a tombstone carries its name in.
pub const NAME_HEADER: &str = "name";

/// The key a value's name gives it, and whether it is a tombstone; `None` for an unkeyed name.
pub fn parse(name: &str) -> Option<(&str, bool)> {
    let (_, key) = name.split_once('@')?;
    Some(match key.strip_suffix('!') {
        Some(key) => (key, true),
        None => (key, false),
    })
}

/// Message `n` of `producer` on a compacted workload: its partition and its name. Keys are
/// spread over the producers' messages so that every key is written again and again; every
/// `tombstone_every`-th message of a producer is a tombstone; every `key_lifetime` messages the
/// producer moves on to new keys. A key always goes to the same
/// partition (its number modulo the partitions), as a Kafka producer's partitioner does.
pub fn message(c: &Compacted, partitions: i32, producer: usize, n: u64) -> (i32, String) {
    let keys = u64::from(c.keys.max(1));
    let generation = n.checked_div(c.key_lifetime).unwrap_or(0);
    // A stride prime to most key counts walks every key, in an order each producer starts
    // at a different point of.
    let key = generation * keys + (producer as u64 * 7 + n * 13) % keys;
    let partition = (key % partitions.max(1) as u64) as i32;
    let tombstone = c.tombstone_every > 0 && (n + 1).is_multiple_of(c.tombstone_every);
    let bang = if tombstone { "!" } else { "" };
    (partition, format!("p{producer}-{n}@k{key}{bang}"))
}

/// The value to send for `name`: a tombstone is its name alone (sent as a null value), any
/// other value is padded as the workload's values are.
pub fn value(name: &str, bytes: usize) -> Bytes {
    match parse(name) {
        Some((_, true)) => Bytes::from(name.to_string()),
        _ => crate::workload::value(name, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_key_and_whether_they_are_tombstones() {
        assert_eq!(parse("p0-3@k7"), Some(("k7", false)));
        assert_eq!(parse("p0-3@k7!"), Some(("k7", true)));
        assert_eq!(parse("p0-3"), None);
        let c = Compacted {
            keys: 10,
            tombstone_every: 4,
            ..Compacted::default()
        };
        let names: Vec<(i32, String)> = (0..8).map(|n| message(&c, 2, 1, n)).collect();
        for (p, name) in &names {
            let (key, _) = parse(name).expect("keyed");
            let k: i32 = key[1..].parse().expect("a number");
            assert_eq!(*p, k % 2, "{name} goes to its key's partition");
        }
        let tombstones = names.iter().filter(|(_, n)| n.ends_with('!')).count();
        assert_eq!(tombstones, 2);
    }
}

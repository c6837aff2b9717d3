use super::*;

#[test]
fn groups_map_to_partitions_as_kafka_maps_them() {
    // Java: "my-group".hashCode() == -1_906_497_762 (String.hashCode, overflowing).
    assert_eq!(java_hash(""), 0);
    assert_eq!(java_hash("a"), 97);
    assert_eq!(java_hash("ab"), 97 * 31 + 98);
    assert_eq!(java_hash("my-group"), -1_906_497_762);
    assert_eq!(partition_for("my-group", 50), 1_906_497_762 % 50);
    for g in ["", "x", "consumer-group-1", "ß∂ƒ"] {
        assert!((0..50).contains(&partition_for(g, 50)));
    }
}

use super::*;

#[test]
fn range_assigns_contiguous_ranges_in_member_order() {
    let members = vec!["c".to_string(), "a".to_string(), "b".to_string()];
    let r = range(&members, 7);
    assert_eq!(
        r,
        vec![
            ("a".to_string(), vec![0, 1, 2]),
            ("b".to_string(), vec![3, 4]),
            ("c".to_string(), vec![5, 6]),
        ]
    );
    assert_eq!(
        range(&["x".to_string()], 2),
        vec![("x".to_string(), vec![0, 1])]
    );
}

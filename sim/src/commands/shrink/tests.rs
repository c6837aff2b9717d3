use super::*;

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

const SCENARIO: &str = r#"
name = "t"
duration_s = 300
[workload]
producers = 6
acks = 1
interval_ms = 50
consumers = 3
partitions = 4
[workload.group]
members = 3
member_faults_per_min = 2.0
[[faults]]
kind = "pause"
at_s = 20
for_s = 8
[[faults]]
kind = "crash"
at_s = 40
torn = true
down_s = 4
[[faults]]
kind = "fsync-stall"
at_s = 60
for_s = 20
[[faults]]
kind = "partition"
at_s = 90
for_s = 10
node = "broker-1"
[[faults]]
kind = "fsync-eio"
at_s = 120
count = 3
[expect]
outcome = "pass"
response_deadline_s = 10
liveness_deadline_s = 30
"#;

/// A stand-in for a real run: it "fails" exactly when a torn crash and an fsync stall of
/// at least 5 s are both scheduled, with at least two producers, and the run lasts past the
/// stall's end.
fn fails(t: &toml::Table) -> bool {
    let s: Scenario = toml::Value::Table(t.clone()).try_into().unwrap();
    let f = &s.faults;
    let crash = f
        .iter()
        .any(|f| matches!(f, Fault::Crash { torn: true, .. }));
    let stall = f
        .iter()
        .any(|f| matches!(f, Fault::FsyncStall { for_s, .. } if *for_s >= 5));
    crash && stall && s.workload.producers >= 2 && s.duration_s >= 85
}

#[test]
fn shrinking_keeps_only_what_the_failure_needs() {
    let original = table(SCENARIO);
    assert!(fails(&original));
    let shrunk = Shrinker::new(original, 500, fails).run();
    let s: Scenario = toml::Value::Table(shrunk.table.clone()).try_into().unwrap();
    let kinds: Vec<&str> = s.faults.iter().map(Fault::kind).collect();
    assert_eq!(kinds, ["crash", "fsync-stall"], "{:?}", shrunk.kept);
    assert!(matches!(s.faults[0], Fault::Crash { down_s: 1, .. }));
    assert!(matches!(s.faults[1], Fault::FsyncStall { for_s: 5, .. }));
    assert_eq!(s.workload.producers, 2);
    assert_eq!(s.workload.consumers, 0);
    assert_eq!(s.workload.partitions, 1);
    assert!(s.workload.group.is_none());
    // The last heal is at 65 s, plus the 30 s liveness deadline: 95 s is the floor.
    assert_eq!(s.duration_s, 95);
    assert!(fails(&shrunk.table));
    assert!(shrunk.runs < 100, "{} runs", shrunk.runs);
    assert_eq!(
        describe(&table(SCENARIO), &shrunk.table, 5),
        "faults 5 → 2, producers 6 → 2, consumers 3 → 0, partitions 4 → 1, \
         group members 3 → none, duration_s 300 → 95"
    );
}

#[test]
fn the_budget_bounds_the_runs() {
    let shrunk = Shrinker::new(table(SCENARIO), 3, fails).run();
    assert_eq!(shrunk.runs, 3);
    assert!(fails(&shrunk.table));
}

#[test]
fn a_materialised_seed_schedules_its_drawn_faults_and_drops_the_draws() {
    let text =
        format!("{SCENARIO}\n[random_faults]\nrate_per_min = 6\nkinds = [\"pause\", \"crash\"]\n");
    let raw = table(&text);
    let mut s: Scenario = toml::Value::Table(raw.clone()).try_into().unwrap();
    s.raw = raw;
    let t = materialise(&s, 9);
    assert!(!t.contains_key("random_faults"));
    let explicit = faults(&t);
    assert_eq!(explicit.len(), s.faults_for(9).len());
    assert!(explicit.len() > 5, "the draw adds to the schedule");
    let back: Scenario = toml::Value::Table(t).try_into().unwrap();
    assert_eq!(back.faults_for(9).len(), explicit.len());
}

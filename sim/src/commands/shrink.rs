//! Shrinking a failing run: the smallest scenario found that still fails the same way.
//!
//! A seed's run is first made explicit — its drawn configuration written into the settings and
//! its drawn faults into a `[[faults]]` schedule — so that the seed no longer decides what is
//! removed. Then, greedily, one change at a time, each kept only if the run (same seed) still
//! fails with a finding of the original's first kind:
//!
//! 1. fewer faults (halves of the schedule first, then quarters, down to single faults);
//! 2. shorter faults (each window halved, a crash's downtime halved, fewer failed syncs);
//! 3. fewer clients (producers, consumers, the group and its faults, the admin client), fewer
//!    partitions, no fault points;
//! 4. a shorter run (down to the last heal plus the liveness deadline).
//!
//! The passes repeat until one changes nothing or the run budget is spent. Whether a candidate
//! fails is the caller's business (`sim shrink` runs each in a child process); this module only
//! proposes and keeps.

use crate::scenario::{last_heal_s, Fault, Scenario};

/// The explicit form of `seed`'s run of `scenario` (as [`Scenario::for_seed`] gives it): the
/// drawn configuration is in the settings already; the drawn faults become a schedule.
pub fn materialise(scenario: &Scenario, seed: u64) -> toml::Table {
    let mut table = scenario.raw.clone();
    table.remove("random_config");
    table.remove("random_faults");
    set_faults(&mut table, &scenario.faults_for(seed));
    table
}

/// The faults a scenario table schedules.
pub fn faults(table: &toml::Table) -> Vec<Fault> {
    table
        .get("faults")
        .cloned()
        .and_then(|v| v.try_into::<Vec<Fault>>().ok())
        .unwrap_or_default()
}

fn set_faults(table: &mut toml::Table, faults: &[Fault]) {
    if faults.is_empty() {
        table.remove("faults");
        return;
    }
    let list = faults
        .iter()
        .filter_map(|f| toml::Value::try_from(f).ok())
        .collect();
    table.insert("faults".into(), toml::Value::Array(list));
}

/// A fault one step shorter (window halved, downtime halved, one failed sync fewer), or `None`
/// when it is as short as it gets.
pub fn shorter(fault: &Fault) -> Option<Fault> {
    let mut f = fault.clone();
    let halve = |v: &mut u64| {
        if *v <= 1 {
            return false;
        }
        *v /= 2;
        true
    };
    let changed = match &mut f {
        Fault::FsyncStall { for_s, .. }
        | Fault::SlowDisk { for_s, .. }
        | Fault::DiskFull { for_s, .. }
        | Fault::Bitflip { for_s, .. }
        | Fault::Partition { for_s, .. }
        | Fault::PacketLoss { for_s, .. }
        | Fault::NetLatency { for_s, .. }
        | Fault::ClockSkew { for_s, .. }
        | Fault::ClockDrift { for_s, .. }
        | Fault::Pause { for_s, .. } => halve(for_s),
        Fault::Crash { down_s, .. } => halve(down_s),
        Fault::FsyncEio { count, .. } => {
            if *count <= 1 {
                false
            } else {
                *count -= 1;
                true
            }
        }
    };
    changed.then_some(f)
}

/// What shrinking found: the smallest failing table, the runs it took, the changes kept.
pub struct Shrunk {
    pub table: toml::Table,
    pub runs: usize,
    pub kept: Vec<String>,
}

/// One line on what shrinking took away: faults, clients, duration (before → after).
pub fn describe(before: &toml::Table, after: &toml::Table, faults_before: usize) -> String {
    let mut parts = vec![format!("faults {faults_before} → {}", faults(after).len())];
    let int = |t: &toml::Table, path: &[&str]| value_at(t, path).map(|v| v.to_string());
    for (label, path) in [
        ("producers", &["workload", "producers"][..]),
        ("consumers", &["workload", "consumers"]),
        ("partitions", &["workload", "partitions"]),
        ("group members", &["workload", "group", "members"]),
        ("duration_s", &["duration_s"]),
    ] {
        let (b, a) = (int(before, path), int(after, path));
        if b != a {
            parts.push(format!(
                "{label} {} → {}",
                b.unwrap_or_else(|| "none".into()),
                a.unwrap_or_else(|| "none".into())
            ));
        }
    }
    parts.join(", ")
}

/// The shrinker's state: the smallest failing table so far and what it took.
pub struct Shrinker<F> {
    pub table: toml::Table,
    /// Candidates run so far, and the most allowed.
    pub runs: usize,
    pub max_runs: usize,
    /// One line per change kept.
    pub kept: Vec<String>,
    /// Print each change kept as it is found.
    pub verbose: bool,
    fails: F,
}

impl<F: FnMut(&toml::Table) -> bool> Shrinker<F> {
    /// `fails` runs a candidate and says whether it fails the same way as the original.
    pub fn new(table: toml::Table, max_runs: usize, fails: F) -> Self {
        Shrinker {
            table,
            runs: 0,
            max_runs,
            kept: Vec::new(),
            verbose: false,
            fails,
        }
    }

    /// Run the starting table itself (one run of the budget): whether it fails.
    pub fn check_start(&mut self) -> bool {
        self.runs += 1;
        (self.fails)(&self.table)
    }

    /// Run the passes until one changes nothing or the budget is spent.
    pub fn run(mut self) -> Shrunk {
        loop {
            let before = self.kept.len();
            self.fewer_faults();
            self.shorter_faults();
            self.fewer_clients();
            self.shorter_run();
            if self.kept.len() == before || self.runs >= self.max_runs {
                return Shrunk {
                    table: self.table,
                    runs: self.runs,
                    kept: self.kept,
                };
            }
        }
    }

    /// Try a candidate; keep it if it still fails.
    fn try_keep(&mut self, candidate: toml::Table, what: String) -> bool {
        if candidate == self.table || self.runs >= self.max_runs {
            return false;
        }
        self.runs += 1;
        if (self.fails)(&candidate) {
            if self.verbose {
                println!("  run {}: still fails — {what}", self.runs);
            }
            self.table = candidate;
            self.kept.push(what);
            true
        } else {
            false
        }
    }

    fn fewer_faults(&mut self) {
        let mut chunk = (faults(&self.table).len() / 2).max(1);
        loop {
            let mut at = 0;
            while at < faults(&self.table).len() {
                let mut list = faults(&self.table);
                let end = (at + chunk).min(list.len());
                let removed: Vec<String> = list
                    .drain(at..end)
                    .map(|f| format!("t={} s {}", f.at_s(), f.kind()))
                    .collect();
                let mut candidate = self.table.clone();
                set_faults(&mut candidate, &list);
                if !self.try_keep(candidate, format!("removed {}", removed.join(", "))) {
                    at = end;
                }
            }
            if chunk == 1 {
                return;
            }
            chunk /= 2;
        }
    }

    fn shorter_faults(&mut self) {
        for i in 0..faults(&self.table).len() {
            while let Some(short) = faults(&self.table).get(i).and_then(shorter) {
                let mut list = faults(&self.table);
                let what = format!(
                    "t={} s {}: {} → {}",
                    short.at_s(),
                    short.kind(),
                    list[i].describe(),
                    short.describe()
                );
                list[i] = short;
                let mut candidate = self.table.clone();
                set_faults(&mut candidate, &list);
                if !self.try_keep(candidate, what) {
                    break;
                }
            }
        }
    }

    fn fewer_clients(&mut self) {
        for (key, least) in [
            ("producers", 1),
            ("consumers", 0),
            ("partitions", 1),
            ("admin_interval_s", 0),
        ] {
            self.smaller(&["workload", key], least);
        }
        if self.table_at(&["workload", "group"]).is_some() {
            let mut candidate = self.table.clone();
            remove_at(&mut candidate, &["workload", "group"]);
            if !self.try_keep(candidate, "no consumer group".into()) {
                self.smaller(&["workload", "group", "members"], 1);
                self.smaller(&["workload", "group", "member_faults_per_min"], 0);
                self.smaller(&["workload", "group", "async_commits"], 0);
            }
        }
        if self.table.contains_key("fault_points") {
            let mut candidate = self.table.clone();
            candidate.remove("fault_points");
            self.try_keep(candidate, "no fault points".into());
        }
    }

    /// Bring the number at `path` down towards `least`: `least` itself first, then halves.
    fn smaller(&mut self, path: &[&str], least: i64) {
        let Some(value) = self.table_at(path) else {
            return;
        };
        let current = value
            .as_integer()
            .or_else(|| value.as_float().map(|f| f.ceil() as i64));
        let Some(mut current) = current else {
            return;
        };
        let float = value.is_float();
        let mut next = least;
        while next < current {
            let mut candidate = self.table.clone();
            let v = if float {
                toml::Value::Float(next as f64)
            } else {
                toml::Value::Integer(next)
            };
            set_at(&mut candidate, path, v);
            if self.try_keep(candidate, format!("{} {current} → {next}", path.join("."))) {
                current = next;
                next = least;
            } else {
                // Not that far: try half way.
                let half = next + (current - next) / 2;
                if half <= next || half >= current {
                    return;
                }
                next = half;
            }
        }
    }

    /// Cut the run down towards its last heal plus the liveness deadline (the least it needs
    /// to see the broker come back).
    fn shorter_run(&mut self) {
        let deadline = self
            .table_at(&["expect", "liveness_deadline_s"])
            .and_then(|v| v.as_integer())
            .unwrap_or(0);
        let floor = (last_heal_s(&faults(&self.table)) as i64 + deadline).max(10);
        self.smaller(&["duration_s"], floor);
    }

    fn table_at(&self, path: &[&str]) -> Option<&toml::Value> {
        value_at(&self.table, path)
    }
}

/// The table holding the last key of `path`, and that key.
fn parent_mut<'a, 'p>(
    table: &'a mut toml::Table,
    path: &[&'p str],
) -> Option<(&'a mut toml::Table, &'p str)> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get_mut(*p)?.as_table_mut()?;
    }
    Some((t, last))
}

fn value_at<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(*p)?.as_table()?;
    }
    t.get(*last)
}

fn set_at(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    if let Some((t, key)) = parent_mut(table, path) {
        t.insert(key.into(), value);
    }
}

fn remove_at(table: &mut toml::Table, path: &[&str]) {
    if let Some((t, key)) = parent_mut(table, path) {
        t.remove(key);
    }
}

#[cfg(test)]
mod tests {
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
        let text = format!(
            "{SCENARIO}\n[random_faults]\nrate_per_min = 6\nkinds = [\"pause\", \"crash\"]\n"
        );
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
}

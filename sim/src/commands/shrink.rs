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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{child, load, replay};
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
        | Fault::BusyDisk { for_s, .. }
        | Fault::BusyCpu { for_s, .. }
        | Fault::DiskFull { for_s, .. }
        | Fault::Bitflip { for_s, .. }
        | Fault::ReadEio { for_s, .. }
        | Fault::Partition { for_s, .. }
        | Fault::PacketLoss { for_s, .. }
        | Fault::NetLatency { for_s, .. }
        | Fault::ClockSkew { for_s, .. }
        | Fault::ClockDrift { for_s, .. }
        | Fault::Pause { for_s, .. }
        | Fault::Flood { for_s, .. } => halve(for_s),
        Fault::Crash { down_s, .. } | Fault::Stop { down_s, .. } => halve(down_s),
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

/// The `shrink` command: shrink a failing seed of the scenario at `path` and write (or print)
/// the smallest scenario found.
/// `sim shrink`: see [`crate::commands::shrink`]. Each candidate runs in a child process, from a file
/// beside the output.
pub(super) fn command(path: &Path, seed: u64, out: Option<&Path>, max_runs: usize) -> ExitCode {
    let scenario = match load(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let original = match child(path, seed, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(kind) = original.finding_kinds.first().cloned() else {
        eprintln!(
            "sim: seed {seed} of {} {} — there is no failure to shrink",
            path.display(),
            if original.as_expected {
                "ends as expected"
            } else {
                "has no finding (it was expected to fail)"
            }
        );
        return ExitCode::from(2);
    };
    let drawn = match scenario.for_seed(seed) {
        Ok((s, _)) => s,
        Err(e) => {
            eprintln!("sim: {e:#}");
            return ExitCode::from(2);
        }
    };
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from("shrunk").join(format!("{}-seed{seed}.toml", scenario.name))
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("sim: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let candidate_file = out.with_extension("candidate.toml");
    println!(
        "shrinking {} seed {seed}: it fails with {kind} ({})",
        path.display(),
        original.first_finding
    );
    let mut last_finding = original.first_finding.clone();
    let fails = |table: &toml::Table| -> bool {
        let Ok(text) = toml::to_string(table) else {
            return false;
        };
        if std::fs::write(&candidate_file, text).is_err() {
            return false;
        }
        match child(&candidate_file, seed, None) {
            Ok(s) if !s.as_expected && s.finding_kinds.contains(&kind) => {
                last_finding = s.first_finding;
                true
            }
            _ => false,
        }
    };
    let materialised = materialise(&drawn, seed);
    let faults_before = faults(&materialised).len();
    let mut shrinker = Shrinker::new(materialised.clone(), max_runs, fails);
    shrinker.verbose = true;
    // The explicit form must fail as the seed did before anything is taken away (it runs
    // the same faults and settings, so it should).
    if !shrinker.check_start() {
        let _ = std::fs::remove_file(&candidate_file);
        eprintln!(
            "sim: the explicit form of seed {seed} (drawn settings and faults written out) does not fail with {kind}: cannot shrink"
        );
        return ExitCode::FAILURE;
    }
    let shrunk = shrinker.run();
    let _ = std::fs::remove_file(&candidate_file);
    let mut table = shrunk.table.clone();
    table.insert(
        "name".into(),
        toml::Value::String(format!("{}-seed{seed}-shrunk", scenario.name)),
    );
    let summary = describe(&materialised, &table, faults_before);
    table.insert(
        "description".into(),
        toml::Value::String(format!(
            "Shrunk from {} seed {seed} by `cargo xtask sim shrink` ({} runs): {summary}. \
             It fails with {kind}: {last_finding}",
            path.display(),
            shrunk.runs
        )),
    );
    let replay = replay(&out, seed);
    let text = match toml::to_string(&table) {
        Ok(t) => format!(
            "# Replay: {replay}
{t}"
        ),
        Err(e) => {
            eprintln!("sim: cannot write the shrunk scenario: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(&out, text) {
        eprintln!("sim: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("shrunk in {} runs: {summary}", shrunk.runs);
    println!("  still fails with {kind}: {last_finding}");
    println!("  written to {}", out.display());
    println!("  replay: {replay}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests;

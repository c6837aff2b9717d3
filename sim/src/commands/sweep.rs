//! `sweep`: many seeds, each in a process of its own, a few at a time; progress, the table of
//! outcomes, coverage and figures, the summary for CI (and `merge` of its shards).

use super::*;
use crate::report::summary::SeedSummary as Summary;

pub(super) type SeedOutcome = (u64, Result<Summary, String>);

/// Run one seed in a child process.
pub(crate) fn child(path: &Path, seed: u64, trace_out: Option<&Path>) -> Result<Summary, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Process::new(exe);
    cmd.arg("run")
        .arg(path)
        .args(["--seed", &seed.to_string(), "--summary"]);
    if let Some(out) = trace_out {
        cmd.arg("--trace-out").arg(out);
    }
    let output = cmd.output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("SUMMARY\t"))
        .ok_or_else(|| {
            format!(
                "seed {seed} ended without a summary: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let json = line.trim_start_matches("SUMMARY\t");
    serde_json::from_str(json).map_err(|e| format!("bad summary line {line:?}: {e}"))
}

/// A progress bar on a terminal; in a log (CI), a line at every tenth.
pub(super) fn progress(
    name: &str,
    done: &[SeedOutcome],
    total: usize,
    started: std::time::Instant,
) {
    use std::io::IsTerminal;
    let n = done.len();
    let bad = done
        .iter()
        .filter(|(_, r)| !matches!(r, Ok(s) if s.as_expected))
        .count();
    let elapsed = started.elapsed().as_secs_f64();
    let eta = elapsed / n.max(1) as f64 * (total - n) as f64;
    let line = format!(
        "{name:<24} {n:>6}/{total} seeds, {bad} unexpected, {elapsed:.0} s, ~{eta:.0} s left"
    );
    if std::io::stderr().is_terminal() {
        let width = 30;
        let filled = width * n / total.max(1);
        eprint!(
            "\r[{}{}] {line}",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
    } else if n == total || (n * 10 / total.max(1)) != ((n - 1) * 10 / total.max(1)) {
        eprintln!("{line}");
    }
}

pub(super) fn sweep(
    which: &str,
    seeds: &str,
    jobs: usize,
    shard: Option<&str>,
    summary_out: Option<&Path>,
    require_coverage: bool,
    quick: bool,
) -> ExitCode {
    let Some((first, end)) = parse_range(seeds) else {
        eprintln!("sim: --seeds {seeds:?}: expected A..B");
        return ExitCode::from(2);
    };
    let Some((index, count)) = parse_shard(shard) else {
        eprintln!("sim: --shard {shard:?}: expected i/n with 1 <= i <= n");
        return ExitCode::from(2);
    };
    let paths: Vec<PathBuf> = if which == "all" {
        let mut v: Vec<PathBuf> = std::fs::read_dir("scenarios")
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        v.sort();
        v
    } else {
        vec![PathBuf::from(which)]
    };
    let my_seeds: Arc<Vec<u64>> = Arc::new(
        (first..end)
            .filter(|s| (s - first) % count == index - 1)
            .collect(),
    );
    let mut summary = crate::report::summary::SweepSummary {
        seeds: seeds.to_string(),
        shards: vec![format!("{index}/{count}")],
        scenarios: Vec::new(),
    };
    for path in &paths {
        let scenario = match load(path) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let my_seeds = match scenario.quick_sweep_seeds {
            Some(cap) if quick && cap < my_seeds.len() => {
                eprintln!(
                    "{}: the first {cap} of {} seeds (quick sweep)",
                    scenario.name,
                    my_seeds.len()
                );
                Arc::new(my_seeds[..cap].to_vec())
            }
            _ => my_seeds.clone(),
        };
        let next = Arc::new(AtomicUsize::new(0));
        let results: Arc<Mutex<Vec<SeedOutcome>>> = Arc::default();
        let started = std::time::Instant::now();
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                let (next, results, my_seeds, path, name) = (
                    next.clone(),
                    results.clone(),
                    my_seeds.clone(),
                    path.clone(),
                    scenario.name.clone(),
                );
                std::thread::spawn(move || loop {
                    let Some(&seed) = my_seeds.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let outcome = child(&path, seed, None);
                    let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                    all.push((seed, outcome));
                    progress(&name, &all, my_seeds.len(), started);
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
        let wall = started.elapsed().as_secs_f64();
        let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
        results.sort_by_key(|(seed, _)| *seed);
        let mut s = crate::report::summary::ScenarioSummary {
            name: scenario.name.clone(),
            file: path.display().to_string(),
            seeds: results.len(),
            wall_s: wall,
            coverage: broker::coverage::Event::ALL
                .iter()
                .map(|e| (e.name().to_string(), 0))
                .collect(),
            ..Default::default()
        };
        for (seed, r) in results {
            let why = match r {
                Ok(seed_summary) => {
                    s.add(&seed_summary);
                    if seed_summary.as_expected {
                        continue;
                    }
                    seed_summary.first_finding
                }
                Err(e) => e,
            };
            s.unexpected.push(crate::report::summary::Unexpected {
                seed,
                why,
                replay: replay(path, seed),
            });
        }
        summary.scenarios.push(s);
    }
    finish(&summary, summary_out, require_coverage)
}

/// Print a sweep's (or merged shards') tables, write its summary, and say whether it passed.
pub(super) fn finish(
    summary: &crate::report::summary::SweepSummary,
    summary_out: Option<&Path>,
    require_coverage: bool,
) -> ExitCode {
    print!("{}", summary.render());
    if let Some(out) = summary_out {
        let text = serde_json::to_string_pretty(summary).unwrap_or_default();
        if let Err(e) = std::fs::write(out, text) {
            eprintln!("sim: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        eprintln!("sim: summary written to {}", out.display());
    }
    let unreached = summary.unreached();
    if require_coverage && !unreached.is_empty() {
        println!("no seed reached: {}", unreached.join(", "));
        return ExitCode::FAILURE;
    }
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(super) fn merge(
    files: &[PathBuf],
    summary_out: Option<&Path>,
    require_coverage: bool,
) -> ExitCode {
    let mut parts = Vec::new();
    for f in files {
        let parsed = std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(p) => parts.push(p),
            Err(e) => {
                eprintln!("sim: {}: {e}", f.display());
                return ExitCode::from(2);
            }
        }
    }
    match crate::report::summary::SweepSummary::merge(parts) {
        Ok(m) => {
            println!("merged shards {} of seeds {}", m.shards.join(", "), m.seeds);
            finish(&m, summary_out, require_coverage)
        }
        Err(e) => {
            eprintln!("sim: {e}");
            ExitCode::from(2)
        }
    }
}

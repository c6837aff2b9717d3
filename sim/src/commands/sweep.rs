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
    summary_of(seed, &output.stdout, &output.stderr)
}

/// [`child`] bounded in wall-clock time: a run still going at `limit` is killed, and that is
/// its failure (a defect that stops simulated time hangs a run instead of failing it).
pub(crate) fn child_within(
    path: &Path,
    seed: u64,
    limit: Option<std::time::Duration>,
) -> Result<Summary, String> {
    let Some(limit) = limit else {
        return child(path, seed, None);
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut proc = Process::new(exe)
        .arg("run")
        .arg(path)
        .args(["--seed", &seed.to_string(), "--summary"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let (out, err) = (drain(proc.stdout.take()), drain(proc.stderr.take()));
    let deadline = std::time::Instant::now() + limit;
    let timed_out = loop {
        match proc.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break false,
            None if std::time::Instant::now() >= deadline => {
                let _ = proc.kill();
                let _ = proc.wait();
                break true;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if timed_out {
        return Err(format!(
            "seed {seed} still ran after {} s of wall-clock time (simulated time stopped?)",
            limit.as_secs()
        ));
    }
    summary_of(seed, &out, &err)
}

/// A thread that reads `pipe` to its end (so a chatty child never blocks on a full pipe).
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// A child's summary line, read from its output.
fn summary_of(seed: u64, stdout: &[u8], stderr: &[u8]) -> Result<Summary, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("SUMMARY\t"))
        .ok_or_else(|| {
            format!(
                "seed {seed} ended without a summary: {}",
                String::from_utf8_lossy(stderr)
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

/// One run of a sweep: a scenario (by its place in the sweep), a seed, and whether it is the
/// second run of that seed, made only to compare traces (`--check-determinism`).
struct Job {
    scenario: usize,
    seed: u64,
    twin: bool,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn sweep(
    which: &str,
    seeds: &str,
    jobs: usize,
    shard: Option<&str>,
    summary_out: Option<&Path>,
    require_coverage: bool,
    quick: bool,
    check_determinism: bool,
    junit: Junit<'_>,
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
    let my_seeds: Vec<u64> = (first..end)
        .filter(|s| (s - first) % count == index - 1)
        .collect();
    let mut scenarios = Vec::new();
    for path in &paths {
        match load(path) {
            Ok(s) => scenarios.push(s),
            Err(code) => return code,
        }
    }
    // Every scenario's seeds go into one queue that all workers draw from, so no core idles
    // at the end of a scenario while the other finishes its last seed. The costly scenarios
    // (those that set `quick_sweep_seeds`) go first: the short ones then fill the tail.
    let mut order: Vec<usize> = (0..scenarios.len()).collect();
    order.sort_by_key(|&i| scenarios[i].quick_sweep_seeds.is_none());
    let mut queue = Vec::new();
    let mut planned = vec![0usize; scenarios.len()];
    for &i in &order {
        let scenario = &scenarios[i];
        let seeds = match scenario.quick_sweep_seeds {
            Some(cap) if quick && cap < my_seeds.len() => {
                eprintln!(
                    "{}: the first {cap} of {} seeds (quick sweep)",
                    scenario.name,
                    my_seeds.len()
                );
                &my_seeds[..cap]
            }
            _ => &my_seeds[..],
        };
        planned[i] = seeds.len();
        for (n, &seed) in seeds.iter().enumerate() {
            queue.push(Job {
                scenario: i,
                seed,
                twin: false,
            });
            if n == 0 && check_determinism {
                queue.push(Job {
                    scenario: i,
                    seed,
                    twin: true,
                });
            }
        }
    }
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Vec<SeedOutcome>>> =
        scenarios.iter().map(|_| Mutex::default()).collect();
    let twins: Mutex<Vec<(usize, SeedOutcome)>> = Mutex::default();
    // When each scenario's first run began: its progress and time left count from there.
    let began: Vec<std::sync::OnceLock<std::time::Instant>> = scenarios
        .iter()
        .map(|_| std::sync::OnceLock::new())
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let Some(job) = queue.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                began[job.scenario].get_or_init(std::time::Instant::now);
                let outcome = child(&paths[job.scenario], job.seed, None);
                if job.twin {
                    let mut all = twins.lock().unwrap_or_else(|p| p.into_inner());
                    all.push((job.scenario, (job.seed, outcome)));
                    continue;
                }
                let mut all = results[job.scenario]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                all.push((job.seed, outcome));
                progress(
                    &scenarios[job.scenario].name,
                    &all,
                    planned[job.scenario],
                    *began[job.scenario].get_or_init(std::time::Instant::now),
                );
            });
        }
    });
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    let twins = twins.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut summary = crate::report::summary::SweepSummary {
        seeds: seeds.to_string(),
        shards: vec![format!("{index}/{count}")],
        scenarios: Vec::new(),
    };
    for (i, (path, scenario)) in paths.iter().zip(&scenarios).enumerate() {
        let mut results =
            std::mem::take(&mut *results[i].lock().unwrap_or_else(|p| p.into_inner()));
        results.sort_by_key(|(seed, _)| *seed);
        let mut s = crate::report::summary::ScenarioSummary {
            name: scenario.name.clone(),
            file: path.display().to_string(),
            seeds: results.len(),
            coverage: broker::coverage::Event::ALL
                .iter()
                .map(|e| (e.name().to_string(), 0))
                .collect(),
            ..Default::default()
        };
        for (seed, twin) in twins.iter().filter(|(t, _)| *t == i).map(|(_, o)| o) {
            let first = results.iter().find(|(s, _)| s == seed).map(|(_, r)| r);
            if let Some(why) = not_deterministic(first, twin) {
                s.unexpected.push(crate::report::summary::Unexpected {
                    seed: *seed,
                    why,
                    replay: format!("cargo xtask sim check {} --seed {seed}", path.display()),
                });
            }
        }
        for (seed, r) in results {
            let why = match r {
                Ok(seed_summary) => {
                    s.wall_s += seed_summary.wall_s;
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
    eprintln!(
        "sim: {} runs in {:.0} s on {} workers",
        queue.len(),
        started.elapsed().as_secs_f64(),
        jobs.max(1)
    );
    finish(&summary, summary_out, require_coverage, junit)
}

/// Why a seed run twice was not the same run, if it was not: its two traces' hashes differ.
/// `sim check` shows the first event where they part.
fn not_deterministic(
    first: Option<&Result<Summary, String>>,
    twin: &Result<Summary, String>,
) -> Option<String> {
    match (first, twin) {
        (Some(Ok(a)), Ok(b)) if a.trace_hash == b.trace_hash => None,
        (Some(Ok(a)), Ok(b)) => Some(format!(
            "not deterministic: the seed run twice gave trace hashes {} and {}",
            a.trace_hash, b.trace_hash
        )),
        // A first run that failed is reported with its own failure.
        (None | Some(Err(_)), _) => None,
        (_, Err(e)) => Some(format!("not deterministic: the second run failed: {e}")),
    }
}

/// What a sweep writes for CI beside its summary: JUnit XML, and whether its failing seeds
/// are shrunk first (the first [`SHRUNK_PER_SCENARIO`] of each scenario) so that the report
/// holds the faults that still make each fail.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Junit<'a> {
    pub out: Option<&'a Path>,
    pub shrink: bool,
}

/// Failing seeds shrunk per scenario for the JUnit report (each costs up to
/// [`SHRINK_RUNS`] runs).
const SHRUNK_PER_SCENARIO: usize = 3;
const SHRINK_RUNS: usize = 200;

/// Shrink `seed` of `file` in a child process (`sim shrink`), into `dir`.
fn shrink_one(file: &str, seed: u64, dir: &Path) -> crate::report::junit::Shrunk {
    use crate::report::junit::Shrunk;
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    let out = dir.join(format!("{stem}-seed{seed}.toml"));
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Shrunk::Failed(e.to_string()),
    };
    eprintln!("sim: shrinking {file} seed {seed} for the JUnit report");
    let status = Process::new(exe)
        .arg("shrink")
        .arg(file)
        .args(["--seed", &seed.to_string()])
        .args(["--max-runs", &SHRINK_RUNS.to_string()])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status();
    let table = match status {
        Ok(s) if s.success() => std::fs::read_to_string(&out)
            .map_err(|e| e.to_string())
            .and_then(|t| t.parse::<toml::Table>().map_err(|e| e.to_string())),
        Ok(s) => Err(format!("sim shrink ended with {s}")),
        Err(e) => Err(e.to_string()),
    };
    match table {
        Err(e) => Shrunk::Failed(e),
        Ok(table) => {
            let mut faults = toml::Table::new();
            if let Some(f) = table.get("faults") {
                faults.insert("faults".into(), f.clone());
            }
            Shrunk::Found {
                file: out.display().to_string(),
                faults: toml::to_string(&faults).unwrap_or_default(),
            }
        }
    }
}

/// Write the JUnit report of `summary` (shrinking its failing seeds first if asked).
fn write_junit(
    summary: &crate::report::summary::SweepSummary,
    junit: Junit<'_>,
) -> Result<(), String> {
    let Some(out) = junit.out else {
        return Ok(());
    };
    let mut shrunk = std::collections::BTreeMap::new();
    if junit.shrink {
        let dir = out.parent().unwrap_or(Path::new(".")).join("shrunk");
        for s in &summary.scenarios {
            for u in s.unexpected.iter().take(SHRUNK_PER_SCENARIO) {
                shrunk.insert((s.file.clone(), u.seed), shrink_one(&s.file, u.seed, &dir));
            }
        }
    }
    let lookup = |file: &str, seed: u64| shrunk.get(&(file.to_string(), seed)).cloned();
    let suites = crate::report::junit::sweep_suites(summary, &lookup);
    let name = format!(
        "sim sweep {} (shards {})",
        summary.seeds,
        summary.shards.join(",")
    );
    super::regress::write(out, &crate::report::junit::render(&name, &suites))
}

/// Print a sweep's (or merged shards') tables, write its summary, and say whether it passed.
pub(super) fn finish(
    summary: &crate::report::summary::SweepSummary,
    summary_out: Option<&Path>,
    require_coverage: bool,
    junit: Junit<'_>,
) -> ExitCode {
    print!("{}", summary.render());
    if let Err(e) = write_junit(summary, junit) {
        eprintln!("sim: {e}");
        return ExitCode::FAILURE;
    }
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
    junit: Junit<'_>,
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
            finish(&m, summary_out, require_coverage, junit)
        }
        Err(e) => {
            eprintln!("sim: {e}");
            ExitCode::from(2)
        }
    }
}

//! The `sim` binary: run, check and sweep scenarios. Use it through `cargo xtask sim …`, which
//! builds it with `--cfg madsim`.
//!
//! Every seed of `check` and `sweep` runs in a process of its own, exactly as `run` replays it:
//! state that outlives a run inside one process (madsim numbers tasks process-wide) can change
//! the interleaving, so in-process repetition would not be a faithful replay.

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!("sim: this binary must be built with --cfg madsim; use `cargo xtask sim ...`");
    std::process::ExitCode::from(2)
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(madsim)]
mod cli {
    use std::path::{Path, PathBuf};
    use std::process::{Command as Process, ExitCode};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use clap::{Parser, Subcommand};
    use sim::run::{run, RunReport};
    use sim::scenario::Scenario;

    #[derive(Parser)]
    #[command(name = "sim", about = "Stillwater's deterministic simulation testbed")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run one seed of a scenario and print what the checkers found.
        Run {
            scenario: PathBuf,
            #[arg(long, default_value_t = 1)]
            seed: u64,
            /// Print one machine-readable line (for `check` and `sweep`).
            #[arg(long, hide = true)]
            summary: bool,
            /// Write the trace, one event a line, to this file.
            #[arg(long)]
            trace_out: Option<PathBuf>,
            /// Write a report (JSON, Markdown page, SVG timeline) into this directory.
            #[arg(long)]
            report: Option<PathBuf>,
        },
        /// Run the scenario and seed a JSON report names, again.
        Replay { report: PathBuf },
        /// Run one seed twice (in two processes) and compare the traces.
        Check {
            scenario: PathBuf,
            #[arg(long, default_value_t = 1)]
            seed: u64,
        },
        /// Run many seeds of a scenario (or of every scenario in `scenarios/` with `all`).
        Sweep {
            scenario: String,
            /// Seeds as A..B (B excluded).
            #[arg(long, default_value = "1..101")]
            seeds: String,
            #[arg(long, default_value_t = 2)]
            jobs: usize,
            /// Run only the seeds of shard i of n (i/n, 1-based), for CI matrices.
            #[arg(long)]
            shard: Option<String>,
            /// Write the sweep's summary (outcomes, failing seeds, coverage, figures) as JSON.
            #[arg(long)]
            summary_out: Option<PathBuf>,
            /// Fail when some coverage event was reached by no seed.
            #[arg(long)]
            require_coverage: bool,
            /// Run at most a scenario's `quick_sweep_seeds` of the seeds (the first ones), for
            /// the scenarios that set it: a sweep bounded in time, as CI's.
            #[arg(long)]
            quick: bool,
        },
        /// Shrink a failing seed: write the smallest scenario found (fewer and shorter faults,
        /// fewer clients, a shorter run) that still fails the same way with the same seed.
        Shrink {
            scenario: PathBuf,
            #[arg(long)]
            seed: u64,
            /// Where to write the shrunk scenario [default: shrunk/<name>-seed<N>.toml].
            #[arg(long)]
            out: Option<PathBuf>,
            /// Candidate runs allowed at most.
            #[arg(long, default_value_t = 200)]
            max_runs: usize,
        },
        /// Combine the `--summary-out` files of a sweep's shards into one table.
        Merge {
            files: Vec<PathBuf>,
            /// Write the combined summary as JSON.
            #[arg(long)]
            summary_out: Option<PathBuf>,
            #[arg(long)]
            require_coverage: bool,
        },
    }

    pub fn main() -> ExitCode {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                // The broker's own error lines (a failed directory) are expected in faulty runs;
                // the report says what matters. STILLWATER_LOG=info shows them.
                std::env::var("STILLWATER_LOG").unwrap_or_else(|_| "off".into()),
            ))
            .with_writer(std::io::stderr)
            .try_init();
        match Cli::parse().command {
            Command::Run {
                scenario,
                seed,
                summary,
                trace_out,
                report,
            } => run_one(
                &scenario,
                seed,
                summary,
                trace_out.as_deref(),
                report.as_deref(),
            ),
            Command::Replay { report } => replay_report(&report),
            Command::Check { scenario, seed } => check(&scenario, seed),
            Command::Sweep {
                scenario,
                seeds,
                jobs,
                shard,
                summary_out,
                require_coverage,
                quick,
            } => sweep(
                &scenario,
                &seeds,
                jobs,
                shard.as_deref(),
                summary_out.as_deref(),
                require_coverage,
                quick,
            ),
            Command::Shrink {
                scenario,
                seed,
                out,
                max_runs,
            } => shrink(&scenario, seed, out.as_deref(), max_runs),
            Command::Merge {
                files,
                summary_out,
                require_coverage,
            } => merge(&files, summary_out.as_deref(), require_coverage),
        }
    }

    fn replay(path: &Path, seed: u64) -> String {
        format!("cargo xtask sim run {} --seed {seed}", path.display())
    }

    fn print_report(path: &Path, r: &RunReport) {
        let verdict = if r.as_expected() {
            "as expected"
        } else {
            "UNEXPECTED"
        };
        let outcome = if r.findings.is_empty() {
            "pass"
        } else {
            "failure"
        };
        println!(
            "{} seed {}: {outcome} ({verdict}, expected {}) — {} acknowledged, {} refused, {} unknown (may have been written), \
             {} records read back, {} polled; {:.0} s simulated in {:.2} s ({:.0}× real time)",
            r.scenario,
            r.seed,
            r.expected,
            r.acked,
            r.refused,
            r.unknown,
            r.stats.records,
            r.stats.polled,
            r.simulated_s,
            r.wall_s,
            r.simulated_s / r.wall_s.max(1e-9)
        );
        if !r.config.is_empty() {
            let drawn: Vec<String> = r.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("  configuration drawn: {}", drawn.join(" "));
        }
        if !r.faults.is_empty() {
            println!("  faults:");
            for f in &r.faults {
                match f.node() {
                    Some(node) if r.brokers.len() > 1 => {
                        println!("    t={:>6} s  {} on {node}", f.at_s(), f.describe())
                    }
                    _ => println!("    t={:>6} s  {}", f.at_s(), f.describe()),
                }
            }
        }
        if r.stats.retry_duplicates > 0 {
            println!(
                "  {} value(s) stored twice by producer retries (allowed: retries are not idempotent)",
                r.stats.retry_duplicates
            );
        }
        let reached: Vec<String> = r
            .coverage
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(e, n)| format!("{} ×{n}", e.name()))
            .collect();
        if !reached.is_empty() {
            println!("  coverage: {}", reached.join(", "));
        }
        if !r.figures.is_empty() {
            println!("  expectations (outside fault windows):");
            for f in &r.figures {
                let verdict = if f.holds() { "ok" } else { "BROKEN" };
                println!("    {f}  {verdict}");
            }
        }
        for line in r.finding_lines(5) {
            println!("  {line}");
        }
        println!("  trace hash {:016x}", r.trace_hash());
        if !r.as_expected() {
            println!("  replay: {}", replay(path, r.seed));
        }
    }

    fn load(path: &Path) -> Result<Scenario, ExitCode> {
        Scenario::load(path).map_err(|e| {
            eprintln!("sim: {e:#}");
            ExitCode::from(2)
        })
    }

    fn replay_report(report: &Path) -> ExitCode {
        let parsed = std::fs::read_to_string(report)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
        let value = match parsed {
            Ok(v) => v,
            Err(e) => {
                eprintln!("sim: {}: {e}", report.display());
                return ExitCode::from(2);
            }
        };
        let (Some(file), Some(seed)) = (value["scenario_file"].as_str(), value["seed"].as_u64())
        else {
            eprintln!("sim: {}: no scenario_file and seed", report.display());
            return ExitCode::from(2);
        };
        let code = run_one(Path::new(file), seed, false, None, None);
        if let Some(hash) = value["trace_hash"].as_str() {
            println!("  the report's trace hash: {hash}");
        }
        code
    }

    fn run_one(
        path: &Path,
        seed: u64,
        summary: bool,
        trace_out: Option<&Path>,
        report: Option<&Path>,
    ) -> ExitCode {
        let scenario = match load(path) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let r = match run(&scenario, seed) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sim: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(out) = trace_out {
            if let Err(e) = std::fs::write(out, r.trace.join("\n")) {
                eprintln!("sim: cannot write {}: {e}", out.display());
            }
        }
        if let Some(dir) = report {
            match sim::report::Report::new(path, &scenario, &r).write(dir) {
                Ok(json) => eprintln!("sim: report written to {}", json.display()),
                Err(e) => eprintln!("sim: cannot write the report into {}: {e}", dir.display()),
            }
        }
        if summary {
            let first = r
                .findings
                .first()
                .map(|f| f.to_string())
                .unwrap_or_else(|| "-".into());
            let line = serde_json::to_string(&sim::report::summary::SeedSummary {
                as_expected: r.as_expected(),
                simulated_s: r.simulated_s,
                wall_s: r.wall_s,
                trace_hash: format!("{:016x}", r.trace_hash()),
                first_finding: first,
                finding_kinds: {
                    let mut kinds: Vec<String> = Vec::new();
                    for f in &r.findings {
                        if !kinds.iter().any(|k| k == f.kind()) {
                            kinds.push(f.kind().to_string());
                        }
                    }
                    kinds
                },
                coverage: r
                    .coverage
                    .iter()
                    .map(|(e, n)| (e.name().to_string(), *n))
                    .collect(),
                figures: r
                    .figures
                    .iter()
                    .map(|f| (f.name.to_string(), f.as_range()))
                    .collect(),
            })
            .unwrap_or_default();
            println!("SUMMARY\t{line}");
        } else {
            print_report(path, &r);
        }
        if r.as_expected() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    type SeedOutcome = (u64, Result<Summary, String>);

    use sim::report::summary::SeedSummary as Summary;

    /// Run one seed in a child process.
    fn child(path: &Path, seed: u64, trace_out: Option<&Path>) -> Result<Summary, String> {
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

    /// `sim shrink`: see [`sim::commands::shrink`]. Each candidate runs in a child process, from a file
    /// beside the output.
    fn shrink(path: &Path, seed: u64, out: Option<&Path>, max_runs: usize) -> ExitCode {
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
        let materialised = sim::commands::shrink::materialise(&drawn, seed);
        let faults_before = sim::commands::shrink::faults(&materialised).len();
        let mut shrinker =
            sim::commands::shrink::Shrinker::new(materialised.clone(), max_runs, fails);
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
        let summary = sim::commands::shrink::describe(&materialised, &table, faults_before);
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

    fn check(path: &Path, seed: u64) -> ExitCode {
        let scenario = match load(path) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let dir = std::env::temp_dir();
        let traces = [
            dir.join(format!(
                "sim-check-{}-{seed}-a-{}",
                scenario.name,
                std::process::id()
            )),
            dir.join(format!(
                "sim-check-{}-{seed}-b-{}",
                scenario.name,
                std::process::id()
            )),
        ];
        // The two processes at once: half the wall time on two cores, and the host's timing
        // differs between them more than between two runs one after the other.
        let runs: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = traces
                .iter()
                .map(|t| scope.spawn(move || child(path, seed, Some(t))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the child's thread panicked".to_string()))
                })
                .collect()
        });
        let (a, b) = match (&runs[0], &runs[1]) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let (ta, tb) = (read(&traces[0]), read(&traces[1]));
        for t in &traces {
            let _ = std::fs::remove_file(t);
        }
        if a.trace_hash == b.trace_hash {
            println!(
                "{} seed {seed}: deterministic — trace hash {} ({} events) both times",
                scenario.name,
                a.trace_hash,
                ta.lines().count()
            );
            return ExitCode::SUCCESS;
        }
        let (la, lb): (Vec<&str>, Vec<&str>) = (ta.lines().collect(), tb.lines().collect());
        let at = la
            .iter()
            .zip(&lb)
            .position(|(x, y)| x != y)
            .unwrap_or(la.len().min(lb.len()));
        println!(
            "{} seed {seed}: NOT deterministic — hashes {} and {}; first difference at event {at}:\n  first run:  {}\n  second run: {}",
            scenario.name,
            a.trace_hash,
            b.trace_hash,
            la.get(at).copied().unwrap_or("(end of trace)"),
            lb.get(at).copied().unwrap_or("(end of trace)"),
        );
        ExitCode::FAILURE
    }

    fn parse_range(text: &str) -> Option<(u64, u64)> {
        let (a, b) = text.split_once("..")?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }

    fn parse_shard(shard: Option<&str>) -> Option<(u64, u64)> {
        let Some(text) = shard else {
            return Some((1, 1));
        };
        let (i, n) = text.split_once('/')?;
        let (i, n) = (i.parse::<u64>().ok()?, n.parse::<u64>().ok()?);
        (i >= 1 && i <= n).then_some((i, n))
    }

    /// A progress bar on a terminal; in a log (CI), a line at every tenth.
    fn progress(name: &str, done: &[SeedOutcome], total: usize, started: std::time::Instant) {
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

    fn sweep(
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
        let mut summary = sim::report::summary::SweepSummary {
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
            let mut results =
                std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
            results.sort_by_key(|(seed, _)| *seed);
            let mut s = sim::report::summary::ScenarioSummary {
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
                s.unexpected.push(sim::report::summary::Unexpected {
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
    fn finish(
        summary: &sim::report::summary::SweepSummary,
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

    fn merge(files: &[PathBuf], summary_out: Option<&Path>, require_coverage: bool) -> ExitCode {
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
        match sim::report::summary::SweepSummary::merge(parts) {
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
}

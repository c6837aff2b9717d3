//! One seed: `run` (and its report), `replay` (a report's seed again, its trace hash compared)
//! and `check` (the seed twice, in two processes, the traces compared).

use super::*;

pub(super) fn replay_report(report: &Path) -> ExitCode {
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
    let (Some(file), Some(seed)) = (value["scenario_file"].as_str(), value["seed"].as_u64()) else {
        eprintln!("sim: {}: no scenario_file and seed", report.display());
        return ExitCode::from(2);
    };
    let code = run_one(Path::new(file), seed, false, Outputs::default());
    if let Some(hash) = value["trace_hash"].as_str() {
        println!("  the report's trace hash: {hash}");
    }
    code
}

/// What `run` writes besides what it prints.
#[derive(Default)]
pub(super) struct Outputs<'a> {
    /// The trace, one event a line.
    pub trace: Option<&'a Path>,
    /// The report's directory (JSON, Markdown, SVG).
    pub report: Option<&'a Path>,
    /// The explorable page.
    pub html: Option<&'a Path>,
}

pub(super) fn run_one(path: &Path, seed: u64, summary: bool, outputs: Outputs<'_>) -> ExitCode {
    let Outputs {
        trace: trace_out,
        report,
        html,
    } = outputs;
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
        match crate::report::Report::new(path, &scenario, &r).write(dir) {
            Ok(json) => eprintln!("sim: report written to {}", json.display()),
            Err(e) => eprintln!("sim: cannot write the report into {}: {e}", dir.display()),
        }
    }
    if let Some(file) = html {
        let logged = crate::world::logs::take();
        let page = crate::report::html::page(
            &crate::report::Report::new(path, &scenario, &r),
            &r,
            &logged,
        );
        match std::fs::write(file, page) {
            Ok(()) => eprintln!("sim: page written to {}", file.display()),
            Err(e) => eprintln!("sim: cannot write the page {}: {e}", file.display()),
        }
    }
    if summary {
        let first = r
            .findings
            .first()
            .map(|f| f.to_string())
            .unwrap_or_else(|| "-".into());
        let line = serde_json::to_string(&crate::report::summary::SeedSummary {
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
        crate::report::text::print(path, &r);
    }
    if r.as_expected() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(super) fn check(path: &Path, seed: u64) -> ExitCode {
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

//! JUnit XML, the test report format CI systems read (GitLab, Jenkins, GitHub Actions through a
//! JUnit reporter action): a sweep's (or merged shards') outcome, and the regression corpus's.
//! Each scenario is a test suite: one test case for its seed range (the seeds that ended as
//! expected) and one per seed that did not, failed with its finding, the command that replays
//! it, the command that shrinks it and, where the sweep shrank it, the faults that still make
//! it fail.

use std::fmt::Write as _;

use super::summary::SweepSummary;

/// What shrinking a failing seed gave: the smallest failing scenario's file and its faults
/// (TOML), or why there is none.
#[derive(Debug, Clone)]
pub enum Shrunk {
    Found { file: String, faults: String },
    Failed(String),
}

/// One failing test case: its name, a one-line message, and the text under it.
pub struct Failure {
    pub name: String,
    pub message: String,
    pub text: String,
}

/// One suite: a name, its properties, the passing cases (name, seconds) and the failing ones.
pub struct Suite {
    pub name: String,
    pub properties: Vec<(String, String)>,
    pub passed: Vec<(String, f64)>,
    pub failed: Vec<Failure>,
    pub time_s: f64,
}

/// Text as XML takes it in an attribute or an element: the five special characters escaped,
/// characters XML 1.0 does not allow (most control characters) dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The document of `suites`, named `name`.
pub fn render(name: &str, suites: &[Suite]) -> String {
    let tests: usize = suites.iter().map(|s| s.passed.len() + s.failed.len()).sum();
    let failures: usize = suites.iter().map(|s| s.failed.len()).sum();
    let time: f64 = suites.iter().map(|s| s.time_s).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">",
        escape(name)
    );
    for s in suites {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\">",
            escape(&s.name),
            s.passed.len() + s.failed.len(),
            s.failed.len(),
            s.time_s
        );
        if !s.properties.is_empty() {
            out.push_str("    <properties>\n");
            for (k, v) in &s.properties {
                let _ = writeln!(
                    out,
                    "      <property name=\"{}\" value=\"{}\"/>",
                    escape(k),
                    escape(v)
                );
            }
            out.push_str("    </properties>\n");
        }
        let class = format!("sim.{}", s.name);
        for (case, time) in &s.passed {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\"/>",
                escape(&class),
                escape(case)
            );
        }
        for f in &s.failed {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\">\n      <failure message=\"{}\" type=\"unexpected\">{}</failure>\n    </testcase>",
                escape(&class),
                escape(&f.name),
                escape(&f.message),
                escape(&f.text)
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A failing seed's text: its finding, how to replay and shrink it, and what shrinking found.
pub fn failure_text(why: &str, replay: &str, shrink: &str, shrunk: Option<&Shrunk>) -> String {
    let mut text = format!("{why}\n\nreplay: {replay}\nshrink: {shrink}\n");
    match shrunk {
        Some(Shrunk::Found { file, faults }) => {
            let _ = write!(
                text,
                "\nshrunk to {file}; the faults that still make it fail:\n{}",
                if faults.trim().is_empty() {
                    "(none: it fails without a fault)\n"
                } else {
                    faults
                }
            );
        }
        Some(Shrunk::Failed(e)) => {
            let _ = write!(text, "\nshrinking failed: {e}\n");
        }
        None => {}
    }
    text
}

/// A sweep's suites: each scenario's seed range as one case, each unexpected seed as another.
pub fn sweep_suites(
    summary: &SweepSummary,
    shrunk: &dyn Fn(&str, u64) -> Option<Shrunk>,
) -> Vec<Suite> {
    summary
        .scenarios
        .iter()
        .map(|s| {
            let failed = s
                .unexpected
                .iter()
                .map(|u| Failure {
                    name: format!("seed {}", u.seed),
                    message: u.why.lines().next().unwrap_or("").to_string(),
                    text: failure_text(
                        &u.why,
                        &u.replay,
                        &format!("cargo xtask sim shrink {} --seed {}", s.file, u.seed),
                        shrunk(&s.file, u.seed).as_ref(),
                    ),
                })
                .collect();
            Suite {
                name: s.name.clone(),
                properties: vec![
                    ("file".into(), s.file.clone()),
                    ("seeds".into(), summary.seeds.clone()),
                    ("shards".into(), summary.shards.join(",")),
                    ("simulated_s".into(), format!("{:.1}", s.simulated_s)),
                ],
                passed: vec![(
                    format!(
                        "seeds {} ({} of {} as expected)",
                        summary.seeds, s.ok, s.seeds
                    ),
                    s.wall_s,
                )],
                failed,
                time_s: s.wall_s,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::{ScenarioSummary, Unexpected};

    fn summary() -> SweepSummary {
        SweepSummary {
            seeds: "1..11".into(),
            shards: vec!["1/1".into()],
            scenarios: vec![ScenarioSummary {
                name: "swarm".into(),
                file: "scenarios/swarm.toml".into(),
                seeds: 10,
                ok: 9,
                wall_s: 12.5,
                unexpected: vec![Unexpected {
                    seed: 8,
                    why: "owned-twice: partition 3 had two owners <in> generation 4 & \"5\"\u{1}"
                        .into(),
                    replay: "cargo xtask sim run scenarios/swarm.toml --seed 8".into(),
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_failing_seed_is_a_failed_case_with_its_replay_and_shrunk_faults() {
        let shrunk = |file: &str, seed: u64| {
            (file == "scenarios/swarm.toml" && seed == 8).then(|| Shrunk::Found {
                file: "shrunk/swarm-seed8.toml".into(),
                faults: "[[faults]]\nkind = \"fsync-stall\"\n".into(),
            })
        };
        let xml = render("sim sweep", &sweep_suites(&summary(), &shrunk));
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("name=\"seeds 1..11 (9 of 10 as expected)\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"seed 8\""), "{xml}");
        assert!(xml.contains("replay: cargo xtask sim run scenarios/swarm.toml --seed 8"));
        assert!(xml.contains("shrink: cargo xtask sim shrink scenarios/swarm.toml --seed 8"));
        assert!(xml.contains("kind = &quot;fsync-stall&quot;"), "{xml}");
        // Escaped, and the control character dropped: the document stays well-formed.
        assert!(
            xml.contains("two owners &lt;in&gt; generation 4 &amp; &quot;5&quot;"),
            "{xml}"
        );
        assert!(!xml.contains('\u{1}'));
        assert_eq!(xml.matches("<testcase ").count(), 2);
        assert_eq!(xml.matches("</testsuite>").count(), 1);
    }

    #[test]
    fn a_passing_sweep_has_no_failure() {
        let mut s = summary();
        s.scenarios[0].unexpected.clear();
        s.scenarios[0].ok = 10;
        let xml = render("sim sweep", &sweep_suites(&s, &|_, _| None));
        assert!(xml.contains("failures=\"0\""));
        assert!(!xml.contains("<failure"));
    }
}

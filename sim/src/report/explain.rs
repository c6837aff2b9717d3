//! `sim explain`: for a run's first finding, the chain that led to it, in a few lines, from
//! what the run already records — the finding's subject (its partition, value, broker and
//! moment, read from its sentence), the client operations about that subject (the sends of
//! the value, the first and the acknowledged one, or the operations on the partition just
//! before the finding), the leaders the clients were told of meanwhile, and the faults whose
//! windows touch that span — the one on the broker the operations went to first. The chain is
//! a reading of the record, ordered in time, for a person to start from; the trace has the
//! rest.

use crate::findings::Finding;
use crate::history::{value_name, Op, SendOutcome};
use crate::outcome::RunReport;
use crate::scenario::Fault;

/// What a finding is about, as its sentence names it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Subject {
    pub partition: Option<i32>,
    /// A record's name (the text in the first quotes).
    pub value: Option<String>,
    /// A broker (`broker-N`).
    pub broker: Option<String>,
    /// When it was seen (`at t=S s`).
    pub at_s: Option<f64>,
}

/// The subject named in a finding's sentence.
pub fn subject(text: &str) -> Subject {
    let mut s = Subject::default();
    let words: Vec<&str> = text.split_whitespace().collect();
    for w in words.windows(2) {
        if s.partition.is_none() && w[0] == "partition" {
            s.partition = w[1]
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok();
        }
    }
    if s.partition.is_none() {
        // `inconsistent offset 3/17`, `at 2/40`: partition/offset.
        s.partition = words.iter().find_map(|w| {
            let (p, o) = w.trim_end_matches([':', ',', ')']).split_once('/')?;
            o.parse::<i64>().ok()?;
            p.parse().ok()
        });
    }
    if let Some(start) = text.find('"') {
        if let Some(len) = text[start + 1..].find('"') {
            s.value = Some(text[start + 1..start + 1 + len].to_string());
        }
    }
    s.broker = words.iter().find_map(|w| {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
        w.strip_prefix("broker-")
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            .map(|_| w.to_string())
    });
    if let Some(i) = text.find("t=") {
        let rest = &text[i + 2..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        s.at_s = rest[..end].parse().ok();
    }
    if s.at_s.is_none() {
        // `at 2.778 s`.
        s.at_s = words.windows(3).find_map(|w| {
            (w[0] == "at" && w[2].trim_end_matches([',', ';', ':', ')']) == "s")
                .then(|| w[1].parse().ok())
                .flatten()
        });
    }
    s
}

/// One line of the chain: when, and what.
struct Line {
    at_s: f64,
    text: String,
}

fn broker_name(r: &RunReport, index: usize) -> String {
    r.brokers
        .get(index)
        .cloned()
        .unwrap_or_else(|| "an unknown broker".into())
}

fn outcome(o: &SendOutcome) -> String {
    match o {
        SendOutcome::Ok(offset) => format!("acknowledged at offset {offset}"),
        SendOutcome::Failed { code, definite } => format!(
            "refused with error {code} ({})",
            if *definite {
                "not written"
            } else {
                "may have been written"
            }
        ),
        SendOutcome::Unknown => "not answered (may have been written)".into(),
    }
}

/// The chain of the first finding of `r`, a line each; one line when there is none.
pub fn explain(r: &RunReport) -> Vec<String> {
    let Some(first) = r.findings.first() else {
        return vec![format!(
            "{} seed {}: no finding — the run ended as the checkers expect",
            r.scenario, r.seed
        )];
    };
    chain(r, first)
}

/// What a finding is about, found in the record: its subject, the sends it concerns (their
/// indexes in the history), the span of time they cover and the broker they went to.
#[derive(Debug, Clone)]
pub struct Focus {
    pub subject: Subject,
    pub picked: Vec<usize>,
    pub from_s: f64,
    pub until_s: f64,
    pub target: Option<String>,
}

/// The focus of `finding` in run `r`.
pub fn focus(r: &RunReport, finding: &Finding) -> Focus {
    let subj = subject(&finding.to_string());
    // The operations about the subject: the sends of its value, or those on its partition.
    let sends: Vec<(usize, &crate::history::Send)> = r
        .history
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Send(s) => Some((i, s)),
            _ => None,
        })
        .filter(|(_, s)| match (&subj.value, subj.partition) {
            (Some(v), _) => value_name(&s.value) == *v,
            (None, Some(p)) => s.partition == p && subj.at_s.is_none_or(|t| s.completed_s <= t),
            (None, None) => false,
        })
        .collect();
    let picked: Vec<(usize, &crate::history::Send)> = if subj.value.is_some() {
        // The first attempt, and the one acknowledged if it is another.
        let mut v: Vec<_> = sends.first().copied().into_iter().collect();
        if let Some(acked) = sends
            .iter()
            .find(|(_, s)| matches!(s.outcome, SendOutcome::Ok(_)))
        {
            if v.first().is_none_or(|f| f.0 != acked.0) {
                v.push(*acked);
            }
        }
        v
    } else {
        sends.iter().rev().take(2).rev().copied().collect()
    };
    // The span the chain covers, and the broker the operations went to.
    let from_s = picked
        .first()
        .map(|(_, s)| s.invoked_s)
        .or(subj.at_s)
        .unwrap_or(0.0);
    let until_s = subj
        .at_s
        .or(picked.last().map(|(_, s)| s.completed_s))
        .unwrap_or(r.simulated_s);
    let target = picked
        .first()
        .map(|(_, s)| broker_name(r, s.broker))
        .or(subj.broker.clone());
    Focus {
        picked: picked.iter().map(|(i, _)| *i).collect(),
        subject: subj,
        from_s,
        until_s,
        target,
    }
}

fn chain(r: &RunReport, finding: &Finding) -> Vec<String> {
    let text = finding.to_string();
    let Focus {
        subject: subj,
        picked,
        from_s,
        until_s,
        target,
    } = focus(r, finding);
    let picked: Vec<&crate::history::Send> = picked
        .iter()
        .filter_map(|&i| match &r.history[i] {
            Op::Send(s) => Some(s),
            _ => None,
        })
        .collect();
    let mut lines: Vec<Line> = Vec::new();
    for s in &picked {
        lines.push(Line {
            at_s: s.invoked_s,
            text: format!(
                "producer {} sent {:?} to partition {} on {} (attempt {}, acks={}): {} at {:.3} s",
                s.producer,
                value_name(&s.value),
                s.partition,
                broker_name(r, s.broker),
                s.attempt,
                s.acks,
                outcome(&s.outcome),
                s.completed_s
            ),
        });
    }
    let target_is = if picked.is_empty() {
        "the broker the finding names"
    } else {
        "the broker the operations went to"
    };
    if let Some(p) = subj.partition {
        let mut previous: Option<i32> = None;
        for &(at, partition, leader) in &r.leader_changes {
            if partition != p {
                continue;
            }
            if at >= from_s - 10.0 && at <= until_s + 30.0 {
                let name = |id: i32| {
                    if id < 0 {
                        "no leader".to_string()
                    } else {
                        format!("broker-{id}")
                    }
                };
                lines.push(Line {
                    at_s: at,
                    text: format!(
                        "clients were told partition {p}'s leader is {}{}",
                        name(leader),
                        previous
                            .map(|l| format!(" (was {})", name(l)))
                            .unwrap_or_default()
                    ),
                });
            }
            previous = Some(leader);
        }
    }
    // The faults whose windows touch the span (a little before it too: a fault's effect
    // outlives its window).
    let touching: Vec<&Fault> = r
        .faults
        .iter()
        .filter(|f| (f.at_s() as f64) <= until_s + 1.0 && (f.healed_at_s() as f64) >= from_s - 30.0)
        .collect();
    for f in &touching {
        let on_target = target.as_deref().is_some_and(|t| f.node() == Some(t));
        lines.push(Line {
            at_s: f.at_s() as f64,
            text: format!(
                "fault: {} (t={}–{} s){}",
                f.describe(),
                f.at_s(),
                f.healed_at_s(),
                if on_target {
                    format!(", on {target_is}")
                } else {
                    String::new()
                }
            ),
        });
    }
    lines.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let mut out = vec![format!(
        "{} seed {}, first finding ({}): {text}",
        r.scenario,
        r.seed,
        finding.kind()
    )];
    out.extend(
        lines
            .iter()
            .map(|l| format!("  t={:>9.3} s  {}", l.at_s, l.text)),
    );
    let cause = touching
        .iter()
        .find(|f| target.as_deref().is_some_and(|t| f.node() == Some(t)))
        .or_else(|| touching.iter().find(|f| f.node().is_none()))
        .or_else(|| touching.first());
    out.push(match cause {
        Some(f) => format!(
            "  likely cause: {} at t={} s{}",
            f.describe(),
            f.at_s(),
            match &target {
                Some(t) if f.node() == Some(t.as_str()) => format!(", on {t}, {target_is}"),
                _ => String::new(),
            }
        ),
        None => "  no fault touches this span: the cause is in the brokers' own behaviour (see the trace)".into(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_findings_subject_is_read_from_its_sentence() {
        let s = subject(
            "lost write: \"p1-0\" (acknowledged at offset 0 in partition 2) is not in the log",
        );
        assert_eq!((s.partition, s.value.as_deref()), (Some(2), Some("p1-0")));
        let s = subject("inconsistent offset 3/17: acked \"a\"; polled \"b\"");
        assert_eq!(s.partition, Some(3));
        let s = subject(
            "liveness: node broker-1 did not answer a produce for 10 s (at t=165.0 s); pending",
        );
        assert_eq!(
            (s.broker.as_deref(), s.at_s),
            (Some("broker-1"), Some(165.0))
        );
        let s = subject("config update lost: at 2.778 s broker-2 describes max.message.bytes");
        assert_eq!(
            (s.at_s, s.broker.as_deref()),
            (Some(2.778), Some("broker-2"))
        );
        assert_eq!(subject("nothing here"), Subject::default());
    }
}

//! A topic's configuration as the brokers describe it, against what the admin client was told
//! ([`crate::workload::configs`]). A description through a broker right after a change it
//! acknowledged, and every broker's after the run, must give each key the value of the last
//! change to it acknowledged before the description was asked for, or of a change whose outcome
//! is unknown or still coming. (A broker acknowledges a change once its own replica of the
//! metadata has applied it, so it has applied every change acknowledged before.) A change made
//! from stale configs — a broker's replica that had not yet applied the change before it —
//! puts an older value back: a lost update.

use std::collections::BTreeMap;

use crate::checks::metadata::definite;
use crate::findings::Finding;
use crate::history::{Admin, Op};

/// One change: the topic, the key and the value it set.
fn change(a: &Admin) -> Option<(&str, &str, &str)> {
    let rest = a.what.strip_prefix("alter-config ")?;
    let mut words = rest.split(' ');
    let topic = words.next()?;
    let (key, value) = words.next()?.split_once('=')?;
    Some((topic, key, value))
}

/// One description asked during the run: the topic, the broker, each key's value.
fn description(a: &Admin) -> Option<(&str, &str, BTreeMap<&str, &str>)> {
    if a.error.is_some() {
        return None;
    }
    let rest = a.what.strip_prefix("describe-config ")?;
    let (rest, broker) = rest.rsplit_once(" via ")?;
    let mut words = rest.split(' ');
    let topic = words.next()?;
    let values = words.filter_map(|w| w.split_once('=')).collect();
    Some((topic, broker, values))
}

/// One description: which broker, when it was asked (`None`: after the run), the span it was
/// under way, each key's value.
struct Described<'a> {
    broker: String,
    at_s: Option<f64>,
    asked: f64,
    answered: f64,
    values: BTreeMap<&'a str, &'a str>,
}

/// The descriptions asked during the run (from the history) and each broker's after the run
/// (its index in the run's brokers, 0 is `broker-1`; `None`: it did not answer) of the
/// configured topic `topic`, against the admin's changes in the history.
pub fn configs_as_acknowledged(
    history: &[Op],
    topic: &str,
    after_run: &[Option<BTreeMap<String, String>>],
) -> Vec<Finding> {
    // Per key, its changes in the order they were invoked.
    let mut changes: BTreeMap<&str, Vec<(&str, &Admin)>> = BTreeMap::new();
    let mut described: Vec<Described> = Vec::new();
    for op in history {
        let Op::Admin(a) = op else { continue };
        if let Some((_, key, value)) = change(a).filter(|c| c.0 == topic) {
            changes.entry(key).or_default().push((value, a));
        } else if let Some((_, broker, values)) = description(a).filter(|d| d.0 == topic) {
            described.push(Described {
                broker: broker.to_string(),
                at_s: Some(a.invoked_s),
                asked: a.invoked_s,
                answered: a.completed_s,
                values,
            });
        }
    }
    for (i, configs) in after_run.iter().enumerate() {
        if let Some(configs) = configs {
            let values = configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            described.push(Described {
                broker: format!("broker-{}", i + 1),
                at_s: None,
                asked: f64::INFINITY,
                answered: f64::INFINITY,
                values,
            });
        }
    }
    let unknown = |a: &Admin| a.error.as_deref().is_some_and(|e| !definite(e));
    let mut out = Vec::new();
    for Described {
        broker,
        at_s,
        asked,
        answered,
        values,
    } in described
    {
        for (key, changes) in &changes {
            let Some(last_ok) = changes
                .iter()
                .rposition(|(_, a)| a.error.is_none() && a.completed_s <= asked)
            else {
                continue;
            };
            // Or a change that may have been made since: acknowledged while the description
            // was under way, or with no answer (it may be applied late).
            let mut allowed: Vec<&str> = vec![changes[last_ok].0];
            for (i, (value, a)) in changes.iter().enumerate() {
                let open = (a.error.is_none() && a.completed_s > asked) || unknown(a);
                if i != last_ok && a.invoked_s < answered && open {
                    allowed.push(value);
                }
            }
            let found = values.get(key).copied();
            if !found.is_some_and(|v| allowed.contains(&v)) {
                out.push(Finding::ConfigLost {
                    broker: broker.clone(),
                    at_s,
                    topic: topic.to_string(),
                    key: key.to_string(),
                    found: found.map(str::to_string),
                    acknowledged: changes[last_ok].1.what.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alter(key: &str, value: &str, at: f64, error: Option<&str>) -> Op {
        Op::Admin(Admin {
            what: format!("alter-config t {key}={value} via broker-1"),
            invoked_s: at,
            completed_s: at + 0.01,
            error: error.map(str::to_string),
        })
    }

    fn described(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_last_acknowledged_value_of_each_key_must_stand_on_every_broker() {
        let history = vec![
            alter("retention.ms", "1", 1.0, None),
            alter("segment.ms", "2", 2.0, None),
            alter("retention.ms", "3", 3.0, None),
            alter("segment.ms", "4", 4.0, Some("broker error code 40")),
        ];
        let good = described(&[("retention.ms", "3"), ("segment.ms", "2")]);
        assert!(configs_as_acknowledged(&history, "t", &[good.clone(), good.clone()]).is_empty());
        // broker-2 lost the third change (the first of two in a row, overwritten from stale
        // configs), and a definite refusal does not count.
        let lost = described(&[("retention.ms", "1"), ("segment.ms", "2")]);
        let refused = described(&[("retention.ms", "3"), ("segment.ms", "4")]);
        let f = configs_as_acknowledged(&history, "t", &[good, lost, refused, None]);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].to_string().contains("broker-2"), "{}", f[0]);
        assert!(f[1].to_string().contains("broker-3"), "{}", f[1]);
        assert_eq!(f[0].kind(), "config-lost-update");
    }

    fn describe(at: f64, via: &str, pairs: &str) -> Op {
        Op::Admin(Admin {
            what: format!("describe-config t {pairs} via {via}"),
            invoked_s: at,
            completed_s: at + 0.01,
            error: None,
        })
    }

    #[test]
    fn a_description_during_the_run_must_show_every_change_acknowledged_before_it() {
        let mut history = vec![
            alter("retention.ms", "1", 1.0, None),
            alter("segment.ms", "2", 2.0, None),
            describe(2.5, "broker-2", "retention.ms=1 segment.ms=2"),
            alter("retention.ms", "3", 3.0, None),
            // A change still under way when it was asked: either value.
            alter("segment.ms", "4", 3.5, None),
            describe(3.505, "broker-1", "retention.ms=3 segment.ms=2"),
        ];
        assert!(configs_as_acknowledged(&history, "t", &[]).is_empty());
        // The second change through broker-3, made from configs without the first: lost.
        history.push(alter("segment.ms", "5", 4.0, None));
        history.push(describe(4.5, "broker-3", "retention.ms=1 segment.ms=5"));
        let f = configs_as_acknowledged(&history, "t", &[]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].to_string().contains("broker-3"), "{}", f[0]);
        assert!(f[0].to_string().contains("retention.ms=3"), "{}", f[0]);
    }

    #[test]
    fn a_change_with_no_answer_may_have_been_made() {
        let history = vec![
            alter("retention.ms", "1", 1.0, None),
            alter("retention.ms", "2", 2.0, Some("no answer")),
            alter("retention.ms", "3", 3.0, Some("broker error code 7")),
        ];
        for v in ["1", "2", "3"] {
            let d = described(&[("retention.ms", v)]);
            assert!(
                configs_as_acknowledged(&history, "t", &[d]).is_empty(),
                "{v}"
            );
        }
        let d = described(&[("retention.ms", "0")]);
        assert_eq!(configs_as_acknowledged(&history, "t", &[d]).len(), 1);
    }
}

//! Authentication and authorization judged against the metadata log (scenarios with
//! `[auth.churn]`): every login and request of the security probes, decided by a broker,
//! must be what the users and ACLs said at the point of the metadata log that broker had
//! applied when it decided — Kafka's promise, under which a change takes effect on each broker
//! as that broker applies it.
//!
//! What the brokers tell the simulator ([`Publication`]): each time one published its replica
//! of the security metadata, the offset it had applied up to and the security changes it
//! applied on the way. From those the checker rebuilds the log of security changes (every
//! broker must agree on it) and, with its own model of credentials and ACLs (written apart
//! from the broker's), the users and ACLs at every point of it.
//!
//! A broker's point is never allowed to go back, even across its restarts: between a request's
//! sending and its answer, the broker may have decided at any point from the furthest it had
//! reached before (in this start or an earlier one) to the furthest it reached before
//! answering. Then:
//! - `served-unauthorized`: a login or request allowed although no such point allowed it;
//! - `refused-authorized`: one refused although every such point allowed it;
//! - `security-diverged`: two brokers applied different changes at one offset, or a broker
//!   published a point without a change below it;
//! - `security-unapplied`: a broker never applied a change that another had applied long
//!   before the end (the run's faults healed by then).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use broker::security::acl::{op, pattern, permission, resource, AclBinding, AclFilter};
use broker::security::scram::{Credential, Mechanism};
use broker::security::SecurityChange;

use crate::findings::{Decision, Finding};
use crate::history::{Access, AccessKind, AccessOutcome, Op, Publication};
use rules::Need;

/// What the checker needs of the scenario.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The probes' SASL mechanism.
    pub mechanism: String,
    /// Principals the authorizer allows everything.
    pub super_users: Vec<String>,
    /// By then the faults have healed long enough for every broker to apply every change.
    pub settled_s: f64,
}

/// Every finding of the security probes' history against what the brokers published.
pub fn check(history: &[Op], publications: &[Publication], settings: &Settings) -> Vec<Finding> {
    let mut findings = Vec::new();
    let log = security_log(publications, &mut findings);
    let states = States::new(&log);
    let points = Points::new(publications);
    let mechanism = match settings.mechanism.as_str() {
        "SCRAM-SHA-256" => Mechanism::Sha256,
        _ => Mechanism::Sha512,
    };
    let verified = RefCell::new(HashMap::new());
    for a in history.iter().filter_map(|op| match op {
        Op::Access(a) => Some(a),
        _ => None,
    }) {
        let allowed = match a.outcome {
            AccessOutcome::Allowed => true,
            AccessOutcome::Refused(_) => false,
            AccessOutcome::Unknown => continue,
        };
        let from = points.before(a.broker, a.invoked_s);
        let to = points.by(a.broker, a.completed_s).max(from);
        let decisions: Vec<bool> = states
            .between(from, to)
            .map(|m| m.allows(a, mechanism, settings, &verified))
            .collect();
        let explained = decisions.contains(&allowed);
        if !explained {
            let finding = if allowed {
                Finding::ServedUnauthorized
            } else {
                Finding::RefusedAuthorized
            };
            findings.push(finding(decision(a, from, to)));
        }
    }
    findings.extend(unapplied(&log, publications, settings));
    findings
}

fn decision(a: &Access, from: i64, to: i64) -> Decision {
    let what = match &a.kind {
        AccessKind::Login { password } => format!("login with password {password:?}"),
        AccessKind::Request { probe, version } => {
            let needs = rules::needs(*probe);
            format!("{probe:?} v{version} (needs {needs:?})")
        }
    };
    Decision {
        user: a.user.clone(),
        what,
        broker: a.broker,
        invoked_s: a.invoked_s,
        completed_s: a.completed_s,
        from,
        to,
    }
}

/// The security changes of the metadata log, by the offset after their record, as the brokers
/// applied them; a disagreement (two brokers, two changes at one offset) or a broker that
/// published a point without a change below it is a finding.
fn security_log(
    publications: &[Publication],
    findings: &mut Vec<Finding>,
) -> BTreeMap<i64, Vec<SecurityChange>> {
    let mut log: BTreeMap<i64, (usize, Vec<SecurityChange>)> = BTreeMap::new();
    for p in publications {
        for (offset, changes) in &p.changes {
            match log.get(offset) {
                None => {
                    log.insert(*offset, (p.broker, changes.clone()));
                }
                Some((first, theirs)) if theirs != changes => {
                    findings.push(Finding::SecurityDiverged {
                        offset: *offset,
                        what: format!(
                            "broker-{} applied {theirs:?}, broker-{} {changes:?}",
                            first + 1,
                            p.broker + 1
                        ),
                    });
                }
                Some(_) => {}
            }
        }
    }
    // Each start of a broker applies the log from its start: a point it publishes covers
    // every change below it.
    let mut applied: BTreeMap<(usize, u64), BTreeSet<i64>> = BTreeMap::new();
    let mut told = BTreeSet::new();
    for p in publications {
        let mine = applied.entry((p.broker, p.incarnation)).or_default();
        mine.extend(p.changes.iter().map(|(o, _)| *o));
        let skipped = log
            .range(..=p.position)
            .map(|(o, _)| *o)
            .find(|o| !mine.contains(o));
        if let Some(offset) = skipped {
            if told.insert((p.broker, offset)) {
                findings.push(Finding::SecurityDiverged {
                    offset,
                    what: format!(
                        "broker-{} published offset {} at t={:.3} s without applying the change at {offset}",
                        p.broker + 1,
                        p.position,
                        p.at_s
                    ),
                });
            }
        }
    }
    log.into_iter().map(|(o, (_, c))| (o, c)).collect()
}

/// The furthest point of the metadata log each broker had published, over time (never going
/// back: a restarted broker's earlier starts count).
struct Points(BTreeMap<usize, Vec<(f64, i64)>>);

impl Points {
    fn new(publications: &[Publication]) -> Points {
        let mut by: BTreeMap<usize, Vec<(f64, i64)>> = BTreeMap::new();
        for p in publications {
            let line = by.entry(p.broker).or_default();
            let furthest = line
                .last()
                .map_or(p.position, |(_, f)| (*f).max(p.position));
            line.push((p.at_s, furthest));
        }
        Points(by)
    }

    /// The furthest point `broker` published strictly before `t` (-1: none).
    fn before(&self, broker: usize, t: f64) -> i64 {
        self.at(broker, |at| at < t)
    }

    /// The furthest point `broker` published at or before `t` (-1: none).
    fn by(&self, broker: usize, t: f64) -> i64 {
        self.at(broker, |at| at <= t)
    }

    fn at(&self, broker: usize, within: impl Fn(f64) -> bool) -> i64 {
        self.0
            .get(&broker)
            .and_then(|line| line.iter().take_while(|(at, _)| within(*at)).last())
            .map_or(-1, |(_, f)| *f)
    }

    /// Each broker's furthest point at the end.
    fn last(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.0
            .iter()
            .map(|(b, line)| (*b, line.last().map_or(-1, |(_, f)| *f)))
    }
}

/// The users and ACLs after each prefix of the log: `models[i]` holds the first `i` changes.
struct States {
    offsets: Vec<i64>,
    models: Vec<Model>,
}

impl States {
    fn new(log: &BTreeMap<i64, Vec<SecurityChange>>) -> States {
        let mut models = vec![Model::default()];
        for changes in log.values() {
            let mut next = models.last().cloned().unwrap_or_default();
            for c in changes {
                next.apply(c);
            }
            models.push(next);
        }
        States {
            offsets: log.keys().copied().collect(),
            models,
        }
    }

    /// The states at every point from `from` to `to`.
    fn between(&self, from: i64, to: i64) -> impl Iterator<Item = &Model> {
        let index = |p: i64| self.offsets.partition_point(|o| *o <= p);
        let (lo, hi) = (index(from), index(to));
        self.models[lo..=hi.max(lo)].iter()
    }
}

/// The checker's own model of the security metadata: credentials by user and mechanism, and
/// the ACLs.
#[derive(Debug, Clone, Default)]
struct Model {
    credentials: BTreeMap<(String, Mechanism), Credential>,
    acls: BTreeSet<AclBinding>,
}

impl Model {
    fn apply(&mut self, change: &SecurityChange) {
        match change {
            SecurityChange::SetCredential { user, credential } => {
                self.credentials
                    .insert((user.clone(), credential.mechanism), credential.clone());
            }
            SecurityChange::Bootstrap { user, credential } => {
                self.credentials
                    .entry((user.clone(), credential.mechanism))
                    .or_insert_with(|| credential.clone());
            }
            SecurityChange::DeleteCredential { user, mechanism } => {
                self.credentials.remove(&(user.clone(), *mechanism));
            }
            SecurityChange::CreateAcl { binding } => {
                self.acls.insert(binding.clone());
            }
            SecurityChange::DeleteAcls { filters } => {
                self.acls
                    .retain(|b| !filters.iter().any(|f| filter_matches(f, b)));
            }
        }
    }

    fn allows(
        &self,
        a: &Access,
        mechanism: Mechanism,
        settings: &Settings,
        verified: &RefCell<HashMap<(Vec<u8>, String), bool>>,
    ) -> bool {
        let principal = format!("User:{}", a.user);
        let probe = match &a.kind {
            AccessKind::Login { password } => {
                let Some(c) = self.credentials.get(&(a.user.clone(), mechanism)) else {
                    return false;
                };
                let key = (c.stored_key.clone(), password.clone());
                if let Some(v) = verified.borrow().get(&key) {
                    return *v;
                }
                let v = c.verify_password(password.as_bytes());
                verified.borrow_mut().insert(key, v);
                return v;
            }
            AccessKind::Request { probe, .. } => *probe,
        };
        if settings.super_users.contains(&principal) {
            return true;
        }
        rules::needs(probe).iter().all(|clause| {
            clause.iter().any(|need| match *need {
                Need::On(rt, name, operation) => {
                    rules::permits(self.acls.iter(), &principal, (rt, name, operation))
                }
                Need::AnyTopic(operation) => {
                    rules::permits_some_topic(self.acls.iter(), &principal, operation)
                }
            })
        })
    }
}

/// Whether a DeleteAcls filter (ANY and `None` match everything) takes `b`.
fn filter_matches(f: &AclFilter, b: &AclBinding) -> bool {
    let any_or = |want: i8, any: i8, have: i8| want == any || want == have;
    let name_ok = f.name.as_ref().is_none_or(|n| *n == b.name);
    any_or(f.resource_type, resource::ANY, b.resource_type)
        && name_ok
        && any_or(f.pattern, pattern::ANY, b.pattern)
        && f.principal.as_ref().is_none_or(|p| *p == b.principal)
        && f.host.as_ref().is_none_or(|h| *h == b.host)
        && any_or(f.operation, op::ANY, b.operation)
        && any_or(f.permission, permission::ANY, b.permission)
}

/// Brokers that never applied a change that another broker had applied by the time the run's
/// faults had long healed.
fn unapplied(
    log: &BTreeMap<i64, Vec<SecurityChange>>,
    publications: &[Publication],
    settings: &Settings,
) -> Vec<Finding> {
    // The last change some broker had applied by `settled_s`, and when.
    let settled = publications
        .iter()
        .filter(|p| p.at_s <= settings.settled_s)
        .map(|p| p.position)
        .max()
        .unwrap_or(-1);
    let Some((&change, _)) = log.range(..=settled).next_back() else {
        return Vec::new();
    };
    Points::new(publications)
        .last()
        .filter(|(_, furthest)| *furthest < change)
        .map(|(broker, furthest)| Finding::SecurityUnapplied {
            broker: format!("broker-{}", broker + 1),
            furthest,
            change,
            settled_s: settings.settled_s,
        })
        .collect()
}

mod rules;
#[cfg(test)]
mod tests;

//! DescribeClientQuotas' filter: which entities' quotas to tell, checked with Kafka's rules
//! and words.

use super::entity::{ClientQuotas, Entity, Name, QuotaKey, Refused, Value, CLIENT_ID, IP, USER};
use crate::protocol::error;

/// How a component matches an entity's part of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The part names this.
    Exact(String),
    /// The part is the default.
    Default,
    /// The entity has a part of this type, whatever its name (the default too).
    Any,
}

/// A checked filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    components: Vec<(&'static str, Match)>,
    /// Only entities with no part the filter does not name.
    strict: bool,
}

fn invalid(message: String) -> Refused {
    Refused {
        code: error::INVALID_REQUEST,
        message,
    }
}

/// The filter a request sends: `(entity type, match type, match)` per component.
pub fn filter_of<'a>(
    components: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)>,
    strict: bool,
) -> Result<Filter, Refused> {
    let mut out: Vec<(&'static str, Match)> = Vec::new();
    for (kind, match_type, matched) in components {
        if kind.is_empty() {
            return Err(invalid("Invalid empty entity type.".into()));
        }
        if out.iter().any(|(k, _)| *k == kind) {
            return Err(invalid(format!(
                "Entity type {kind} cannot appear more than once in the filter."
            )));
        }
        let kind = match kind {
            USER => USER,
            CLIENT_ID => CLIENT_ID,
            IP => IP,
            other => {
                return Err(Refused {
                    code: error::UNSUPPORTED_VERSION,
                    message: format!("Unsupported entity type {other}"),
                })
            }
        };
        let m =
            match (match_type, matched) {
                (0, Some(name)) => Match::Exact(name.to_string()),
                (0, None) => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                    ))
                }
                (1, None) => Match::Default,
                (1, Some(_)) => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
                            .into(),
                    ))
                }
                (2, None) => Match::Any,
                (2, Some(_)) => return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
                        .into(),
                )),
                (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
            };
        out.push((kind, m));
    }
    let has = |t| out.iter().any(|(k, _)| *k == t);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component."
                .into(),
        ));
    }
    Ok(Filter {
        components: out,
        strict,
    })
}

impl Filter {
    pub fn matches(&self, e: &Entity) -> bool {
        let parts = e.parts();
        if self.strict && parts.len() != self.components.len() {
            return false;
        }
        self.components.iter().all(|(kind, m)| {
            let part = match *kind {
                USER => &e.user,
                CLIENT_ID => &e.client_id,
                _ => &e.ip,
            };
            match (m, part) {
                (_, None) => false,
                (Match::Any, Some(_)) => true,
                (Match::Default, Some(n)) => *n == Name::Default,
                (Match::Exact(want), Some(n)) => *n == Name::Named(want.clone()),
            }
        })
    }
}

impl ClientQuotas {
    /// The entities the filter matches, with their quotas.
    pub fn describe<'a>(
        &'a self,
        f: &'a Filter,
    ) -> impl Iterator<Item = (&'a Entity, Vec<(QuotaKey, Value)>)> + 'a {
        self.entries
            .iter()
            .filter(|(e, _)| f.matches(e))
            .map(|(e, q)| (e, q.iter().map(|(k, v)| (*k, *v)).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::entity::{entity_of, op_of, Alteration};
    use super::*;

    fn quotas(entities: &[&[(&str, Option<&str>)]]) -> ClientQuotas {
        let mut q = ClientQuotas::default();
        for parts in entities {
            let entity = entity_of(parts.iter().copied()).unwrap();
            let key = if entity.ip.is_some() {
                "connection_creation_rate"
            } else {
                "producer_byte_rate"
            };
            let op = op_of(&entity, key, 100.0, false).unwrap();
            q.apply(&Alteration {
                entity,
                ops: vec![op],
            })
            .unwrap();
        }
        q
    }

    fn found(q: &ClientQuotas, f: &[(&str, i8, Option<&str>)], strict: bool) -> Vec<String> {
        let f = filter_of(f.iter().copied(), strict).unwrap();
        q.describe(&f).map(|(e, _)| e.to_string()).collect()
    }

    #[test]
    fn filters_match_as_kafkas() {
        let q = quotas(&[
            &[("user", Some("alice"))],
            &[("user", None)],
            &[("user", Some("alice")), ("client-id", Some("app"))],
            &[("client-id", None)],
            &[("ip", Some("10.0.0.1"))],
        ]);
        assert_eq!(found(&q, &[], false).len(), 5);
        assert!(found(&q, &[], true).is_empty());
        assert_eq!(
            found(&q, &[("user", 0, Some("alice"))], true),
            ["user=alice"]
        );
        assert_eq!(
            found(&q, &[("user", 0, Some("alice"))], false),
            ["user=alice", "user=alice,client-id=app"]
        );
        assert_eq!(found(&q, &[("user", 1, None)], false), ["user=<default>"]);
        assert_eq!(found(&q, &[("user", 2, None)], true).len(), 2);
        assert_eq!(found(&q, &[("client-id", 2, None)], false).len(), 2);
        assert_eq!(found(&q, &[("ip", 2, None)], false), ["ip=10.0.0.1"]);
    }

    #[test]
    fn bad_filters_are_refused_with_kafkas_codes() {
        let refused =
            |f: &[(&str, i8, Option<&str>)]| filter_of(f.iter().copied(), false).unwrap_err();
        assert_eq!(
            refused(&[("nobody", 2, None)]).code,
            error::UNSUPPORTED_VERSION
        );
        assert_eq!(refused(&[("", 2, None)]).code, error::INVALID_REQUEST);
        assert_eq!(
            refused(&[("user", 2, None), ("user", 1, None)]).code,
            error::INVALID_REQUEST
        );
        assert_eq!(refused(&[("user", 0, None)]).code, error::INVALID_REQUEST);
        assert_eq!(
            refused(&[("user", 1, Some("x"))]).code,
            error::INVALID_REQUEST
        );
        assert_eq!(refused(&[("user", 7, None)]).code, error::INVALID_REQUEST);
        assert_eq!(
            refused(&[("ip", 2, None), ("user", 2, None)]).code,
            error::INVALID_REQUEST
        );
    }
}

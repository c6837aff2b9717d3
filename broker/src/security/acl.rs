//! Kafka's ACL model and its authorizer's decision, as pure functions over the ACLs in the
//! security metadata: resources (topic, group, cluster, transactional id) named literally,
//! by prefix, or by the wildcard `*`; operations with Kafka's implications (READ, WRITE,
//! DELETE or ALTER allow DESCRIBE; ALTER_CONFIGS allows DESCRIBE_CONFIGS; ALL allows every
//! operation); ALLOW and DENY, DENY winning; principals (`User:alice`, or `User:*`) and hosts
//! (an address, or `*`); super users; and what happens to a resource no ACL names
//! (`allow_everyone_if_no_acl_found`).
//!
//! Invariant: a decision depends on the ACLs, the settings and the request alone; DENY always
//! wins over ALLOW, and a super user is always allowed.

use serde::{Deserialize, Serialize};

/// ACLs kept, at most (a change past it is refused).
pub const ACLS_MAX: usize = 100_000;

/// Kafka's `ResourceType` codes.
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's `PatternType` codes.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's `AclOperation` codes.
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// Kafka's `AclPermissionType` codes.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The wildcard of resource names, principals and hosts.
pub const WILDCARD: &str = "*";
/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The operations a resource type has (what authorized-operations fields list).
pub fn operations_of(resource_type: i8) -> &'static [i8] {
    use op::*;
    match resource_type {
        resource::TOPIC => &[
            READ,
            WRITE,
            CREATE,
            DELETE,
            ALTER,
            DESCRIBE,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
        ],
        resource::GROUP => &[READ, DESCRIBE, DELETE],
        resource::CLUSTER => &[
            CREATE,
            ALTER,
            DESCRIBE,
            CLUSTER_ACTION,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
            IDEMPOTENT_WRITE,
            CREATE_TOKENS,
            DESCRIBE_TOKENS,
        ],
        resource::TRANSACTIONAL_ID => &[WRITE, DESCRIBE],
        resource::DELEGATION_TOKEN => &[DESCRIBE],
        resource::USER => &[CREATE_TOKENS, DESCRIBE_TOKENS],
        _ => &[],
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub name: String,
    pub pattern: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// A filter over ACLs (DescribeAcls, DeleteAcls): ANY and `None` match everything; a name
/// with pattern MATCH matches the ACLs that would apply to a resource of that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: i8,
    pub name: Option<String>,
    pub pattern: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclBinding {
    /// Why this binding cannot be created, if it cannot (Kafka's checks).
    pub fn check(&self) -> Result<(), String> {
        if !(resource::TOPIC..=resource::USER).contains(&self.resource_type) {
            return Err(format!("invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern, pattern::LITERAL | pattern::PREFIXED) {
            return Err(format!(
                "the pattern type of an ACL is LITERAL or PREFIXED, not {}",
                self.pattern
            ));
        }
        if self.name.is_empty() {
            return Err("an empty resource name".into());
        }
        if self.resource_type == resource::CLUSTER && self.name != CLUSTER_NAME {
            return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        if self.pattern == pattern::PREFIXED && self.name == WILDCARD {
            return Err("a PREFIXED pattern cannot be the wildcard".into());
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(format!(
                    "principal {:?} is not Type:name (e.g. User:alice)",
                    self.principal
                ))
            }
        }
        if self.host.is_empty() {
            return Err("an empty host (use * for any)".into());
        }
        if !(op::ALL..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Err(format!("invalid operation {}", self.operation));
        }
        if self.operation != op::ALL && !operations_of(self.resource_type).contains(&self.operation)
        {
            return Err(format!(
                "operation {} does not apply to resource type {}",
                self.operation, self.resource_type
            ));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Err(format!("invalid permission type {}", self.permission));
        }
        Ok(())
    }
}

impl AclFilter {
    /// Why this filter is not one Kafka takes, if it is not.
    pub fn check(&self) -> Result<(), String> {
        if self.resource_type < resource::ANY || self.resource_type > resource::USER {
            return Err(format!("invalid resource type {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern) {
            return Err(format!("invalid pattern type {}", self.pattern));
        }
        if self.operation < op::ANY || self.operation > op::DESCRIBE_TOKENS {
            return Err(format!("invalid operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Err(format!("invalid permission type {}", self.permission));
        }
        Ok(())
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        let any = |f: i8, v: i8, any: i8| f == any || f == v;
        any(self.resource_type, b.resource_type, resource::ANY)
            && self.name_matches(b)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && any(self.operation, b.operation, op::ANY)
            && any(self.permission, b.permission, permission::ANY)
    }

    fn name_matches(&self, b: &AclBinding) -> bool {
        match (self.pattern, &self.name) {
            (pattern::MATCH, Some(name)) => {
                (b.pattern == pattern::LITERAL && (b.name == *name || b.name == WILDCARD))
                    || (b.pattern == pattern::PREFIXED && name.starts_with(&b.name))
            }
            (pattern::MATCH, None) | (pattern::ANY, None) => true,
            (pattern::ANY, Some(name)) => b.name == *name,
            (p, name) => b.pattern == p && name.as_ref().is_none_or(|n| *n == b.name),
        }
    }
}

pub use crate::config::AuthorizerSettings;

/// Who asks, from where.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// Whether `who` may do `operation` to the resource of `resource_type` named `name`.
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    settings: &AuthorizerSettings,
    who: Requester<'_>,
    operation: i8,
    resource_type: i8,
    name: &str,
) -> bool {
    if settings.super_users.iter().any(|s| s == who.principal) {
        return true;
    }
    let applying = || {
        acls.clone().into_iter().filter(move |b| {
            b.resource_type == resource_type
                && match b.pattern {
                    pattern::LITERAL => b.name == name || b.name == WILDCARD,
                    pattern::PREFIXED => name.starts_with(b.name.as_str()),
                    _ => false,
                }
        })
    };
    let mut named = false;
    let mut allowed = false;
    for b in applying() {
        named = true;
        let mine = (b.principal == who.principal || is_any_principal(&b.principal, who.principal))
            && (b.host == who.host || b.host == WILDCARD);
        if !mine {
            continue;
        }
        match b.permission {
            permission::DENY if b.operation == operation || b.operation == op::ALL => return false,
            permission::ALLOW if allows(b.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!named && settings.allow_if_no_acl)
}

/// `User:*` matches every principal of type `User`.
fn is_any_principal(acl: &str, principal: &str) -> bool {
    match (acl.split_once(':'), principal.split_once(':')) {
        (Some((kind, WILDCARD)), Some((theirs, _))) => kind == theirs,
        _ => false,
    }
}

/// Whether an ALLOW of `granted` allows `wanted` (Kafka's implications).
fn allows(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == op::ALL
        || (wanted == op::DESCRIBE
            && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pat: i8, who: &str, operation: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern: pat,
            principal: who.into(),
            host: "*".into(),
            operation,
            permission: perm,
        }
    }

    fn settings(allow_if_no_acl: bool) -> AuthorizerSettings {
        AuthorizerSettings {
            super_users: vec!["User:admin".into()],
            allow_if_no_acl,
        }
    }

    fn may(
        acls: &[AclBinding],
        s: &AuthorizerSettings,
        who: &str,
        o: i8,
        rt: i8,
        name: &str,
    ) -> bool {
        let r = Requester {
            principal: who,
            host: "10.0.0.1",
        };
        authorize(acls, s, r, o, rt, name)
    }

    #[test]
    fn literal_prefixed_and_wildcard_acls_apply_with_kafkas_implications() {
        use resource::TOPIC;
        let acls = [
            acl(
                TOPIC,
                "orders",
                pattern::LITERAL,
                "User:alice",
                op::WRITE,
                permission::ALLOW,
            ),
            acl(
                TOPIC,
                "logs-",
                pattern::PREFIXED,
                "User:bob",
                op::READ,
                permission::ALLOW,
            ),
            acl(
                TOPIC,
                "*",
                pattern::LITERAL,
                "User:carol",
                op::ALTER_CONFIGS,
                permission::ALLOW,
            ),
        ];
        let s = settings(false);
        assert!(may(&acls, &s, "User:alice", op::WRITE, TOPIC, "orders"));
        // WRITE implies DESCRIBE, not READ.
        assert!(may(&acls, &s, "User:alice", op::DESCRIBE, TOPIC, "orders"));
        assert!(!may(&acls, &s, "User:alice", op::READ, TOPIC, "orders"));
        assert!(!may(&acls, &s, "User:alice", op::WRITE, TOPIC, "orders2"));
        assert!(may(&acls, &s, "User:bob", op::READ, TOPIC, "logs-app"));
        assert!(!may(&acls, &s, "User:bob", op::READ, TOPIC, "log"));
        assert!(may(
            &acls,
            &s,
            "User:carol",
            op::DESCRIBE_CONFIGS,
            TOPIC,
            "anything"
        ));
        assert!(!may(
            &acls,
            &s,
            "User:carol",
            op::DESCRIBE,
            TOPIC,
            "anything"
        ));
        // A super user, always; nobody else where no ACL applies (unless configured).
        assert!(may(&acls, &s, "User:admin", op::DELETE, TOPIC, "orders"));
        assert!(!may(&acls, &s, "User:dave", op::READ, resource::GROUP, "g"));
        assert!(may(
            &acls,
            &settings(true),
            "User:dave",
            op::READ,
            resource::GROUP,
            "g"
        ));
        // allow_if_no_acl does not open a resource that has ACLs, even for others.
        assert!(!may(
            &acls,
            &settings(true),
            "User:dave",
            op::WRITE,
            TOPIC,
            "orders"
        ));
    }

    #[test]
    fn deny_wins_over_allow_and_user_star_is_every_user() {
        use resource::TOPIC;
        let acls = [
            acl(
                TOPIC,
                "t",
                pattern::PREFIXED,
                "User:*",
                op::ALL,
                permission::ALLOW,
            ),
            acl(
                TOPIC,
                "t-secret",
                pattern::LITERAL,
                "User:eve",
                op::READ,
                permission::DENY,
            ),
        ];
        let s = settings(false);
        assert!(may(&acls, &s, "User:eve", op::READ, TOPIC, "t-public"));
        assert!(!may(&acls, &s, "User:eve", op::READ, TOPIC, "t-secret"));
        assert!(may(&acls, &s, "User:eve", op::WRITE, TOPIC, "t-secret"));
        assert!(may(&acls, &s, "User:frank", op::READ, TOPIC, "t-secret"));
        // A host-specific DENY applies only to that host.
        let mut deny = acl(
            TOPIC,
            "t",
            pattern::LITERAL,
            "User:*",
            op::ALL,
            permission::DENY,
        );
        deny.host = "10.0.0.1".into();
        let acls = [acls[0].clone(), deny.clone()];
        assert!(!may(&acls, &s, "User:frank", op::READ, TOPIC, "t"));
        let elsewhere = Requester {
            principal: "User:frank",
            host: "10.0.0.2",
        };
        assert!(authorize(&acls, &s, elsewhere, op::READ, TOPIC, "t"));
    }

    #[test]
    fn filters_match_as_kafkas_describe_and_delete_do() {
        use resource::TOPIC;
        let a = acl(
            TOPIC,
            "orders",
            pattern::LITERAL,
            "User:alice",
            op::WRITE,
            permission::ALLOW,
        );
        let p = acl(
            TOPIC,
            "ord",
            pattern::PREFIXED,
            "User:bob",
            op::READ,
            permission::ALLOW,
        );
        let w = acl(
            TOPIC,
            "*",
            pattern::LITERAL,
            "User:bob",
            op::READ,
            permission::DENY,
        );
        let all = AclFilter {
            resource_type: resource::ANY,
            name: None,
            pattern: pattern::ANY,
            principal: None,
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        };
        assert!([&a, &p, &w].iter().all(|b| all.matches(b)));
        let matching = AclFilter {
            name: Some("orders".into()),
            pattern: pattern::MATCH,
            ..all.clone()
        };
        assert!([&a, &p, &w].iter().all(|b| matching.matches(b)));
        let literal = AclFilter {
            name: Some("orders".into()),
            pattern: pattern::LITERAL,
            ..all.clone()
        };
        assert!(literal.matches(&a) && !literal.matches(&p) && !literal.matches(&w));
        let bobs_denials = AclFilter {
            principal: Some("User:bob".into()),
            permission: permission::DENY,
            ..all
        };
        assert!(!bobs_denials.matches(&p) && bobs_denials.matches(&w));
    }

    #[test]
    fn bindings_kafka_refuses_are_refused() {
        use resource::*;
        let good = acl(
            TOPIC,
            "t",
            pattern::LITERAL,
            "User:a",
            op::READ,
            permission::ALLOW,
        );
        assert!(good.check().is_ok());
        for bad in [
            AclBinding {
                pattern: pattern::MATCH,
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                operation: op::IDEMPOTENT_WRITE,
                ..good.clone()
            },
            AclBinding {
                resource_type: CLUSTER,
                name: "c".into(),
                operation: op::ALTER,
                ..good.clone()
            },
            AclBinding {
                name: "*".into(),
                pattern: pattern::PREFIXED,
                ..good.clone()
            },
            AclBinding {
                permission: permission::ANY,
                ..good.clone()
            },
            AclBinding {
                host: String::new(),
                ..good.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}

//! The security metadata: every user's SCRAM credentials (salt, iterations and the two keys
//! per mechanism — never a password) and the ACLs, and the changes that make it. A single node keeps it in
//! its data directory, a cluster in its metadata log; either way it changes only by
//! [`SecurityMetadata::apply`], decided from the change and the state alone, so every broker of
//! a cluster that applied the same records holds the same metadata.
//!
//! Bounds: at most [`USERS_MAX`] users, names of at most [`NAME_BYTES_MAX`] bytes, at most
//! [`ACLS_MAX`] ACLs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::acl::{AclBinding, AclFilter, ACLS_MAX};
use super::scram::{Credential, Mechanism, ITERATIONS_MAX, ITERATIONS_MIN};
use crate::config::{ScramSecret, ScramUser};

/// Users with credentials, at most.
pub const USERS_MAX: usize = 10_000;
/// A user name's length, at most.
pub const NAME_BYTES_MAX: usize = 1024;

/// Users and what they may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityMetadata {
    /// Each user's credentials, one per mechanism.
    #[serde(default)]
    pub users: BTreeMap<String, BTreeMap<Mechanism, Credential>>,
    /// The ACLs (CreateAcls, DeleteAcls).
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
}

/// A change to the security metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SecurityChange {
    /// Set `user`'s credential for its mechanism (AlterUserScramCredentials' upsertion).
    SetCredential {
        user: String,
        credential: Credential,
    },
    /// Remove `user`'s credential of `mechanism` (AlterUserScramCredentials' deletion).
    DeleteCredential { user: String, mechanism: Mechanism },
    /// A credential a broker was started with (`add_scram`): set only if `user` has none for
    /// this mechanism, so a password changed since through the admin API stays changed.
    Bootstrap {
        user: String,
        credential: Credential,
    },
    /// Add an ACL (one of CreateAcls' creations); one already there is kept once.
    CreateAcl { binding: AclBinding },
    /// Remove every ACL that matches each filter (DeleteAcls).
    DeleteAcls { filters: Vec<AclFilter> },
}

/// Each change's outcome, in order.
pub type Outcomes = Vec<Result<Applied, SecurityError>>;

/// What an applied change did, beyond succeeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The ACLs each filter removed, in the filters' order.
    Deleted(Vec<Vec<AclBinding>>),
}

/// Why a change was refused (Kafka's error codes for KIP-554 say the same).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("user {0:?} has no {1} credential")]
    NoSuchCredential(String, &'static str),
    #[error("{0}")]
    Unacceptable(String),
    #[error("{0}")]
    InvalidAcl(String),
}

impl SecurityChange {
    /// The user the change is about, if it is about one.
    pub fn user(&self) -> Option<&str> {
        match self {
            SecurityChange::SetCredential { user, .. }
            | SecurityChange::DeleteCredential { user, .. }
            | SecurityChange::Bootstrap { user, .. } => Some(user),
            SecurityChange::CreateAcl { .. } | SecurityChange::DeleteAcls { .. } => None,
        }
    }
}

impl SecurityMetadata {
    /// `user`'s credential of `mechanism`.
    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<&Credential> {
        self.users.get(user)?.get(&mechanism)
    }

    /// Apply one change; a refused change leaves the metadata as it was.
    pub fn apply(&mut self, change: &SecurityChange) -> Result<Applied, SecurityError> {
        match change {
            SecurityChange::CreateAcl { binding } => {
                binding.check().map_err(SecurityError::InvalidAcl)?;
                if !self.acls.contains(binding) && self.acls.len() >= ACLS_MAX {
                    return Err(SecurityError::InvalidAcl(format!(
                        "{ACLS_MAX} ACLs exist already"
                    )));
                }
                self.acls.insert(binding.clone());
                Ok(Applied::Done)
            }
            SecurityChange::DeleteAcls { filters } => {
                let mut deleted = Vec::with_capacity(filters.len());
                for f in filters {
                    let gone: Vec<AclBinding> =
                        self.acls.iter().filter(|b| f.matches(b)).cloned().collect();
                    for b in &gone {
                        self.acls.remove(b);
                    }
                    deleted.push(gone);
                }
                Ok(Applied::Deleted(deleted))
            }
            SecurityChange::SetCredential { user, credential }
            | SecurityChange::Bootstrap { user, credential } => {
                check_user(user)?;
                check_credential(credential)?;
                if !self.users.contains_key(user) && self.users.len() >= USERS_MAX {
                    return Err(SecurityError::Unacceptable(format!(
                        "{USERS_MAX} users already have credentials"
                    )));
                }
                let theirs = self.users.entry(user.clone()).or_default();
                let bootstrap = matches!(change, SecurityChange::Bootstrap { .. });
                if !(bootstrap && theirs.contains_key(&credential.mechanism)) {
                    theirs.insert(credential.mechanism, credential.clone());
                }
                Ok(Applied::Done)
            }
            SecurityChange::DeleteCredential { user, mechanism } => {
                let Some(theirs) = self.users.get_mut(user) else {
                    return Err(SecurityError::NoSuchCredential(
                        user.clone(),
                        mechanism.name(),
                    ));
                };
                if theirs.remove(mechanism).is_none() {
                    return Err(SecurityError::NoSuchCredential(
                        user.clone(),
                        mechanism.name(),
                    ));
                }
                if theirs.is_empty() {
                    self.users.remove(user);
                }
                Ok(Applied::Done)
            }
        }
    }

    /// The metadata as one line of JSON (a single node's file).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain data encodes")
    }

    pub fn decode(text: &str) -> Result<SecurityMetadata, String> {
        serde_json::from_str(text).map_err(|e| format!("security metadata: {e}"))
    }
}

/// The change that makes an `add_scram` user unless it exists; `salt` gives the salt for a
/// password (16 random bytes from the caller's generator).
pub fn bootstrap_change(
    user: &ScramUser,
    salt: impl FnOnce() -> Vec<u8>,
) -> Result<SecurityChange, String> {
    let mechanism = match user.mechanism {
        crate::config::SaslMechanism::ScramSha512 => Mechanism::Sha512,
        _ => Mechanism::Sha256,
    };
    let credential = match &user.secret {
        ScramSecret::Password(p) => {
            Credential::derive(mechanism, p.as_bytes(), salt(), user.iterations)
        }
        ScramSecret::Salted {
            salt,
            salted_password,
        } => Credential::from_salted_password(
            mechanism,
            salt.clone(),
            salted_password,
            user.iterations,
        ),
    }
    .map_err(|e| format!("add_scram: user {}: {e}", user.name))?;
    Ok(SecurityChange::Bootstrap {
        user: user.name.clone(),
        credential,
    })
}

fn check_user(user: &str) -> Result<(), SecurityError> {
    if user.is_empty() {
        return Err(SecurityError::Unacceptable("an empty user name".into()));
    }
    if user.len() > NAME_BYTES_MAX {
        return Err(SecurityError::Unacceptable(format!(
            "a user name of {} bytes (at most {NAME_BYTES_MAX})",
            user.len()
        )));
    }
    Ok(())
}

fn check_credential(c: &Credential) -> Result<(), SecurityError> {
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&c.iterations) {
        return Err(SecurityError::Unacceptable(format!(
            "{} iterations: from {ITERATIONS_MIN} to {ITERATIONS_MAX}",
            c.iterations
        )));
    }
    if c.salt.is_empty() || c.stored_key.is_empty() || c.server_key.is_empty() {
        return Err(SecurityError::Unacceptable("an empty salt or key".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(m: Mechanism, password: &str) -> Credential {
        Credential::derive(m, password.as_bytes(), vec![7; 16], 4096).unwrap()
    }

    #[test]
    fn a_bootstrap_credential_never_replaces_one_already_set() {
        let mut md = SecurityMetadata::default();
        let set = |user: &str, c| SecurityChange::SetCredential {
            user: user.into(),
            credential: c,
        };
        md.apply(&SecurityChange::Bootstrap {
            user: "admin".into(),
            credential: cred(Mechanism::Sha512, "first"),
        })
        .unwrap();
        md.apply(&set("admin", cred(Mechanism::Sha512, "changed")))
            .unwrap();
        md.apply(&SecurityChange::Bootstrap {
            user: "admin".into(),
            credential: cred(Mechanism::Sha512, "first"),
        })
        .unwrap();
        let c = md.credential("admin", Mechanism::Sha512).unwrap();
        assert!(c.verify_password(b"changed"));
        assert!(!c.verify_password(b"first"));
        // Another mechanism is another credential.
        assert!(md.credential("admin", Mechanism::Sha256).is_none());
    }

    #[test]
    fn deleting_what_does_not_exist_is_refused_and_the_last_credential_removes_the_user() {
        let mut md = SecurityMetadata::default();
        let del = |m| SecurityChange::DeleteCredential {
            user: "bob".into(),
            mechanism: m,
        };
        assert!(matches!(
            md.apply(&del(Mechanism::Sha256)),
            Err(SecurityError::NoSuchCredential(..))
        ));
        md.apply(&SecurityChange::SetCredential {
            user: "bob".into(),
            credential: cred(Mechanism::Sha256, "pw"),
        })
        .unwrap();
        assert!(md.apply(&del(Mechanism::Sha512)).is_err());
        md.apply(&del(Mechanism::Sha256)).unwrap();
        assert!(md.users.is_empty());
    }

    #[test]
    fn credentials_out_of_bounds_are_refused_whole() {
        let mut md = SecurityMetadata::default();
        let mut c = cred(Mechanism::Sha256, "pw");
        c.iterations = 100;
        let change = SecurityChange::SetCredential {
            user: "x".into(),
            credential: c,
        };
        assert!(matches!(
            md.apply(&change),
            Err(SecurityError::Unacceptable(_))
        ));
        let change = SecurityChange::SetCredential {
            user: String::new(),
            credential: cred(Mechanism::Sha256, "pw"),
        };
        assert!(md.apply(&change).is_err());
        assert_eq!(md, SecurityMetadata::default());
    }

    #[test]
    fn the_metadata_survives_its_encoding() {
        let mut md = SecurityMetadata::default();
        md.apply(&SecurityChange::SetCredential {
            user: "a,b=c".into(),
            credential: cred(Mechanism::Sha512, "pw"),
        })
        .unwrap();
        let text = md.encode();
        assert!(!text.contains('\n'));
        assert!(!text.contains("pw"));
        assert_eq!(SecurityMetadata::decode(&text).unwrap(), md);
        assert!(SecurityMetadata::decode("{\"users\": 3}").is_err());
    }

    #[test]
    fn a_bootstrap_user_from_a_salted_password_is_the_user_of_that_password() {
        use crate::config::SaslMechanism;
        let salted = Mechanism::Sha512.salted_password(b"pw", b"0123456789abcdef", 8192);
        let from = |secret| ScramUser {
            mechanism: SaslMechanism::ScramSha512,
            name: "bob".into(),
            iterations: 8192,
            secret,
        };
        let salted = from(ScramSecret::Salted {
            salt: b"0123456789abcdef".to_vec(),
            salted_password: salted,
        });
        let password = from(ScramSecret::Password("pw".into()));
        let a = bootstrap_change(&salted, || unreachable!()).unwrap();
        let b = bootstrap_change(&password, || b"0123456789abcdef".to_vec()).unwrap();
        assert_eq!(a, b);
        let SecurityChange::Bootstrap { credential, .. } = a else {
            panic!("{a:?}")
        };
        assert!(credential.verify_password(b"pw"));
    }
}

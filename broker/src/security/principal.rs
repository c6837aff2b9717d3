//! A Kafka principal: the type (always `User` here) and a name, written `User:name` as Kafka's
//! ACLs and logs write it. A client authenticated by SASL is its user name; one authenticated
//! by a TLS client certificate is the certificate's subject (Kafka's default principal
//! builder); one not authenticated at all is `User:ANONYMOUS`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The one principal type Kafka's default builder makes.
pub const USER_TYPE: &str = "User";

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    /// A connection that did not authenticate (PLAINTEXT, or SSL without a client
    /// certificate).
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `Type:name`, as ACLs and `super_users` write it; the name may contain `:`.
    pub fn parse(text: &str) -> Result<Principal, String> {
        match text.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(Principal {
                kind: kind.to_string(),
                name: name.to_string(),
            }),
            _ => Err(format!(
                "principal {text:?}: expected Type:name, e.g. User:alice"
            )),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_written_and_read_as_kafka_writes_them() {
        assert_eq!(Principal::user("alice").to_string(), "User:alice");
        assert_eq!(
            Principal::parse("User:CN=a,O=b:c").unwrap(),
            Principal::user("CN=a,O=b:c")
        );
        assert!(Principal::parse("alice").is_err());
        assert!(Principal::parse("User:").is_err());
        assert!(Principal::parse(":x").is_err());
    }
}

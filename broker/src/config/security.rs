//! The security settings: the SASL listeners' (the mechanisms offered, the bounds of an
//! authentication, re-authentication, KIP-368), the SCRAM users a broker is started with,
//! and the authorizer's.

use std::time::Duration;

use super::Config;

/// A SASL mechanism a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::Plain,
    ];

    /// Its SASL name, as clients ask for it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How the authorizer decides beyond the ACLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// Principals allowed everything (`super_users`).
    pub super_users: Vec<String>,
    /// A resource that no ACL names is open to everyone.
    pub allow_if_no_acl: bool,
}

/// What the SASL listeners do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// In the order configured (SaslHandshake lists them so).
    pub mechanisms: Vec<SaslMechanism>,
    pub authentication_timeout: Duration,
    pub failed_delay: Duration,
    /// `None`: an authentication lasts for the connection's life.
    pub max_reauth: Option<Duration>,
}

impl Config {
    /// The SASL listeners' settings (checked whether or not a listener uses SASL).
    pub fn sasl_settings(&self) -> Result<SaslSettings, String> {
        let mut mechanisms = Vec::new();
        for name in self
            .sasl_enabled_mechanisms
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let m = SaslMechanism::from_name(name).ok_or_else(|| {
                format!("sasl_enabled_mechanisms: {name:?} is not SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
            })?;
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        let sasl_listener = self
            .listener_specs()
            .map(|specs| specs.iter().any(|s| s.protocol.uses_sasl()))
            .unwrap_or(false);
        if mechanisms.is_empty() && sasl_listener {
            return Err("sasl_enabled_mechanisms is empty but a listener uses SASL".into());
        }
        if !(100..=600_000).contains(&self.sasl_authentication_timeout_ms) {
            return Err("sasl_authentication_timeout_ms must be from 100 to 600000".into());
        }
        if self.connection_failed_authentication_delay_ms > 60_000
            || self.connection_failed_authentication_delay_ms >= self.sasl_authentication_timeout_ms
        {
            return Err("connection_failed_authentication_delay_ms must be at most 60000 and below sasl_authentication_timeout_ms".into());
        }
        if self.connections_max_reauth_ms != 0 && self.connections_max_reauth_ms < 1000 {
            return Err("connections_max_reauth_ms must be 0 (never) or at least 1000".into());
        }
        Ok(SaslSettings {
            mechanisms,
            authentication_timeout: Duration::from_millis(self.sasl_authentication_timeout_ms),
            failed_delay: Duration::from_millis(self.connection_failed_authentication_delay_ms),
            max_reauth: (self.connections_max_reauth_ms > 0)
                .then(|| Duration::from_millis(self.connections_max_reauth_ms)),
        })
    }

    /// The authorizer's settings; `None` when it is off.
    pub fn authorizer_settings(&self) -> Result<Option<AuthorizerSettings>, String> {
        let mut super_users = Vec::new();
        for p in self
            .super_users
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match p.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    super_users.push(p.to_string())
                }
                _ => {
                    return Err(format!(
                    "super_users: {p:?} is not Type:name (e.g. User:admin; several separated by ;)"
                ))
                }
            }
        }
        if !self.authorizer_enabled {
            return Ok(None);
        }
        Ok(Some(AuthorizerSettings {
            super_users,
            allow_if_no_acl: self.allow_everyone_if_no_acl_found,
        }))
    }

    /// The users of `add_scram`.
    pub fn add_scram_users(&self) -> Result<Vec<ScramUser>, String> {
        split_entries(&self.add_scram)
            .iter()
            .map(|e| parse_scram_user(e))
            .collect()
    }
}

/// Kafka's bounds on a SCRAM credential's iterations.
const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=16384;
/// The iterations of a user made from a password (Kafka's default).
const DEFAULT_ITERATIONS: u32 = 4096;

/// A SCRAM user a broker is started with (Kafka's `kafka-storage format --add-scram`).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub mechanism: SaslMechanism,
    pub name: String,
    pub iterations: u32,
    pub secret: ScramSecret,
}

/// What the user's credential is made from.
#[derive(Clone, PartialEq, Eq)]
pub enum ScramSecret {
    Password(String),
    Salted {
        salt: Vec<u8>,
        salted_password: Vec<u8>,
    },
}

impl std::fmt::Debug for ScramSecret {
    /// Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramSecret::Password(_) => f.write_str("Password(***)"),
            ScramSecret::Salted { .. } => f.write_str("Salted(***)"),
        }
    }
}

impl std::fmt::Debug for ScramUser {
    /// Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.mechanism.name(), self.name)
    }
}

/// `SCRAM-SHA-256=[name=alice,password=alice-secret]`, or with the password already salted,
/// `SCRAM-SHA-512=[name=alice,iterations=8192,salt="<base64>",saltedpassword="<base64>"]`.
fn parse_scram_user(text: &str) -> Result<ScramUser, String> {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;
    let bad = |why: &str| format!("add_scram {:?}: {why}", redact(text));
    let (mechanism, rest) = text
        .trim()
        .split_once('=')
        .ok_or_else(|| bad("expected MECHANISM=[name=...,password=...]"))?;
    let mechanism = match SaslMechanism::from_name(mechanism.trim()) {
        Some(m) if m != SaslMechanism::Plain => m,
        _ => return Err(bad("the mechanism is SCRAM-SHA-256 or SCRAM-SHA-512")),
    };
    let body = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| bad("the attributes go in [...]"))?;
    let mut attrs = std::collections::BTreeMap::new();
    for attr in body.split(',') {
        let (k, v) = attr
            .split_once('=')
            .ok_or_else(|| bad("each attribute is key=value"))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        if attrs.insert(k.trim(), v).is_some() {
            return Err(bad(&format!("{} given twice", k.trim())));
        }
    }
    let name = attrs.remove("name").unwrap_or_default();
    if name.is_empty() || name.len() > 1024 {
        return Err(bad("name is from 1 to 1024 bytes"));
    }
    let iterations = match attrs.remove("iterations") {
        Some(i) => i
            .parse::<u32>()
            .map_err(|_| bad("iterations is a number"))?,
        None => DEFAULT_ITERATIONS,
    };
    if !ITERATIONS.contains(&iterations) {
        return Err(bad("iterations is from 4096 to 16384"));
    }
    let secret = match (
        attrs.remove("password"),
        attrs.remove("salt"),
        attrs.remove("saltedpassword"),
    ) {
        (Some(""), None, None) => return Err(bad("an empty password")),
        (Some(p), None, None) => ScramSecret::Password(p.to_string()),
        (None, Some(salt), Some(salted)) => ScramSecret::Salted {
            salt: BASE64.decode(salt).map_err(|_| bad("salt is not base64"))?,
            salted_password: BASE64
                .decode(salted)
                .map_err(|_| bad("saltedpassword is not base64"))?,
        },
        _ => return Err(bad("give password, or salt and saltedpassword")),
    };
    if let Some(k) = attrs.keys().next() {
        return Err(bad(&format!("unknown attribute {k}")));
    }
    Ok(ScramUser {
        mechanism,
        name: name.to_string(),
        iterations,
        secret,
    })
}

/// `text` with what follows `password=` hidden, for error messages.
fn redact(text: &str) -> String {
    match text.find("password=") {
        Some(at) => {
            let tail = &text[at + "password=".len()..];
            let end = tail.find([',', ']']).unwrap_or(tail.len());
            format!("{}password=***{}", &text[..at], &tail[end..])
        }
        None => text.to_string(),
    }
}

/// `A=[..] B=[..]` into its entries: each ends at its `]`; spaces, commas and semicolons
/// between entries are skipped.
fn split_entries(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start_matches([' ', ',', ';', '\n', '\t']);
    while !rest.is_empty() {
        let end = rest.find(']').map_or(rest.len(), |i| i + 1);
        out.push(rest[..end].trim().to_string());
        rest = rest[end..].trim_start_matches([' ', ',', ';', '\n', '\t']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_entries_are_split_at_their_brackets() {
        assert_eq!(
            split_entries("SCRAM-SHA-256=[name=a,password=b], SCRAM-SHA-512=[name=c,password=d]"),
            vec![
                "SCRAM-SHA-256=[name=a,password=b]",
                "SCRAM-SHA-512=[name=c,password=d]"
            ]
        );
        assert!(split_entries("  ").is_empty());
        assert_eq!(split_entries("x=[name=a"), vec!["x=[name=a"]);
    }

    #[test]
    fn add_scram_users_are_read_in_kafkas_form() {
        let c = Config {
            add_scram: "SCRAM-SHA-256=[name=alice,password=alice-secret] SCRAM-SHA-512=[name=bob,iterations=8192,salt=\"MDEy\",saltedpassword=\"AAEC\"]".into(),
            ..Config::default()
        };
        let users = c.add_scram_users().unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].name, "alice");
        assert_eq!(users[0].iterations, 4096);
        assert_eq!(
            users[0].secret,
            ScramSecret::Password("alice-secret".into())
        );
        assert_eq!(users[1].mechanism, SaslMechanism::ScramSha512);
        assert_eq!(
            users[1].secret,
            ScramSecret::Salted {
                salt: b"012".to_vec(),
                salted_password: vec![0, 1, 2]
            }
        );
        assert_eq!(format!("{:?}", users[0]), "SCRAM-SHA-256:alice");
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "PLAIN=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=b,colour=red]",
            "SCRAM-SHA-256=[name=a,salt=!!,saltedpassword=AAEC]",
        ] {
            let c = Config {
                add_scram: bad.into(),
                ..Config::default()
            };
            assert!(c.add_scram_users().is_err(), "{bad}");
        }
        let err = parse_scram_user("SCRAM-SHA-256=[name=a,password=hunter2,x=y]").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn sasl_settings_are_checked() {
        let c = Config::default();
        let s = c.sasl_settings().unwrap();
        assert_eq!(
            s.mechanisms,
            vec![SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]
        );
        assert_eq!(s.max_reauth, None);
        let bad = [
            Config {
                sasl_enabled_mechanisms: "GSSAPI".into(),
                ..Config::default()
            },
            Config {
                sasl_enabled_mechanisms: "".into(),
                listeners: "SASL_PLAINTEXT://127.0.0.1:0".into(),
                ..Config::default()
            },
            Config {
                connections_max_reauth_ms: 10,
                ..Config::default()
            },
            Config {
                connection_failed_authentication_delay_ms: 40_000,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.sasl_settings().is_err(), "{c:?}");
        }
    }
}

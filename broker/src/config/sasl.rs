//! The SASL settings of the SASL listeners: the mechanisms offered, the bounds of an
//! authentication, re-authentication (KIP-368), and the SCRAM users a broker is started with.

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

    /// The entries of `add_scram`, each `MECHANISM=[...]` (read by the security layer).
    pub fn add_scram_entries(&self) -> Vec<String> {
        split_entries(&self.add_scram)
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

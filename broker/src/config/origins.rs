//! The effective configuration with each value's source (`broker config`): what an operator
//! asks when a broker does not do what its file says — the value may come from an environment
//! variable or a flag that wins over the file, or from the built-in default.

use std::fmt::Write as _;

use super::{Config, Sources};

/// Where a setting's value came from (each later one wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(String),
    /// The variable's name, e.g. `STILLWATER_DATA_DIR`.
    Env(String),
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {path}"),
            Origin::Env(var) => write!(f, "environment {var}"),
            Origin::Flag => f.write_str("flag"),
        }
    }
}

/// Settings whose value is a secret: shown only as set or not.
const SECRET: &[&str] = &["add_scram"];

impl Sources {
    /// The source of each setting a source names (those it does not name are defaults). The
    /// file is read again: this is for an operator's question, not for the broker's start.
    pub fn origins(&self) -> std::collections::BTreeMap<String, Origin> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(path) = &self.file {
            let table = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .unwrap_or_default();
            for key in table.keys() {
                out.insert(key.clone(), Origin::File(path.display().to_string()));
            }
        }
        for (key, _) in &self.env {
            let var = format!("STILLWATER_{}", key.to_ascii_uppercase());
            out.insert(key.replace('-', "_"), Origin::Env(var));
        }
        for (key, _) in &self.flags {
            out.insert(key.replace('-', "_"), Origin::Flag);
        }
        out
    }
}

impl Config {
    /// The configuration as TOML, every setting on its line with its source as a comment;
    /// secrets are replaced by `"<set>"`, unset options are commented out. Read back as a
    /// file, it gives the same configuration (secrets aside).
    pub fn effective(&self, sources: &Sources) -> String {
        let origins = sources.origins();
        let serde_json::Value::Object(values) =
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        else {
            return String::new();
        };
        let mut out = String::new();
        for (key, value) in values {
            let origin = origins.get(&key).cloned().unwrap_or(Origin::Default);
            let shown = match &value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) if SECRET.contains(&key.as_str()) && !s.is_empty() => {
                    Some("\"<set>\"".to_string())
                }
                v => toml_of(v),
            };
            let _ = match shown {
                Some(v) => writeln!(out, "{key} = {v}  # {origin}"),
                None => writeln!(out, "# {key} is not set  # {origin}"),
            };
        }
        out
    }
}

/// A JSON scalar as a TOML value (the configuration holds scalars only).
fn toml_of(v: &serde_json::Value) -> Option<String> {
    let t: toml::Value = serde_json::from_value(v.clone()).ok()?;
    Some(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn each_value_names_the_source_that_won_and_reads_back_the_same() {
        let dir = std::env::temp_dir().join(format!("origins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broker.toml");
        std::fs::write(
            &file,
            "segment_bytes = 4096\nretention_ms = 1000\nadd_scram = \"SCRAM-SHA-256=[name=a,password=hunter2]\"\n",
        )
        .unwrap();
        let sources = Sources {
            file: Some(file.clone()),
            env: vec![("retention_ms".into(), "2000".into())],
            flags: vec![("data_dir".into(), "/tmp/d".into())],
        };
        let config = Config::load(&sources).unwrap();
        let text = config.effective(&sources);
        let line = |k: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{k} = ")))
                .unwrap_or_else(|| panic!("{k} in {text}"))
                .to_string()
        };
        assert!(line("segment_bytes").ends_with(&format!("# file {}", file.display())));
        assert!(line("retention_ms")
            .starts_with("retention_ms = 2000  # environment STILLWATER_RETENTION_MS"));
        assert!(line("data_dir").starts_with("data_dir = \"/tmp/d\"  # flag"));
        assert!(line("node_id").ends_with("# default"));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(line("add_scram").contains("<set>"));
        // Read back (secret aside), the same configuration.
        let back: toml::Table = text
            .lines()
            .filter(|l| !l.starts_with("add_scram"))
            .collect::<Vec<_>>()
            .join("\n")
            .parse()
            .unwrap();
        let again = Config::deserialize(toml::Value::Table(back)).unwrap();
        let mut expected = config.clone();
        expected.add_scram = String::new();
        assert_eq!(again, expected);
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! Randomised configurations (swarm testing in its original sense, Groce et al. 2012): a
//! scenario's `[random_config]` declares, per setting of the broker, the workload or the disk, the
//! range or the choices a seed draws from. The draw is applied to the scenario's own TOML before
//! it is read, so any setting can be drawn, and the result is validated like a hand-written
//! scenario (a draw that breaks a rule is drawn again).
//!
//! ```toml
//! [random_config.broker]
//! append_queue_capacity = { min = 2, max = 8192, log = true }   # log-uniform integers
//! preallocate_bytes = { choices = [0, 65536, 4194304] }
//! [random_config.workload]
//! acks = { choices = [[1, -1], [-1], [1, -1, 0]] }
//! [random_config.disk]
//! latency_ms = { choices = [[0, 0], [1, 4], [1, 10]] }
//! ```

use std::collections::BTreeMap;

use io_backend::EnvRng;
use serde::Deserialize;

/// The sections of a scenario a draw may set.
pub const SECTIONS: [&str; 3] = ["broker", "workload", "disk"];
/// Draws tried before a seed's configuration is called impossible.
const ATTEMPTS: usize = 32;

/// Per section, per setting, what to draw from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomConfig {
    #[serde(default)]
    pub broker: BTreeMap<String, Draw>,
    #[serde(default)]
    pub workload: BTreeMap<String, Draw>,
    #[serde(default)]
    pub disk: BTreeMap<String, Draw>,
}

/// Integers from `min` to `max` (both included; with `log`, uniform in the logarithm, so small
/// values are drawn as often as large ones), or one of `choices`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Draw {
    Range {
        min: i64,
        max: i64,
        #[serde(default)]
        log: bool,
    },
    Choices {
        choices: Vec<toml::Value>,
    },
}

impl Draw {
    fn check(&self) -> Result<(), String> {
        match self {
            Draw::Range { min, max, log } if min > max || (*log && *min < 1) => Err(format!(
                "range {min}..={max}{} is empty",
                if *log { " (log: min at least 1)" } else { "" }
            )),
            Draw::Choices { choices } if choices.is_empty() => Err("no choices".into()),
            _ => Ok(()),
        }
    }

    fn pick(&self, rng: &EnvRng) -> toml::Value {
        match self {
            Draw::Range {
                min,
                max,
                log: false,
            } => {
                let span = (max - min) as u64;
                toml::Value::Integer(min + rng.range_u64(0, span + 1) as i64)
            }
            Draw::Range {
                min,
                max,
                log: true,
            } => {
                let (lo, hi) = ((*min as f64).ln(), (*max as f64 + 1.0).ln());
                let u = rng.range_u64(0, 1 << 30) as f64 / (1u64 << 30) as f64;
                let v = (lo + u * (hi - lo)).exp().floor() as i64;
                toml::Value::Integer(v.clamp(*min, *max))
            }
            Draw::Choices { choices } => {
                choices[rng.range_u64(0, choices.len() as u64) as usize].clone()
            }
        }
    }
}

impl RandomConfig {
    pub fn check(&self) -> Result<(), String> {
        for (section, draws) in self.sections() {
            for (key, d) in draws {
                d.check()
                    .map_err(|e| format!("random_config.{section}.{key}: {e}"))?;
            }
        }
        Ok(())
    }

    fn sections(&self) -> [(&'static str, &BTreeMap<String, Draw>); 3] {
        [
            ("broker", &self.broker),
            ("workload", &self.workload),
            ("disk", &self.disk),
        ]
    }

    /// Apply one draw to a scenario's TOML: the settings drawn, as `section.key = value`.
    pub fn apply(&self, table: &mut toml::Table, rng: &EnvRng) -> Vec<(String, String)> {
        let mut drawn = Vec::new();
        for (section, draws) in self.sections() {
            for (key, d) in draws {
                let value = d.pick(rng);
                drawn.push((format!("{section}.{key}"), value.to_string()));
                let entry = table
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                if let toml::Value::Table(t) = entry {
                    t.insert(key.clone(), value);
                }
            }
        }
        drawn
    }
}

/// Draw a configuration for `seed` into `raw` until `accept` takes it: the table and the draws.
pub fn draw_until<T>(
    config: &RandomConfig,
    raw: &toml::Table,
    seed: u64,
    mut accept: impl FnMut(toml::Table) -> Result<T, String>,
) -> Result<(T, Vec<(String, String)>), String> {
    let rng = EnvRng::seeded(seed ^ 0xc0f1_6d12);
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let mut table = raw.clone();
        table.remove("random_config");
        let drawn = config.apply(&mut table, &rng);
        match accept(table) {
            Ok(t) => return Ok((t, drawn)),
            Err(e) => last = e,
        }
    }
    Err(format!(
        "no valid configuration in {ATTEMPTS} draws for seed {seed}; the last: {last}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_their_ranges_and_log_ranges_reach_the_small_end() {
        let rng = EnvRng::seeded(7);
        let d = Draw::Range {
            min: 2,
            max: 8192,
            log: true,
        };
        let v: Vec<i64> = (0..2000)
            .map(|_| d.pick(&rng).as_integer().unwrap())
            .collect();
        assert!(v.iter().all(|x| (2..=8192).contains(x)));
        assert!(
            v.iter().filter(|&&x| x < 16).count() > 300,
            "log-uniform: small values often"
        );
        assert!(v.contains(&2) && v.iter().any(|&x| x > 4096));
        let c = Draw::Choices {
            choices: vec![toml::Value::Boolean(true), toml::Value::Boolean(false)],
        };
        let picks: Vec<_> = (0..100).map(|_| c.pick(&rng)).collect();
        assert!(picks.contains(&toml::Value::Boolean(true)));
        assert!(picks.contains(&toml::Value::Boolean(false)));
        assert!(Draw::Range {
            min: 0,
            max: 5,
            log: true
        }
        .check()
        .is_err());
    }

    #[test]
    fn a_draw_is_applied_to_the_table_redrawn_when_refused_and_the_same_for_a_seed() {
        let config: RandomConfig = toml::from_str(
            r#"
            [broker]
            segment_bytes = { min = 4096, max = 65536 }
            [workload]
            producers = { choices = [1, 2, 3, 4] }
            "#,
        )
        .unwrap();
        let raw: toml::Table = toml::from_str("name = \"x\"\n[workload]\nacks = 1\n").unwrap();
        let take = |t: toml::Table| -> Result<(i64, i64), String> {
            let p = t["workload"]["producers"].as_integer().unwrap();
            let s = t["broker"]["segment_bytes"].as_integer().unwrap();
            assert_eq!(t["workload"]["acks"].as_integer(), Some(1), "kept");
            if p == 1 {
                Err("one producer refused".into())
            } else {
                Ok((p, s))
            }
        };
        let (a, drawn) = draw_until(&config, &raw, 5, take).unwrap();
        assert!(a.0 > 1 && (4096..=65536).contains(&a.1));
        assert_eq!(drawn.len(), 2);
        assert_eq!(draw_until(&config, &raw, 5, take).unwrap().0, a);
        let never = |_: toml::Table| -> Result<(), String> { Err("no".into()) };
        assert!(draw_until(&config, &raw, 5, never).is_err());
    }
}

//! Open connections by the client software they said they are (ApiVersions v3+'s
//! `client_software_name` and `_version`; Kafka's `connections` metric by
//! `clientSoftwareName`/`clientSoftwareVersion`): `stillwater_client_software_connections`.
//! At most [`PAIRS_MAX`] name–version pairs have a series of their own; the connections of any
//! other are counted under `other`.

use std::collections::HashSet;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Name–version pairs with a series of their own, at most.
pub const PAIRS_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SoftwareLabel {
    software_name: String,
    software_version: String,
}

/// The family and the pairs it has series for.
pub struct ClientSoftware {
    family: Family<SoftwareLabel, Gauge>,
    known: crate::sync::Mutex<HashSet<(String, String)>>,
}

impl ClientSoftware {
    pub fn register(registry: &mut Registry) -> ClientSoftware {
        let family = Family::<SoftwareLabel, Gauge>::default();
        registry.register(
            "client_software_connections",
            "Open client connections by the software the client said it is (ApiVersions v3+)",
            family.clone(),
        );
        ClientSoftware {
            family,
            known: crate::sync::Mutex::new("metrics.client_software", HashSet::new()),
        }
    }

    /// A connection of `name` `version` opened (`delta` 1) or closed (-1).
    fn count(&self, name: &str, version: &str, delta: i64) {
        let pair = (name.to_string(), version.to_string());
        let label = {
            let mut known = self.known.lock().expect("not poisoned");
            if known.contains(&pair) || known.len() < PAIRS_MAX {
                known.insert(pair.clone());
                SoftwareLabel {
                    software_name: pair.0,
                    software_version: pair.1,
                }
            } else {
                SoftwareLabel {
                    software_name: "other".into(),
                    software_version: "other".into(),
                }
            }
        };
        self.family.get_or_create(&label).inc_by(delta);
    }
}

/// A connection's place in the count: moved when the client says another software, given
/// back when the connection ends.
pub struct Counted<'a> {
    software: &'a ClientSoftware,
    now: Option<(String, String)>,
}

impl<'a> Counted<'a> {
    pub fn new(software: &'a ClientSoftware) -> Self {
        Counted {
            software,
            now: None,
        }
    }

    /// The client said it is `name` `version`.
    pub fn set(&mut self, name: &str, version: &str) {
        if let Some((n, v)) = self.now.take() {
            self.software.count(&n, &v, -1);
        }
        self.software.count(name, version, 1);
        self.now = Some((name.to_string(), version.to_string()));
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some((n, v)) = self.now.take() {
            self.software.count(&n, &v, -1);
        }
    }
}

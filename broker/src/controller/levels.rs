//! This broker and the cluster's finalized feature levels ([`crate::features`]): it stops when
//! the metadata finalizes a level it cannot run at, and raises its data directory's format
//! when the metadata finalizes `stillwater.version` above it (the marker first, so the
//! directory never holds a file of a level it does not say).

use std::time::Duration;

use super::Controller;
use crate::features::{self, Unsupported, STILLWATER_VERSION};

/// How long to wait before trying a failed raise of the format again.
const RAISE_AGAIN: Duration = Duration::from_secs(1);

impl Controller {
    /// Resolves when the metadata finalizes a feature level this broker cannot run at (never
    /// while every level is within its range): it must stop, and an operator run a version
    /// that supports the level.
    pub async fn unsupported(&self) -> Unsupported {
        let mut changes = self.changes();
        loop {
            let found = self
                .metadata()
                .features
                .unsupported_by(&features::supported());
            if let Some(u) = found {
                return u;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Keep the data directory's format at the finalized `stillwater.version` (never lowered;
    /// a level this broker does not read is left to [`Controller::unsupported`]).
    pub(super) async fn format_loop(self: std::sync::Arc<Self>) {
        let mut changes = self.changes();
        loop {
            let level = self.metadata().features.level(STILLWATER_VERSION);
            let wanted = u16::try_from(level).unwrap_or(0);
            if wanted > self.store.format() && wanted <= crate::storage::format::READS {
                if let Err(e) = self.store.raise_format(wanted).await {
                    tracing::warn!(error = %e, level = wanted, "cannot raise the data directory's format yet");
                    self.env.clock.sleep(RAISE_AGAIN).await;
                    continue;
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

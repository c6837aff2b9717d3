//! raft-rs logs through `slog`; this drain hands its records to `tracing`, at the same level,
//! with the record's key-values in the message, under the target `raft`.

use std::fmt::{self, Write};

use slog::{Drain, Key, Level, OwnedKVList, Record, Serializer, KV};

/// A `slog::Logger` whose records go to `tracing` (target `raft`), tagged with `fields`
/// (for example the group a node belongs to).
pub fn raft_logger(
    fields: slog::OwnedKV<impl slog::SendSyncRefUnwindSafeKV + 'static>,
) -> slog::Logger {
    slog::Logger::root(ToTracing.fuse(), fields)
}

struct ToTracing;

struct Pairs(String);

impl Serializer for Pairs {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments) -> slog::Result {
        // Writing to a String cannot fail.
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = record.level();
        // Cheap refusal first: raft-rs logs at debug on every message.
        let enabled = match level {
            Level::Critical | Level::Error => {
                tracing::enabled!(target: "raft", tracing::Level::ERROR)
            }
            Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
            Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut pairs = Pairs(String::new());
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        let message = record.msg();
        let pairs = pairs.0;
        match level {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{pairs}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}{pairs}"),
            Level::Info => tracing::info!(target: "raft", "{message}{pairs}"),
            Level::Debug => tracing::debug!(target: "raft", "{message}{pairs}"),
            Level::Trace => tracing::trace!(target: "raft", "{message}{pairs}"),
        }
        Ok(())
    }
}

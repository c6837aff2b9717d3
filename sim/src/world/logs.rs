//! The brokers' log lines of a simulated run, captured for the explorable page (`sim run
//! --html`): a tracing layer that keeps each broker event with its simulated time and the
//! madsim node it ran on (from the node's span, which madsim enters around every poll of its
//! tasks). Bounded: past [`MAX_LINES`] lines are counted, not kept.
//!
//! Capturing reads the simulated clock and nothing else of the world: a seed runs the same
//! with it as without (a test of the page checks the trace hash).

use std::sync::Mutex;

use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::history::{LogLine, Logged};

/// The most lines kept of one run (~100 MB at most).
pub const MAX_LINES: usize = 400_000;

struct Store {
    start: Option<Instant>,
    logged: Logged,
}

static STORE: Mutex<Store> = Mutex::new(Store {
    start: None,
    logged: Logged {
        lines: Vec::new(),
        dropped: 0,
    },
});

fn store() -> std::sync::MutexGuard<'static, Store> {
    STORE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The run begins at `start`: what was captured before is forgotten, times count from here.
pub fn mark_start(start: Instant) {
    let mut s = store();
    s.start = Some(start);
    s.logged = Logged::default();
}

/// What the run logged, taken (the store is left empty).
pub fn take() -> Logged {
    let mut s = store();
    s.start = None;
    std::mem::take(&mut s.logged)
}

/// The layer that captures (install it with a filter that lets the brokers' events through and
/// madsim's node and task spans).
pub struct Capture;

/// A node span's name, kept in its extensions.
struct NodeName(String);

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
    name: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "name" => self.name = Some(value.to_string()),
            name => self.fields.push((name.to_string(), value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "name" => self.name = Some(text.trim_matches('"').to_string()),
            name => self.fields.push((name.to_string(), text)),
        }
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "node" {
            return;
        }
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let (Some(name), Some(span)) = (f.name, ctx.span(id)) {
            span.extensions_mut().insert(NodeName(name));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(node) = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<NodeName>().map(|n| n.0.clone()))
        }) else {
            return;
        };
        if madsim::runtime::Handle::try_current().is_err() {
            return;
        }
        let now = Instant::now();
        let mut s = store();
        let Some(start) = s.start else {
            return;
        };
        if s.logged.lines.len() >= MAX_LINES {
            s.logged.dropped += 1;
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        s.logged.lines.push(LogLine {
            at_s: now.saturating_duration_since(start).as_secs_f64(),
            node,
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: f.message,
            fields: f.fields,
        });
    }
}

//! The brokers' log lines of a simulated run, captured for the explorable page (`sim run
//! --html`): a tracing layer that keeps each broker event with its simulated time and the
//! madsim node it ran on (from the node's span, which madsim enters around every poll of its
//! tasks). Bounded: each kind of line up to [`MAX_LINES`], the frequent kinds thinned evenly
//! over the run past that, and what was let go counted.
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

/// The most lines kept of each kind of one run (~60 MB at most each).
pub const MAX_LINES: usize = 200_000;

/// Lines of one kind, kept evenly over the whole run whatever its length: when full, every
/// other line kept is let go and from then on one line in twice as many is kept.
#[derive(Default)]
struct Thinned {
    lines: Vec<LogLine>,
    /// One line in `stride` is kept (1 until the first thinning).
    stride: u64,
    seen: u64,
}

impl Thinned {
    fn push(&mut self, line: LogLine) {
        self.stride = self.stride.max(1);
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.stride) {
            return;
        }
        if self.lines.len() >= MAX_LINES {
            let mut i = 0;
            self.lines.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
            if !(self.seen - 1).is_multiple_of(self.stride) {
                return;
            }
        }
        self.lines.push(line);
    }

    fn dropped(&self) -> u64 {
        self.seen - self.lines.len() as u64
    }
}

struct Store {
    start: Option<Instant>,
    /// A node's changes of role, warnings and errors: all of them, up to the bound.
    important: Vec<LogLine>,
    important_dropped: u64,
    /// Every other line, and each frame of messages between nodes, thinned.
    other: Thinned,
    frames: Thinned,
}

static STORE: Mutex<Store> = Mutex::new(Store {
    start: None,
    important: Vec::new(),
    important_dropped: 0,
    other: Thinned {
        lines: Vec::new(),
        stride: 1,
        seen: 0,
    },
    frames: Thinned {
        lines: Vec::new(),
        stride: 1,
        seen: 0,
    },
});

fn store() -> std::sync::MutexGuard<'static, Store> {
    STORE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The run begins at `start`: what was captured before is forgotten, times count from here.
pub fn mark_start(start: Instant) {
    let mut s = store();
    s.start = Some(start);
    s.important.clear();
    s.important_dropped = 0;
    s.other = Thinned::default();
    s.frames = Thinned::default();
}

/// What the run logged, in time order, taken (the store is left empty).
pub fn take() -> Logged {
    let mut s = store();
    s.start = None;
    let dropped = s.important_dropped + s.other.dropped() + s.frames.dropped();
    let mut lines = std::mem::take(&mut s.important);
    lines.append(&mut std::mem::take(&mut s.other).lines);
    lines.append(&mut std::mem::take(&mut s.frames).lines);
    lines.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    Logged { lines, dropped }
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
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let line = LogLine {
            at_s: now.saturating_duration_since(start).as_secs_f64(),
            node,
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: f.message,
            fields: f.fields,
        };
        if meta.target() == crate::history::FRAMES_TARGET {
            s.frames.push(line);
        } else if *meta.level() <= tracing::Level::WARN
            || line.message == "leading"
            || line.message == "no longer leading"
        {
            if s.important.len() < MAX_LINES {
                s.important.push(line);
            } else {
                s.important_dropped += 1;
            }
        } else {
            s.other.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thinned_kind_keeps_an_even_sample_of_the_whole_run() {
        let mut t = Thinned::default();
        let n = (MAX_LINES * 5) as u64;
        for i in 0..n {
            t.push(LogLine {
                at_s: i as f64,
                node: String::new(),
                level: "TRACE".into(),
                target: String::new(),
                message: String::new(),
                fields: Vec::new(),
            });
        }
        assert!(t.lines.len() <= MAX_LINES && t.lines.len() >= MAX_LINES / 2);
        assert_eq!(t.stride, 8);
        assert_eq!(t.dropped(), n - t.lines.len() as u64);
        // Evenly spread: every stride-th line, from the first to near the last.
        assert!(t.lines.windows(2).all(|w| w[1].at_s - w[0].at_s == 8.0));
        assert_eq!(t.lines[0].at_s, 0.0);
        assert!(t.lines.last().unwrap().at_s >= (n - 8) as f64);
    }
}

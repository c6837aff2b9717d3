//! The pieces of the timeline picture: axis ticks, number formats, fault colours and label
//! rows, bound lines, XML escaping.

use std::fmt::Write as _;

use super::FaultWindow;

/// A dashed horizontal line across the panel at `y`, labelled at its right end.
/// `above`: the label sits above the line (else below it, so two close bounds stay legible).
pub(super) fn bound_line(
    s: &mut String,
    (x1, x2): (f64, f64),
    y: f64,
    colour: &str,
    label: &str,
    above: bool,
) {
    let _ = writeln!(
        s,
        r##"<g class="bound"><line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="1.2" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{colour}" stroke="white" stroke-width="3" paint-order="stroke">{}</text></g>"##,
        x2 - 3.0,
        if above { y - 3.0 } else { y + 11.0 },
        xml(label)
    );
}

/// Which row above the panels each fault's label takes: the first whose last label ends
/// before this one starts.
pub(super) fn label_rows(
    faults: &[FaultWindow],
    several: bool,
    x: &dyn Fn(f64) -> f64,
) -> Vec<usize> {
    let mut row_ends: Vec<f64> = Vec::new();
    faults
        .iter()
        .map(|f| {
            let start = x(f.from_s as f64);
            let end = start + 6.5 * f.label(several).chars().count() as f64 + 6.0;
            match row_ends.iter().position(|&e| e <= start) {
                Some(r) => {
                    row_ends[r] = end;
                    r
                }
                None => {
                    row_ends.push(end);
                    row_ends.len() - 1
                }
            }
        })
        .collect()
}

/// Round tick values from `lo` to at least `hi`, about `count` of them (steps of 1, 2 or 5
/// times a power of ten).
pub fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let wanted = count.max(1) as f64;
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .min_by(|a, b| {
            let off = |s: &f64| (span / s - wanted).abs();
            off(a).total_cmp(&off(b))
        })
        .unwrap_or(magnitude);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut i = 0.0;
    loop {
        let v = first + i * step;
        out.push(v);
        if v >= hi - 1e-9 * step {
            return out;
        }
        i += 1.0;
    }
}

pub(super) fn number(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(super) fn milliseconds(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", number(v / 1000.0))
    } else if v >= 1.0 {
        format!("{} ms", number(v))
    } else {
        format!("{v} ms")
    }
}

/// One colour per family of faults: disk, process, network, clock.
pub(super) fn fault_colour(kind: &str) -> &'static str {
    match kind {
        "crash" | "pause" => "#b2182b",
        "partition" | "packet-loss" | "net-latency" => "#2166ac",
        "clock-skew" | "clock-drift" => "#7b3294",
        _ => "#d6604d",
    }
}

/// Text made safe for SVG.
pub(super) fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

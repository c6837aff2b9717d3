//! What the benchmarks measure besides their own requests: latency histograms, the broker's
//! Prometheus counters, and how busy the machine (and the broker process) was.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Request latencies in microseconds, 1 µs to 10 min at 3 significant digits.
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Latency {
    pub fn new() -> Result<Self> {
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3)
            .map_err(|error| anyhow!("creating a latency histogram: {error}"))?;
        Ok(Self { histogram })
    }

    pub fn record(&mut self, latency: Duration) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(latency_us.max(1));
    }

    pub fn merge(&mut self, other: &Latency) -> Result<()> {
        self.histogram
            .add(&other.histogram)
            .map_err(|error| anyhow!("merging latency histograms: {error}"))
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0..=1) in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }
}

/// The broker counters the benchmarks report, as deltas over the measured window.
pub const COMMIT_APPENDS: &str = "stillwater_commit_appends_total";
pub const COMMIT_ROUNDS: &str = "stillwater_commit_rounds_total";
pub const DISK_SYNC_OPS: &str = "stillwater_disk_sync_ops_total";

/// One scrape of a Prometheus text endpoint: each metric name with the sum over its label sets.
pub type MetricsSample = HashMap<String, f64>;

/// `GET http://addr/metrics` over plain HTTP/1.0 with a 3 s deadline.
pub async fn scrape_metrics(addr: &str) -> Result<MetricsSample> {
    let body = tokio::time::timeout(Duration::from_secs(3), http_get(addr, "/metrics"))
        .await
        .map_err(|_| anyhow!("GET http://{addr}/metrics: no answer within 3 s"))??;
    Ok(parse_prometheus(&body))
}

async fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .with_context(|| format!("sending GET {path} to {addr}"))?;
    let mut response = Vec::new();
    // A metrics page is a few kilobytes; the bound only guards against a wrong address.
    (&mut stream)
        .take(16 << 20)
        .read_to_end(&mut response)
        .await
        .with_context(|| format!("reading GET {path} from {addr}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .or_else(|| response.split_once("\n\n"))
        .ok_or_else(|| anyhow!("GET http://{addr}{path}: malformed HTTP response"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        bail!("GET http://{addr}{path}: {status_line}");
    }
    Ok(body.to_string())
}

fn parse_prometheus(body: &str) -> MetricsSample {
    let mut sample = MetricsSample::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `name{labels} value [timestamp]`; label values may contain spaces, so split the name
        // off at the brace first.
        let (name, rest) = match line.find('{') {
            Some(brace) => match line[brace..].find('}') {
                Some(close) => (&line[..brace], &line[brace + close + 1..]),
                None => continue,
            },
            None => match line.split_once(char::is_whitespace) {
                Some((name, rest)) => (name, rest),
                None => continue,
            },
        };
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        if let Ok(value) = value.parse::<f64>() {
            *sample.entry(name.to_string()).or_insert(0.0) += value;
        }
    }
    sample
}

/// The change of one counter between two scrapes, if both have it.
pub fn metric_delta(before: &MetricsSample, after: &MetricsSample, name: &str) -> Option<f64> {
    Some(after.get(name)? - before.get(name)?)
}

/// The aggregate `cpu` line of /proc/stat, in ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    total: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
}

impl CpuTimes {
    pub fn now() -> Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let line = stat
            .lines()
            .find(|line| line.starts_with("cpu "))
            .ok_or_else(|| anyhow!("/proc/stat has no aggregate cpu line"))?;
        // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
        // counted in user, so only the first eight add up to the total.
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        let field = |index: usize| fields.get(index).copied().unwrap_or(0);
        Ok(Self {
            total: fields.iter().sum(),
            idle: field(3),
            iowait: field(4),
            steal: field(7),
        })
    }
}

/// Machine utilisation between two samples, in percent of all CPUs.
pub struct CpuUsage {
    pub busy_percent: f64,
    pub iowait_percent: f64,
    pub steal_percent: f64,
}

pub fn cpu_usage(before: CpuTimes, after: CpuTimes) -> Option<CpuUsage> {
    let total = after.total.checked_sub(before.total)?;
    if total == 0 {
        return None;
    }
    let percent = |ticks: u64| 100.0 * ticks as f64 / total as f64;
    let idle = after.idle.saturating_sub(before.idle);
    let iowait = after.iowait.saturating_sub(before.iowait);
    Some(CpuUsage {
        busy_percent: percent(total.saturating_sub(idle + iowait)),
        iowait_percent: percent(iowait),
        steal_percent: percent(after.steal.saturating_sub(before.steal)),
    })
}

/// The first three fields of /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|loadavg| {
            loadavg
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "n/a".to_string())
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1)
}

/// A process's resident memory now (VmRSS in /proc/PID/status), 0 if it cannot be read.
pub fn rss_bytes(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// The most resident memory a process has had (VmHWM in /proc/PID/status), 0 if it cannot be
/// read.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

/// A field of /proc/PID/status given in kB, in bytes.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) a process has used so far, from /proc/PID/stat.
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces: count from the last
    // ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th after the name.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: field {} missing", index + 3))
    };
    let ticks = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// USER_HZ: 100 on every mainstream Linux; asked of getconf in case this one differs.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|&ticks| ticks > 0.0)
        .unwrap_or(100.0)
}

/// A two-column table with aligned labels, printed after a run.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn row(&mut self, label: impl Into<String>, value: impl Into<String>) {
        self.rows.push((label.into(), value.into()));
    }

    pub fn print(&self) {
        let width = self
            .rows
            .iter()
            .map(|(label, _)| label.len())
            .max()
            .unwrap_or(0);
        for (label, value) in &self.rows {
            println!("  {label:<width$}  {value}");
        }
    }
}

/// `12345678.9` → `12,345,679`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

/// How a benchmark's table describes its topic's replicas: three nodes of each system, or one.
pub(crate) fn replicas_note(cluster: bool) -> &'static str {
    if cluster {
        " x 3 replicas on 3 local nodes (CPU and RSS: the three together)"
    } else {
        ", single node"
    }
}

/// The median of `values` (0 when empty).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The repository's commit, abbreviated, and its date.
pub(crate) fn commit_of_repo() -> String {
    std::process::Command::new("git")
        .args(["log", "-1", "--format=%h %cs"])
        .current_dir(crate::repo_root())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_sums_label_sets() {
        let body = "# HELP x y\n# TYPE stillwater_commit_rounds_total counter\n\
                    stillwater_commit_rounds_total{dir=\"/a b\"} 10\n\
                    stillwater_commit_rounds_total{dir=\"/c\"} 5 1700000000\n\
                    stillwater_disk_sync_ops_total 7\n";
        let sample = parse_prometheus(body);
        assert_eq!(sample.get(COMMIT_ROUNDS), Some(&15.0));
        assert_eq!(sample.get(DISK_SYNC_OPS), Some(&7.0));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}

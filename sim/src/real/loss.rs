//! Real packet loss on a twin run's links: the kernel's packet filter drops each TCP segment
//! to or from the run's proxies with the scenario's chance (iptables' `statistic` match;
//! netem is not available on these kernels), and real TCP resends what was dropped — its
//! retransmission timers, duplicate acknowledgements and backoff, as the simulated network's
//! resends stand for.
//!
//! The run's rules live in a chain of its own, `SWLOSS<pid>`, jumped to from `INPUT` for
//! loopback segments to or from each proxy port (a segment crosses `INPUT` once on loopback),
//! so the machine's other traffic is never touched. The chain holds one rule while the loss
//! lasts and none otherwise.
//!
//! Invariant: the run's chain and its jumps are removed when the run ends (its handle is
//! dropped); a chain left by a run that was killed before it could remove it (its process is
//! gone) is removed by the next run that installs one.

use std::process::Command;
use std::sync::OnceLock;

/// The packet filter this uses.
const IPTABLES: &str = "iptables";
const PREFIX: &str = "SWLOSS";

fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new(IPTABLES)
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("{IPTABLES}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{IPTABLES} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this machine can drop packets for real: `iptables` runs, may change the filter
/// table (root, CAP_NET_ADMIN), and has the `statistic` match. Asked once per process.
pub fn available() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let probe = format!("{PREFIX}probe{}", std::process::id());
            iptables(&["-N", &probe])?;
            let rule = [
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.5",
            ];
            let appended =
                iptables(&[&["-A", probe.as_str()][..], &rule[..], &["-j", "DROP"]].concat());
            let _ = iptables(&["-F", &probe]);
            let _ = iptables(&["-X", &probe]);
            appended.map(|_| ())
        })
        .clone()
}

/// The run's packet loss: its chain, and the proxy ports it is jumped to for.
pub struct Loss {
    chain: String,
    jumps: Vec<Vec<String>>,
}

impl Loss {
    /// Make the run's chain (empty: nothing lost yet) and jump to it for segments to or from
    /// each of `ports` on loopback.
    pub fn install(ports: &[u16]) -> Result<Loss, String> {
        available()?;
        remove_stale();
        let chain = format!("{PREFIX}{}", std::process::id());
        let _ = remove_chain(&chain);
        iptables(&["-N", &chain])?;
        let mut loss = Loss {
            chain: chain.clone(),
            jumps: Vec::new(),
        };
        for port in ports {
            for dir in ["--dport", "--sport"] {
                let jump: Vec<String> = [
                    "INPUT",
                    "-i",
                    "lo",
                    "-p",
                    "tcp",
                    dir,
                    &port.to_string(),
                    "-j",
                    &chain,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let mut add = vec!["-A".to_string()];
                add.extend(jump.iter().cloned());
                iptables(&add.iter().map(String::as_str).collect::<Vec<_>>())?;
                loss.jumps.push(jump);
            }
        }
        Ok(loss)
    }

    /// Drop each segment with chance `rate` from now on (`None`: drop nothing).
    pub fn set(&self, rate: Option<f64>) {
        let mut done = iptables(&["-F", &self.chain]).map(|_| ());
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            let p = format!("{:.6}", rate.min(1.0));
            done = done.and_then(|_| {
                iptables(&[
                    "-A",
                    &self.chain,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ])
                .map(|_| ())
            });
        }
        if let Err(e) = done {
            tracing::error!("packet loss not changed: {e}");
        }
    }

    /// How many segments the chain dropped so far (its rule's counter; 0 without one).
    pub fn dropped(&self) -> u64 {
        iptables(&["-L", &self.chain, "-n", "-v", "-x"])
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.contains("DROP"))
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        for jump in &self.jumps {
            let mut del = vec!["-D"];
            del.extend(jump.iter().map(String::as_str));
            let _ = iptables(&del);
        }
        if let Err(e) = remove_chain(&self.chain) {
            tracing::warn!("cannot remove {}: {e}", self.chain);
        }
    }
}

/// Remove a chain and every jump to it from `INPUT`.
fn remove_chain(chain: &str) -> Result<(), String> {
    if let Ok(rules) = iptables(&["-S", "INPUT"]) {
        for line in rules
            .lines()
            .filter(|l| l.ends_with(&format!("-j {chain}")))
        {
            let mut args: Vec<&str> = line.split_whitespace().collect();
            if args.first() == Some(&"-A") {
                args[0] = "-D";
                let _ = iptables(&args);
            }
        }
    }
    iptables(&["-F", chain])?;
    iptables(&["-X", chain]).map(|_| ())
}

/// Remove the chains of runs whose process is gone.
fn remove_stale() {
    let Ok(all) = iptables(&["-S"]) else {
        return;
    };
    for line in all.lines() {
        let Some(chain) = line.strip_prefix("-N ") else {
            continue;
        };
        let Some(pid) = chain.strip_prefix(PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_chain(chain);
        }
    }
}

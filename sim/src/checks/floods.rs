//! The flood checker (`flood` faults): a stranger's connections cost the broker no more than
//! its bounds allow, whatever they send. On the inter-broker port, at most
//! `UNIDENTIFIED_PER_ADDRESS_MAX` of them are held at once, none past the I/O timeout; on a
//! client port, at most the per-address connection limit; garbage is closed at once on both.
//! A flood that made no connection at all is a finding too: it proved nothing.

use std::time::Duration;

use crate::findings::Finding;
use crate::history::{FloodSeen, Op};
use crate::scenario::{FloodPort, FloodSend};

/// Slack on every bound in time: the stranger sees a close one network trip late, and a twin
/// run's host may be busy.
const SLACK: Duration = Duration::from_secs(2);

/// The bounds a flood is held to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections from one address held before they identify themselves, inter-broker port.
    pub inter_broker_per_address: u32,
    /// The inter-broker port's wait for a hello.
    pub inter_broker_timeout: Duration,
    /// Connections from one address, a client port.
    pub client_per_address: u32,
}

impl Bounds {
    /// The broker's own bounds, with the client port's per-address limit as the run sets it.
    pub fn of_broker(client_per_address: u32) -> Bounds {
        Bounds {
            inter_broker_per_address: broker::replication::transport::UNIDENTIFIED_PER_ADDRESS_MAX
                as u32,
            inter_broker_timeout: broker::replication::transport::TransportSettings::default()
                .io_timeout,
            client_per_address,
        }
    }
}

pub fn check(history: &[Op], bounds: Bounds) -> Vec<Finding> {
    history
        .iter()
        .filter_map(|op| match op {
            Op::Flood(f) => Some(f),
            _ => None,
        })
        .filter_map(|f| broken(f, bounds).map(|why| finding(f, why)))
        .collect()
}

fn finding(f: &FloodSeen, why: String) -> Finding {
    Finding::FloodHeld {
        broker: f.broker,
        port: match f.port {
            FloodPort::Client => "client",
            FloodPort::InterBroker => "inter-broker",
        },
        at_s: f.at_s,
        why,
    }
}

/// What bound a flood broke, if any.
fn broken(f: &FloodSeen, b: Bounds) -> Option<String> {
    if f.opened == 0 {
        return Some("no connection was made: the flood proved nothing".into());
    }
    let (most, longest) = match f.port {
        FloodPort::InterBroker => (b.inter_broker_per_address, Some(b.inter_broker_timeout)),
        FloodPort::Client => (b.client_per_address, None),
    };
    let longest = if f.send == FloodSend::Garbage {
        Some(Duration::ZERO)
    } else {
        longest
    };
    if f.held_max > most {
        return Some(format!(
            "{} connections from one address held at once (bound {most})",
            f.held_max
        ));
    }
    match longest {
        Some(l) if f.longest_held_s > (l + SLACK).as_secs_f64() => Some(format!(
            "a connection held {:.1} s (bound {:.1} s)",
            f.longest_held_s,
            (l + SLACK).as_secs_f64()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(port: FloodPort, send: FloodSend, opened: u32, held: u32, longest: f64) -> Op {
        Op::Flood(FloodSeen {
            broker: 0,
            port,
            send,
            at_s: 10.0,
            until_s: 30.0,
            opened,
            closed_at_once: opened - held,
            held_max: held,
            longest_held_s: longest,
        })
    }

    const B: Bounds = Bounds {
        inter_broker_per_address: 8,
        inter_broker_timeout: Duration::from_secs(3),
        client_per_address: 100,
    };

    #[test]
    fn floods_within_the_bounds_pass_and_past_them_are_found() {
        use FloodPort::*;
        use FloodSend::*;
        let fine = [
            seen(InterBroker, Nothing, 300, 8, 3.2),
            seen(InterBroker, Garbage, 300, 0, 0.1),
            seen(Client, Nothing, 300, 100, 20.0),
            seen(Client, Half, 50, 50, 20.0),
        ];
        assert!(check(&fine, B).is_empty(), "{:?}", check(&fine, B));
        for bad in [
            seen(InterBroker, Nothing, 300, 9, 3.0),
            seen(InterBroker, Half, 300, 8, 20.0),
            seen(Client, Garbage, 300, 0, 4.0),
            seen(Client, Nothing, 300, 101, 20.0),
            seen(Client, Nothing, 0, 0, 0.0),
        ] {
            assert!(
                matches!(
                    &check(std::slice::from_ref(&bad), B)[..],
                    [Finding::FloodHeld { .. }]
                ),
                "{bad:?}"
            );
        }
    }
}

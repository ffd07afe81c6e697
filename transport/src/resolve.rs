//! Broker endpoints that name a host: one DNS name for a whole tier of brokers.
//!
//! `tcp://brokers:5556`, where `brokers` resolves to several addresses (a Kubernetes
//! headless Service, a compose network alias shared by several brokers), stands for one
//! broker per address. [`expand`] turns a list of endpoints into the brokers it stands for
//! now (`tcp://10.0.0.7:5556`, ...); a name with a single address stays as written, so
//! ZeroMQ looks it up again whenever it reconnects. [`Watcher`] does that again and again
//! on a thread of its own (a lookup can block for seconds when DNS is slow: never on a
//! socket thread) and hands over each new answer, so that the worker and the client open a
//! connection per broker and follow brokers as they come and go. Endpoints that are
//! already concrete (an IP address, `ipc://`, `inproc://`) stand for themselves.

use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{debug, warn};

use crate::socket::endpoint_list;
use crate::wake::Waker;

/// Most brokers one name (or list) may stand for; more are ignored and logged.
pub const MAX_BROKERS: usize = 64;

/// One endpoint as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Configured {
    /// Stands for itself.
    Fixed(String),
    /// `tcp://host:port` with a host name: one broker per address it resolves to.
    Named { host: String, port: u16 },
}

impl Configured {
    fn parse(endpoint: &str) -> Configured {
        let named = endpoint.strip_prefix("tcp://").and_then(|rest| {
            let (host, port) = rest.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            let literal = host.starts_with('[') || host.parse::<IpAddr>().is_ok();
            // `*` and interface names with `;` (source addresses) are left to ZeroMQ.
            let plain = !host.is_empty() && host != "*" && !host.contains(';');
            (!literal && plain).then(|| Configured::Named {
                host: host.to_owned(),
                port,
            })
        });
        named.unwrap_or_else(|| Configured::Fixed(endpoint.to_owned()))
    }
}

/// The addresses `host` resolves to now, as `tcp://` endpoints on `port`, sorted; `None`
/// (logged) when the lookup fails.
fn lookup(host: &str, port: u16) -> Option<Vec<String>> {
    match (host, port).to_socket_addrs() {
        Ok(addresses) => {
            let mut found: Vec<String> = addresses
                .map(|a| match a.ip() {
                    IpAddr::V4(ip) => format!("tcp://{ip}:{port}"),
                    IpAddr::V6(ip) => format!("tcp://[{ip}]:{port}"),
                })
                .collect();
            found.sort();
            found.dedup();
            Some(found)
        }
        Err(error) => {
            warn!(%host, %error, "broker host name does not resolve (now)");
            None
        }
    }
}

/// The brokers a comma-separated list stands for now, in order, without repeats (at most
/// [`MAX_BROKERS`]): a host name that resolves to several addresses stands for one broker
/// each; any other endpoint, a name with one address included, stays as written (ZeroMQ
/// then looks the name up again whenever it reconnects, so a broker that comes back at a
/// new address is found).
/// A name that does not resolve stays as written too (ZeroMQ keeps trying it).
pub fn expand(list: &str) -> Vec<String> {
    expand_with(list, |host, port| {
        Some(lookup(host, port).unwrap_or_default())
    })
    .expect("lenient lookups never fail")
}

/// [`expand`], or `None` when a name in the list does not resolve now: a DNS outage must
/// not make a program drop the brokers it follows (the [`Watcher`] keeps its last answer).
fn expand_strictly(list: &str) -> Option<Vec<String>> {
    expand_with(list, lookup)
}

fn expand_with(
    list: &str,
    lookup: impl Fn(&str, u16) -> Option<Vec<String>>,
) -> Option<Vec<String>> {
    let mut endpoints: Vec<String> = Vec::new();
    for endpoint in endpoint_list(list) {
        let found = match Configured::parse(&endpoint) {
            Configured::Named { host, port } => lookup(&host, port)?,
            Configured::Fixed(_) => Vec::new(),
        };
        let chosen = if found.len() > 1 {
            found
        } else {
            vec![endpoint]
        };
        for endpoint in chosen {
            if !endpoints.contains(&endpoint) {
                endpoints.push(endpoint);
            }
        }
    }
    if endpoints.len() > MAX_BROKERS {
        warn!(
            found = endpoints.len(),
            kept = MAX_BROKERS,
            "more brokers than one process connects to; ignoring the rest"
        );
        endpoints.truncate(MAX_BROKERS);
    }
    Some(endpoints)
}

/// Whether a list names a host (then what it stands for may change over time).
pub fn names_a_host(list: &str) -> bool {
    endpoint_list(list)
        .iter()
        .any(|e| matches!(Configured::parse(e), Configured::Named { .. }))
}

/// A thread that looks a broker list up every interval (and at once when asked) and
/// hands over each answer that differs from the last. It ends when the `Watcher` is
/// dropped (at its next wake-up).
#[derive(Debug)]
pub struct Watcher {
    answers: Receiver<Vec<String>>,
    nudge: Sender<()>,
}

impl Watcher {
    /// Watches `list`, whose brokers are `current` now, every `interval`; `wake` is woken
    /// when a new answer is ready. `None` when the list names no host (nothing to watch).
    pub fn start(
        list: &str,
        current: Vec<String>,
        interval: Duration,
        wake: Waker,
    ) -> std::io::Result<Option<Watcher>> {
        if !names_a_host(list) {
            return Ok(None);
        }
        let (answer, answers) = crossbeam_channel::unbounded();
        let (nudge, nudged) = crossbeam_channel::unbounded();
        let list = list.to_owned();
        let interval = interval.max(Duration::from_millis(100));
        std::thread::Builder::new()
            .name("switchboard-lookup".into())
            .spawn(move || {
                let mut last = current;
                loop {
                    match nudged.recv_timeout(interval) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    // A name that does not resolve now: keep following the brokers known.
                    let Some(found) = expand_strictly(&list) else {
                        continue;
                    };
                    if found != last {
                        debug!(?found, "the broker list stands for other brokers now");
                        if answer.send(found.clone()).is_err() {
                            return;
                        }
                        wake.wake();
                        last = found;
                    }
                }
            })?;
        Ok(Some(Watcher { answers, nudge }))
    }

    /// The newest answer since the last call, if any.
    pub fn latest(&self) -> Option<Vec<String>> {
        self.answers.try_iter().last()
    }

    /// Asks for a lookup now (a broker fell silent: its address may have changed).
    pub fn look_again(&self) {
        let _ = self.nudge.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_host_names_are_looked_up() {
        for fixed in [
            "tcp://127.0.0.1:5556",
            "tcp://[::1]:5556",
            "ipc:///tmp/broker",
            "inproc://broker",
            "tcp://*:5556",
            "tcp://host:notaport",
        ] {
            assert_eq!(Configured::parse(fixed), Configured::Fixed(fixed.into()));
        }
        assert_eq!(
            Configured::parse("tcp://brokers.default.svc:5556"),
            Configured::Named {
                host: "brokers.default.svc".into(),
                port: 5556
            }
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_keeps_the_brokers_known_when_followed() {
        let list = "tcp://127.0.0.1:1, tcp://no-such-host.invalid:2";
        assert_eq!(
            expand(list),
            vec!["tcp://127.0.0.1:1", "tcp://no-such-host.invalid:2"]
        );
        assert_eq!(expand_strictly(list), None);
        assert_eq!(
            expand_strictly("tcp://127.0.0.1:1, ipc:///x"),
            Some(vec!["tcp://127.0.0.1:1".to_owned(), "ipc:///x".to_owned()])
        );
    }

    #[test]
    fn names_are_looked_up_and_fixed_endpoints_stand_for_themselves() {
        assert_eq!(
            lookup("localhost", 7001)
                .unwrap_or_default()
                .first()
                .map(String::as_str),
            Some("tcp://127.0.0.1:7001")
        );
        assert!(lookup("no-such-host.invalid", 7003).is_none());
        assert!(names_a_host("tcp://127.0.0.1:1, tcp://brokers:2"));
        assert!(!names_a_host("tcp://127.0.0.1:1, ipc:///x"));
    }

    #[test]
    fn expanding_once_keeps_names_with_one_address_as_written() {
        assert_eq!(
            expand("tcp://no-such-host.invalid:1, ipc:///x,tcp://127.0.0.1:2"),
            vec![
                "tcp://no-such-host.invalid:1",
                "ipc:///x",
                "tcp://127.0.0.1:2"
            ]
        );
    }
}

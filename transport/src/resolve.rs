//! Broker endpoints that name a host: one DNS name for a whole tier of brokers.
//!
//! `tcp://brokers:5556`, where `brokers` resolves to several addresses (a Kubernetes
//! headless Service, a compose service scaled to several brokers), stands for one broker
//! per address. [`Resolver`] turns a list of endpoints into the concrete ones
//! (`tcp://10.0.0.7:5556`, ...) and says when to look again, so that the worker and the
//! client open a connection per broker and follow brokers as they come and go. Endpoints
//! that are already concrete (an IP address, `ipc://`, `inproc://`) stand for themselves.

use std::net::{IpAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::socket::endpoint_list;

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

/// The endpoints of a broker list, resolved now and again.
#[derive(Debug)]
pub struct Resolver {
    configured: Vec<Configured>,
    interval: Duration,
    next: Instant,
}

impl Resolver {
    /// A resolver for a comma-separated endpoint list, looked up again every `interval`.
    pub fn new(list: &str, interval: Duration, now: Instant) -> Resolver {
        Resolver {
            configured: endpoint_list(list)
                .iter()
                .map(|e| Configured::parse(e))
                .collect(),
            interval: interval.max(Duration::from_millis(100)),
            next: now,
        }
    }

    /// Whether the list names a host (then [`Resolver::resolve`] may change over time).
    pub fn has_names(&self) -> bool {
        self.configured
            .iter()
            .any(|c| matches!(c, Configured::Named { .. }))
    }

    /// When the list should be looked up again.
    pub fn next_lookup(&self) -> Instant {
        self.next
    }

    /// Brings the next lookup forward to now (a broker's connection fell silent: its
    /// address may have changed).
    pub fn look_again(&mut self) {
        self.next = self.next.min(Instant::now());
    }

    /// Whether it is time to look again (always false for a list with no host name).
    pub fn due(&self, now: Instant) -> bool {
        self.has_names() && now >= self.next
    }

    /// Looks the list up now: every concrete endpoint, in order, without repeats. A name
    /// that does not resolve (yet) stands for no broker; it is logged, and looked up
    /// again at the next lookup. Schedules the next lookup.
    pub fn resolve(&mut self, now: Instant) -> Vec<String> {
        self.next = now + self.interval;
        let mut endpoints: Vec<String> = Vec::new();
        let mut add = |endpoint: String| {
            if !endpoints.contains(&endpoint) {
                endpoints.push(endpoint);
            }
        };
        for configured in &self.configured {
            match configured {
                Configured::Fixed(endpoint) => add(endpoint.clone()),
                Configured::Named { host, port } => {
                    match (host.as_str(), *port).to_socket_addrs() {
                        Ok(addresses) => {
                            let mut found: Vec<String> = addresses
                                .map(|a| match a.ip() {
                                    IpAddr::V4(ip) => format!("tcp://{ip}:{port}"),
                                    IpAddr::V6(ip) => format!("tcp://[{ip}]:{port}"),
                                })
                                .collect();
                            found.sort();
                            found.into_iter().for_each(&mut add);
                        }
                        Err(error) => {
                            warn!(%host, %error, "broker host name does not resolve (yet)");
                        }
                    }
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
        endpoints
    }
}

/// The endpoints of a list once, for a program that connects once (the client): a host
/// name that resolves to several addresses stands for one broker each; any other endpoint,
/// a name with one address included, stays as written (ZeroMQ then looks the name up again
/// whenever it reconnects, so a broker that comes back at a new address is found).
pub fn expand(list: &str) -> Vec<String> {
    let mut endpoints: Vec<String> = Vec::new();
    for endpoint in endpoint_list(list) {
        let mut one = Resolver::new(&endpoint, Duration::from_secs(1), Instant::now());
        let found = if one.has_names() {
            one.resolve(Instant::now())
        } else {
            Vec::new()
        };
        let chosen = if found.len() > 1 {
            found
        } else {
            vec![endpoint]
        };
        for endpoint in chosen {
            if !endpoints.contains(&endpoint) && endpoints.len() < MAX_BROKERS {
                endpoints.push(endpoint);
            }
        }
    }
    endpoints
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
    fn a_name_stands_for_each_of_its_addresses_and_fixed_ones_for_themselves() {
        let now = Instant::now();
        let mut resolver = Resolver::new(
            "tcp://localhost:7001, tcp://127.0.0.1:7002, tcp://no-such-host.invalid:7003",
            Duration::from_secs(5),
            now,
        );
        assert!(resolver.has_names() && resolver.due(now));
        let found = resolver.resolve(now);
        assert!(
            found.contains(&"tcp://127.0.0.1:7001".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"tcp://127.0.0.1:7002".to_owned()),
            "{found:?}"
        );
        assert!(!found.iter().any(|e| e.contains("7003")), "{found:?}");
        assert!(!resolver.due(now + Duration::from_secs(4)));
        assert!(resolver.due(now + Duration::from_secs(5)));
        let fixed = Resolver::new("tcp://127.0.0.1:1", Duration::from_secs(5), now);
        assert!(!fixed.has_names() && !fixed.due(now + Duration::from_secs(60)));
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

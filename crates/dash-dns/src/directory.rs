//! What the cluster's names mean: a [`Directory`] built from the masters' service endpoints,
//! and [`Directory::answer`], the pure decision for one question.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use dash_core::api::ServiceEndpoints;

/// The search domain of replicas, and the suffix every cluster name may carry.
pub const DOMAIN: &str = "dash";

/// What to say to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A cluster name: these addresses (A), or none (AAAA and other types, or no ready
    /// replica): NOERROR either way.
    Records(Vec<Ipv4Addr>),
    /// A name of the cluster's own that names nothing (or nothing the asker may see).
    NxDomain,
    /// Not a cluster name: ask the upstream resolvers.
    Forward,
}

/// The type of a question, as far as the cluster's names care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    A,
    /// AAAA and every other type: a cluster name has no such records.
    Other,
}

#[derive(Debug, Default)]
struct Service {
    vip: Option<Ipv4Addr>,
    networks: Vec<String>,
    ready: Vec<Ipv4Addr>,
}

/// The services by name, and the networks of every live replica's address.
#[derive(Debug, Default)]
pub struct Directory {
    services: HashMap<String, Service>,
    networks_of: HashMap<Ipv4Addr, Vec<String>>,
    /// Every network some service is on.
    networks: HashSet<String>,
}

impl Directory {
    pub fn new(endpoints: &[ServiceEndpoints]) -> Directory {
        let mut d = Directory::default();
        for e in endpoints {
            let addresses = |list: &[String]| -> Vec<Ipv4Addr> {
                list.iter().filter_map(|a| a.parse().ok()).collect()
            };
            d.networks.extend(e.networks.iter().cloned());
            for ip in addresses(&e.members) {
                d.networks_of.insert(ip, e.networks.clone());
            }
            d.services.insert(
                e.service.to_ascii_lowercase(),
                Service {
                    vip: e.vip.as_deref().and_then(|v| v.parse().ok()),
                    networks: e.networks.clone(),
                    ready: addresses(&e.ready),
                },
            );
        }
        d
    }

    /// How many services it knows.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The answer to `name` (any case, with or without the final dot) of `kind`, asked by
    /// `client`: a replica sees the services that share a network with it; anything else
    /// (the node itself, an address no replica has) sees them all.
    pub fn answer(&self, client: IpAddr, name: &str, kind: Kind) -> Answer {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (rest, ours) = match name.strip_suffix(DOMAIN) {
            Some("") => return Answer::NxDomain,
            Some(r) if r.ends_with('.') => (&r[..r.len() - 1], true),
            _ => (name.as_str(), false),
        };
        let labels: Vec<&str> = rest.split('.').collect();
        let (tasks, labels) = match labels.as_slice() {
            ["tasks", more @ ..] if !more.is_empty() => (true, more),
            all => (false, all),
        };
        let found = match labels {
            [svc] => self.services.get(*svc),
            [svc, network] => self
                .services
                .get(*svc)
                .filter(|s| s.networks.iter().any(|n| n == network)),
            _ => None,
        };
        match found.filter(|s| self.may_see(client, s)) {
            Some(s) => Answer::Records(match kind {
                Kind::Other => Vec::new(),
                Kind::A if tasks => s.ready.clone(),
                Kind::A => s.vip.map_or_else(|| s.ready.clone(), |v| vec![v]),
            }),
            // Ours: a single label, `tasks.…`, under `dash`, or `<name>.<a network>`.
            None if ours || tasks || labels.len() == 1 => Answer::NxDomain,
            None if labels.len() == 2 && self.networks.contains(labels[1]) => Answer::NxDomain,
            None => Answer::Forward,
        }
    }

    fn may_see(&self, client: IpAddr, service: &Service) -> bool {
        let IpAddr::V4(v4) = client else {
            return true;
        };
        match self.networks_of.get(&v4) {
            None => true,
            Some(mine) => {
                let mine: HashSet<&str> = mine.iter().map(String::as_str).collect();
                service.networks.iter().any(|n| mine.contains(n.as_str()))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn endpoints(
        service: &str,
        vip: Option<&str>,
        networks: &[&str],
        ready: &[&str],
        others: &[&str],
    ) -> ServiceEndpoints {
        ServiceEndpoints {
            service: service.into(),
            vip: vip.map(Into::into),
            networks: networks.iter().map(|n| n.to_string()).collect(),
            ports: Vec::new(),
            ready: ready.iter().map(|a| a.to_string()).collect(),
            members: ready.iter().chain(others).map(|a| a.to_string()).collect(),
        }
    }

    fn dir() -> Directory {
        Directory::new(&[
            endpoints(
                "api",
                Some("10.96.0.1"),
                &["backend"],
                &["10.88.0.2", "10.88.1.2"],
                &["10.88.0.3"],
            ),
            endpoints(
                "web",
                Some("10.96.0.2"),
                &["backend", "frontend"],
                &["10.88.0.4"],
                &[],
            ),
            endpoints("ui", Some("10.96.0.3"), &["frontend"], &["10.88.0.5"], &[]),
            endpoints("worker", None, &["backend"], &["10.88.0.6"], &[]),
        ])
    }

    fn a(list: &[&str]) -> Answer {
        Answer::Records(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    const NODE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 88, 0, 1));

    #[test]
    fn a_service_is_its_virtual_ip_under_each_of_its_names() {
        let d = dir();
        for name in [
            "api",
            "api.backend",
            "api.dash",
            "api.backend.dash",
            "API.Dash.",
            "api.",
        ] {
            assert_eq!(d.answer(NODE, name, Kind::A), a(&["10.96.0.1"]), "{name}");
        }
        // Not a network of api's.
        assert_eq!(d.answer(NODE, "api.frontend", Kind::A), Answer::NxDomain);
        // No virtual IP (no ports): its ready replicas.
        assert_eq!(d.answer(NODE, "worker", Kind::A), a(&["10.88.0.6"]));
    }

    #[test]
    fn tasks_are_the_ready_replicas_and_other_types_answer_empty() {
        let d = dir();
        assert_eq!(
            d.answer(NODE, "tasks.api", Kind::A),
            a(&["10.88.0.2", "10.88.1.2"])
        );
        assert_eq!(
            d.answer(NODE, "tasks.api.dash", Kind::A),
            a(&["10.88.0.2", "10.88.1.2"])
        );
        assert_eq!(d.answer(NODE, "api", Kind::Other), a(&[]));
        assert_eq!(d.answer(NODE, "tasks.nothing", Kind::A), Answer::NxDomain);
        assert_eq!(d.answer(NODE, "tasks", Kind::A), Answer::NxDomain);
    }

    #[test]
    fn a_replica_sees_only_the_services_it_shares_a_network_with() {
        let d = dir();
        let ui = IpAddr::V4("10.88.0.5".parse().unwrap());
        let api_not_ready = IpAddr::V4("10.88.0.3".parse().unwrap());
        assert_eq!(d.answer(ui, "web", Kind::A), a(&["10.96.0.2"]));
        assert_eq!(d.answer(ui, "api", Kind::A), Answer::NxDomain);
        assert_eq!(d.answer(ui, "tasks.api", Kind::A), Answer::NxDomain);
        assert_eq!(d.answer(api_not_ready, "web", Kind::A), a(&["10.96.0.2"]));
        assert_eq!(d.answer(api_not_ready, "ui", Kind::A), Answer::NxDomain);
    }

    #[test]
    fn other_names_are_forwarded_and_unknown_cluster_names_do_not_exist() {
        let d = dir();
        for name in ["example.com", "deb.debian.org.", "api.backend.example"] {
            assert_eq!(d.answer(NODE, name, Kind::A), Answer::Forward, "{name}");
        }
        for name in ["nothing", "nothing.dash", "dash", "a.b.dash", "api.x.dash"] {
            assert_eq!(d.answer(NODE, name, Kind::A), Answer::NxDomain, "{name}");
        }
    }
}

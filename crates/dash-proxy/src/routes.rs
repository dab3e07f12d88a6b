//! proxy routes: the pure route table. Given a request's host and path it names the route and the
//! upstreams that serve it; it does no I/O.
//!
//! Matching, in order:
//! 1. the host picks a virtual host: an exact host (`web.local`) beats the longest matching
//!    wildcard (`*.example.com` matches `a.example.com` and `a.b.example.com`, not
//!    `example.com`), which beats the catch-all `*` (or an empty host). Hosts compare
//!    case-insensitively, without port or trailing dot.
//! 2. within that host, the longest `path_prefix` that matches on a segment boundary wins: `/api`
//!    matches `/api` and `/api/x`, never `/apix`; a prefix ending in `/` matches what starts with it.
//!
//! A host that matches but has no matching prefix is a miss: there is no fallback to a wildcard, as
//! with nginx server blocks or Envoy virtual hosts. Of two routes with the same host and prefix,
//! the first one given wins.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::balance::UpstreamState;
use crate::stats::RouteCounters;

/// One way into a service: requests for `host` under `path_prefix` go to the service's replicas on
/// container port `port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub service: String,
    /// Exact (`web.local`), wildcard (`*.example.com`) or catch-all (`*`).
    pub host: String,
    /// `/` matches everything.
    pub path_prefix: String,
    /// Remove `path_prefix` from the path before forwarding (`/api/x` → `/x`, `/api` → `/`).
    pub strip_prefix: bool,
    /// The container port; the upstream addresses already carry it, the proxy only reports it.
    pub port: u16,
}

/// One replica that serves a route, at its replica ip and container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub replica: String,
    pub addr: SocketAddr,
}

/// A route with its upstreams, as found by [`RouteTable::lookup`].
#[derive(Debug)]
pub struct RouteEntry {
    route: Route,
    /// Normalized: lowercase, no trailing dot.
    host: Box<str>,
    /// Normalized: starts with `/`.
    prefix: Box<str>,
    pub(crate) upstreams: Vec<Arc<UpstreamState>>,
    pub(crate) counters: Arc<RouteCounters>,
}

impl RouteEntry {
    pub fn route(&self) -> &Route {
        &self.route
    }

    pub fn upstreams(&self) -> impl ExactSizeIterator<Item = &Upstream> + '_ {
        self.upstreams.iter().map(|u| &u.upstream)
    }

    /// The path prefix as matched: `path_prefix`, or `/` when it was empty.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self) -> (&str, &str, &str) {
        (&self.route.service, &self.host, &self.prefix)
    }
}

/// Why a lookup found no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No route has this host.
    Host,
    /// The host has routes, but none whose prefix matches the path.
    Path,
}

/// Every route the proxy serves, indexed by host. Built whole and swapped in whole.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
    /// Host → entry indices, longest prefix first.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// `.example.com` (from `*.example.com`) → entry indices, longest prefix first.
    wildcard: HashMap<Box<str>, Vec<usize>>,
    /// Routes for `*` or an empty host, longest prefix first.
    any: Vec<usize>,
}

impl RouteTable {
    /// Indexes `entries`; each route keeps its upstreams in the order given.
    pub fn new(entries: Vec<(Route, Vec<Upstream>)>) -> Self {
        let mut table = RouteTable::default();
        for (route, upstreams) in entries {
            let host: Box<str> = normalize_host(route.host.trim()).into();
            let prefix: Box<str> = normalize_prefix(&route.path_prefix).into();
            let index = table.entries.len();
            if host.is_empty() || &*host == "*" {
                table.any.push(index);
            } else if let Some(suffix) = host.strip_prefix('*') {
                table.wildcard.entry(suffix.into()).or_default().push(index);
            } else {
                table.exact.entry(host.clone()).or_default().push(index);
            }
            table.entries.push(RouteEntry {
                route,
                host,
                prefix,
                upstreams: upstreams
                    .into_iter()
                    .map(|u| Arc::new(UpstreamState::new(u)))
                    .collect(),
                counters: Arc::new(RouteCounters::default()),
            });
        }
        let entries = &table.entries;
        // Stable: of two equal prefixes the first route given stays first.
        let by_prefix = |list: &mut Vec<usize>| {
            list.sort_by_key(|&i| std::cmp::Reverse(entries[i].prefix.len()))
        };
        table.exact.values_mut().for_each(by_prefix);
        table.wildcard.values_mut().for_each(by_prefix);
        by_prefix(&mut table.any);
        table
    }

    /// The route for `host` (the Host header without port, any case) and `path`, if any.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&RouteEntry> {
        self.find(host, path).ok()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    pub(crate) fn find(&self, host: &str, path: &str) -> Result<&RouteEntry, Miss> {
        let host = normalize_host(host);
        let candidates = self
            .exact
            .get(&*host)
            .or_else(|| self.find_wildcard(&host))
            .or((!self.any.is_empty()).then_some(&self.any))
            .ok_or(Miss::Host)?;
        candidates
            .iter()
            .map(|&i| &self.entries[i])
            .find(|entry| prefix_matches(&entry.prefix, path))
            .ok_or(Miss::Path)
    }

    /// The longest wildcard suffix of `host`: for `a.b.example.com`, `.b.example.com` then
    /// `.example.com` then `.com`.
    fn find_wildcard(&self, host: &str) -> Option<&Vec<usize>> {
        if self.wildcard.is_empty() {
            return None;
        }
        host.char_indices()
            .filter(|&(i, c)| c == '.' && i > 0)
            .find_map(|(i, _)| self.wildcard.get(&host[i..]))
    }

    /// Carries counters and upstream state (in-flight requests, ejection, pooled connections)
    /// over from `old` for every route and upstream that is in both, so an update does not reset
    /// them.
    pub(crate) fn inherit(&mut self, old: &RouteTable) {
        if old.entries.is_empty() {
            return;
        }
        let by_key: HashMap<_, usize> = old
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key(), i))
            .collect();
        for entry in &mut self.entries {
            let Some(&index) = by_key.get(&entry.key()) else {
                continue;
            };
            let previous = &old.entries[index];
            entry.counters = Arc::clone(&previous.counters);
            for upstream in &mut entry.upstreams {
                if let Some(same) = previous
                    .upstreams
                    .iter()
                    .find(|p| p.upstream == upstream.upstream)
                {
                    *upstream = Arc::clone(same);
                }
            }
        }
    }
}

/// Lowercase, without a trailing dot; borrows unless the host has uppercase letters.
pub(crate) fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let prefix = prefix.trim();
    if prefix.starts_with('/') {
        prefix.to_owned()
    } else {
        format!("/{prefix}")
    }
}

/// `prefix` matches `path` on a segment boundary.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
    }
}

/// The path and query an upstream gets when its route strips `prefix` (which matched `path`):
/// always starting with `/`.
pub(crate) fn strip_path(prefix: &str, path: &str, query: Option<&str>) -> String {
    let rest = path.get(prefix.len()..).unwrap_or("");
    let mut out = String::with_capacity(rest.len() + query.map_or(0, |q| q.len() + 1) + 1);
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests;

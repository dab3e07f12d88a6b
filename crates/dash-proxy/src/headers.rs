//! proxy headers: what a request and a response lose and gain on the way through.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1: `Connection`, every header it names, `Keep-Alive`,
//! `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) stop here, except that an
//! upgrade keeps `Upgrade` and `Connection: upgrade`. Requests gain `X-Forwarded-For` (the
//! client's ip appended), `X-Forwarded-Proto: http`, `X-Forwarded-Host` and an RFC 7239
//! `Forwarded` element appended to any already there.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Version};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = header::FORWARDED;

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What the forwarding headers say about one client connection, worked out once per connection.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    /// The client ip as text, for `X-Forwarded-For`.
    ip: HeaderValue,
    /// `for=192.0.2.1` or `for="[2001:db8::1]"`.
    forwarded_for: String,
    /// The last host seen and its `Forwarded` element: a connection mostly asks for one host, so
    /// this saves building the element for every request.
    last: Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl ClientInfo {
    pub(crate) fn new(peer: SocketAddr) -> Self {
        let ip = peer.ip().to_canonical();
        let forwarded_for = match ip {
            IpAddr::V4(v4) => format!("for={v4}"),
            IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
        };
        ClientInfo {
            ip: HeaderValue::from_maybe_shared(Bytes::from(ip.to_string()))
                .expect("an ip address is a valid header value"),
            forwarded_for,
            last: Mutex::new(None),
        }
    }

    /// `for=…;proto=http;host=…` for a request to `host`.
    fn forwarded(&self, host: &HeaderValue) -> Option<HeaderValue> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((last_host, element)) = &*last
            && last_host == host
        {
            return Some(element.clone());
        }
        let element = forwarded_element(&self.forwarded_for, host.as_bytes())?;
        *last = Some((host.clone(), element.clone()));
        Some(element)
    }
}

fn forwarded_element(forwarded_for: &str, host: &[u8]) -> Option<HeaderValue> {
    let mut element = Vec::with_capacity(forwarded_for.len() + host.len() + 20);
    element.extend_from_slice(forwarded_for.as_bytes());
    element.extend_from_slice(b";proto=http;host=");
    if host.iter().all(|&b| is_tchar(b)) {
        element.extend_from_slice(host);
    } else {
        element.push(b'"');
        for &b in host {
            if b == b'"' || b == b'\\' {
                element.push(b'\\');
            }
            element.push(b);
        }
        element.push(b'"');
    }
    HeaderValue::from_maybe_shared(Bytes::from(element)).ok()
}

/// The host a request is for, port included: the URI's authority (HTTP/2, absolute-form) or else
/// the `Host` header.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        // Without any `user@`: that is no part of the host.
        Some(authority) => {
            let host = authority.as_str().rsplit('@').next().unwrap_or_default();
            HeaderValue::from_str(host).ok()
        }
        None => req.headers().get(header::HOST).cloned(),
    }
}

/// `web.local:8080` → `web.local`; `[::1]:8080` → `[::1]`.
pub(crate) fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rfind(':') {
        Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..colon],
        _ => host,
    }
}

/// An HTTP/1.1 request asking to switch protocols (WebSocket and the like).
pub(crate) fn wants_upgrade(headers: &HeaderMap, version: Version) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers; an upgrade keeps `Upgrade` and gets `Connection: upgrade`.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages have none: one pass over the names beats nine hashed removals.
    if !upgrade && !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // Headers named by `Connection` are hop-by-hop as well. Rare: only allocate when there are.
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| {
            !["close", "keep-alive", "upgrade"]
                .iter()
                .any(|k| t.eq_ignore_ascii_case(k))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Adds `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` for a request
/// from `client` to `host` (the Host header as sent, port included).
pub(crate) fn add_forwarding(headers: &mut HeaderMap, client: &ClientInfo, host: &HeaderValue) {
    append(headers, &X_FORWARDED_FOR, &client.ip);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    if let Some(element) = client.forwarded(host) {
        append(headers, &FORWARDED, &element);
    }
}

/// Sets `name` to its current values joined by `, ` with `ours` at the end.
fn append(headers: &mut HeaderMap, name: &HeaderName, ours: &HeaderValue) {
    if !headers.contains_key(name) {
        // The usual case: no copy, the value is shared.
        headers.insert(name.clone(), ours.clone());
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(name) {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ours.as_bytes());
    // Every part came from a valid header value; a failure here would only drop our addition.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(name.clone(), value);
    }
}

/// RFC 9110 token characters: these need no quotes in a `Forwarded` value.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn host_without_port_cases() {
        let cases = [
            ("web.local", "web.local"),
            ("web.local:8080", "web.local"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("10.0.0.1:80", "10.0.0.1"),
        ];
        for (host, want) in cases {
            assert_eq!(host_without_port(host), want);
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed_with_those_connection_names() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("proxy-authorization", "basic x"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut map, false);
        let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn upgrades_keep_upgrade_and_connection() {
        let mut map = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&map, Version::HTTP_11));
        assert!(!wants_upgrade(&map, Version::HTTP_10));
        remove_hop_by_hop(&mut map, true);
        assert_eq!(map["upgrade"], "websocket");
        assert_eq!(map["connection"], "upgrade");
        assert!(!wants_upgrade(
            &headers(&[("connection", "upgrade")]),
            Version::HTTP_11
        ));
    }

    #[test]
    fn forwarding_headers_append_to_what_came_in() {
        let client = ClientInfo::new("192.0.2.7:5000".parse().unwrap());
        let mut map = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("forwarded", "for=10.0.0.1"),
        ]);
        add_forwarding(&mut map, &client, &HeaderValue::from_static("web.local"));
        assert_eq!(map["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "web.local");
        assert_eq!(
            map["forwarded"],
            "for=10.0.0.1, for=192.0.2.7;proto=http;host=web.local"
        );

        // The cached element follows the host.
        let mut map = HeaderMap::new();
        add_forwarding(&mut map, &client, &HeaderValue::from_static("api.local"));
        assert_eq!(map["forwarded"], "for=192.0.2.7;proto=http;host=api.local");

        let client = ClientInfo::new("[2001:db8::1]:5000".parse().unwrap());
        let mut map = HeaderMap::new();
        add_forwarding(
            &mut map,
            &client,
            &HeaderValue::from_static("web.local:8080"),
        );
        assert_eq!(map["x-forwarded-for"], "2001:db8::1");
        assert_eq!(
            map["forwarded"],
            "for=\"[2001:db8::1]\";proto=http;host=\"web.local:8080\""
        );
    }
}

//! The DNS server: UDP and TCP on the addresses given (a node's gateway addresses, port 53),
//! cluster names answered from the [`Directory`], every other name forwarded to the upstream
//! resolvers (each answer cached for its TTL, at most [`CACHE_TTL_MAX`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dash_core::api::ServiceEndpoints;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The receive buffer asked for the UDP socket (the kernel doubles it for its bookkeeping).
const UDP_RECV_BUFFER: usize = 4 << 20;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::directory::{Answer, Directory, Kind};

/// The TTL of the cluster's own answers: they follow the state within a second.
pub const CLUSTER_TTL: u32 = 1;
/// The longest a forwarded answer is kept.
pub const CACHE_TTL_MAX: u32 = 300;
/// How long an upstream has to answer before the next one is asked.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);
/// At most this many forwarded answers are cached.
const CACHE_ENTRIES: usize = 4096;
/// A TCP client silent this long is let go.
const TCP_IDLE: Duration = Duration::from_secs(10);

type CacheKey = (String, u16, u16);

/// The server's state: the directory (replaced whole when the cluster changes), the
/// upstreams and the cache. Cheap to clone.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    directory: RwLock<Arc<Directory>>,
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<CacheKey, (Instant, Vec<u8>)>>,
}

impl Dns {
    /// A server forwarding to `upstreams` (tried in order), knowing no service yet.
    pub fn new(upstreams: Vec<SocketAddr>) -> Dns {
        Dns {
            inner: Arc::new(Inner {
                directory: RwLock::new(Arc::new(Directory::default())),
                upstreams,
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cluster's services from now on.
    pub fn set_endpoints(&self, endpoints: &[ServiceEndpoints]) {
        let d = Arc::new(Directory::new(endpoints));
        match self.inner.directory.write() {
            Ok(mut w) => *w = d,
            Err(poisoned) => *poisoned.into_inner() = d,
        }
    }

    fn directory(&self) -> Arc<Directory> {
        match self.inner.directory.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Answers on `socket` until `shutdown`.
    pub async fn serve_udp(self, socket: UdpSocket, mut shutdown: watch::Receiver<bool>) {
        // A burst of lookups (a thousand at once from one replica) must fit the socket's
        // queue: the kernel's default (rmem_default, 208 KiB) holds about 200 queries, and a
        // query dropped there is a resolver's 1-5 s retry (kubernetes#56903's stalls).
        // As root, past net.core.rmem_max (208 KiB on a default Debian); else up to it.
        if nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &UDP_RECV_BUFFER,
        )
        .is_err()
            && let Err(e) = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::RcvBuf,
                &UDP_RECV_BUFFER,
            )
        {
            tracing::warn!(error = %e, "dns: enlarging the receive buffer");
        }
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "dns: receiving");
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let (dns, socket, query) = (self.clone(), socket.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                if let Some(reply) = dns.respond(from.ip(), &query, false).await
                    && let Err(e) = socket.send_to(&reply, from).await
                {
                    tracing::debug!(error = %e, %from, "dns: answering");
                }
            });
        }
    }

    /// Answers the connections of `listener` until `shutdown`.
    pub async fn serve_tcp(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            let (stream, from) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "dns: accepting");
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let dns = self.clone();
            tokio::spawn(async move {
                if let Err(e) = dns.tcp_client(stream, from.ip()).await {
                    tracing::debug!(error = %e, %from, "dns: tcp client");
                }
            });
        }
    }

    async fn tcp_client(&self, mut stream: TcpStream, from: IpAddr) -> std::io::Result<()> {
        loop {
            let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
                Ok(Ok(len)) => len,
                // Idle, or the client closed: done.
                _ => return Ok(()),
            };
            let mut query = vec![0u8; usize::from(len)];
            stream.read_exact(&mut query).await?;
            if let Some(reply) = self.respond(from, &query, true).await {
                let len = u16::try_from(reply.len()).unwrap_or(u16::MAX);
                stream.write_u16(len).await?;
                stream.write_all(&reply[..usize::from(len)]).await?;
            }
        }
    }

    /// The reply to one query from `client` (None: not a DNS query at all, dropped).
    pub async fn respond(&self, client: IpAddr, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let msg = Message::from_vec(query).ok()?;
        if msg.message_type() != MessageType::Query {
            return None;
        }
        let Some(q) = msg.queries().first().filter(|_| msg.queries().len() == 1) else {
            return reply(&msg, None, ResponseCode::FormErr, &[]);
        };
        if msg.op_code() != OpCode::Query {
            return reply(&msg, Some(q), ResponseCode::NotImp, &[]);
        }
        let kind = if q.query_type() == RecordType::A {
            Kind::A
        } else {
            Kind::Other
        };
        let name = q.name().to_ascii();
        match self.directory().answer(client, &name, kind) {
            Answer::Records(ips) => {
                let records: Vec<Record> = ips
                    .into_iter()
                    .map(|ip| Record::from_rdata(q.name().clone(), CLUSTER_TTL, RData::A(A(ip))))
                    .collect();
                reply(&msg, Some(q), ResponseCode::NoError, &records)
            }
            Answer::NxDomain => reply(&msg, Some(q), ResponseCode::NXDomain, &[]),
            Answer::Forward => match self.forward(&msg, q, query, tcp).await {
                Some(answer) => Some(answer),
                None => reply(&msg, Some(q), ResponseCode::ServFail, &[]),
            },
        }
    }

    /// The upstreams' answer to `query` (with the client's id), from the cache when fresh.
    async fn forward(&self, msg: &Message, q: &Query, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let key: CacheKey = (
            q.name().to_ascii().to_ascii_lowercase(),
            u16::from(q.query_type()),
            u16::from(q.query_class()),
        );
        let now = Instant::now();
        if let Some(mut cached) = self.cached(&key, now) {
            cached[..2].copy_from_slice(&msg.id().to_be_bytes());
            return Some(cached);
        }
        for upstream in &self.inner.upstreams {
            let asked = if tcp {
                ask_tcp(*upstream, query).await
            } else {
                match ask_udp(*upstream, query).await {
                    // Too long for UDP: the whole answer over TCP.
                    Some(a) if Message::from_vec(&a).is_ok_and(|m| m.truncated()) => {
                        ask_tcp(*upstream, query).await.or(Some(a))
                    }
                    other => other,
                }
            };
            let Some(mut answer) = asked else {
                continue;
            };
            let Ok(parsed) = Message::from_vec(&answer) else {
                continue;
            };
            if parsed.id() != msg.id() {
                continue;
            }
            // An answer without records (NXDOMAIN, empty) is kept for 5 s.
            let ttl = parsed
                .answers()
                .iter()
                .map(Record::ttl)
                .min()
                .unwrap_or(5)
                .min(CACHE_TTL_MAX);
            if ttl > 0 && !parsed.truncated() {
                self.keep(key, now + Duration::from_secs(u64::from(ttl)), &answer);
            }
            answer[..2].copy_from_slice(&msg.id().to_be_bytes());
            return Some(answer);
        }
        None
    }

    fn cached(&self, key: &CacheKey, now: Instant) -> Option<Vec<u8>> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|(expires, _)| *expires > now)
            .map(|(_, a)| a.clone())
    }

    fn keep(&self, key: CacheKey, expires: Instant, answer: &[u8]) {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, (e, _)| *e > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (expires, answer.to_vec()));
    }
}

/// A reply to `msg` with `code` and `answers`.
fn reply(
    msg: &Message,
    q: Option<&Query>,
    code: ResponseCode,
    answers: &[Record],
) -> Option<Vec<u8>> {
    let mut out = Message::new();
    out.set_id(msg.id())
        .set_message_type(MessageType::Response)
        .set_op_code(msg.op_code())
        .set_recursion_desired(msg.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(code != ResponseCode::ServFail)
        .set_response_code(code);
    if let Some(q) = q {
        out.add_query(q.clone());
    }
    out.add_answers(answers.iter().cloned());
    out.to_vec().ok()
}

async fn ask_udp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        stream.write_u16(query.len() as u16).await?;
        stream.write_all(query).await?;
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .ok()?
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hickory_proto::rr::Name;

    use super::*;

    fn query(id: u16, name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn endpoints() -> Vec<ServiceEndpoints> {
        vec![ServiceEndpoints {
            service: "api".into(),
            vip: Some("10.96.0.1".into()),
            networks: vec!["default".into()],
            ports: Vec::new(),
            ready: vec!["10.88.0.2".into(), "10.88.0.3".into()],
            members: vec!["10.88.0.2".into(), "10.88.0.3".into()],
        }]
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 88, 0, 2));

    fn a_records(reply: &[u8]) -> (ResponseCode, Vec<String>) {
        let m = Message::from_vec(reply).unwrap();
        let ips = m
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        (m.response_code(), ips)
    }

    #[tokio::test]
    async fn cluster_names_are_answered_with_the_querys_id() {
        let dns = Dns::new(Vec::new());
        dns.set_endpoints(&endpoints());
        let r = dns
            .respond(CLIENT, &query(7, "api.dash.", RecordType::A), false)
            .await
            .unwrap();
        assert_eq!(Message::from_vec(&r).unwrap().id(), 7);
        assert_eq!(
            a_records(&r),
            (ResponseCode::NoError, vec!["10.96.0.1".into()])
        );
        let r = dns
            .respond(CLIENT, &query(8, "tasks.api.", RecordType::A), true)
            .await
            .unwrap();
        assert_eq!(
            a_records(&r),
            (
                ResponseCode::NoError,
                vec!["10.88.0.2".into(), "10.88.0.3".into()]
            )
        );
        let r = dns
            .respond(CLIENT, &query(9, "api.", RecordType::AAAA), false)
            .await
            .unwrap();
        assert_eq!(a_records(&r), (ResponseCode::NoError, vec![]));
        let r = dns
            .respond(CLIENT, &query(10, "nothing.dash.", RecordType::A), false)
            .await
            .unwrap();
        assert_eq!(a_records(&r).0, ResponseCode::NXDomain);
        // No upstream: a name outside the cluster fails, saying so.
        let r = dns
            .respond(CLIENT, &query(11, "example.com.", RecordType::A), false)
            .await
            .unwrap();
        assert_eq!(a_records(&r).0, ResponseCode::ServFail);
        // Not DNS at all: dropped.
        assert!(dns.respond(CLIENT, b"hello", false).await.is_none());
    }

    #[tokio::test]
    async fn other_names_go_upstream_once_then_come_from_the_cache() {
        // An upstream on loopback that answers every A question with 192.0.2.1 and counts.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let q = Message::from_vec(&buf[..n]).unwrap();
                let rec = Record::from_rdata(
                    q.queries()[0].name().clone(),
                    60,
                    RData::A(A("192.0.2.1".parse().unwrap())),
                );
                let r = reply(&q, q.queries().first(), ResponseCode::NoError, &[rec]).unwrap();
                upstream.send_to(&r, from).await.unwrap();
            }
        });
        let dns = Dns::new(vec![addr]);
        for id in [21, 22] {
            let r = dns
                .respond(CLIENT, &query(id, "www.example.com.", RecordType::A), false)
                .await
                .unwrap();
            assert_eq!(Message::from_vec(&r).unwrap().id(), id);
            assert_eq!(
                a_records(&r),
                (ResponseCode::NoError, vec!["192.0.2.1".into()])
            );
        }
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

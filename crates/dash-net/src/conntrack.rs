//! Connection tracking: forgetting the flows of replicas that left.
//!
//! A flow through a virtual IP is dnat'd once, when its first packet is seen; its conntrack
//! entry then leads every later packet of the flow to the same replica. For TCP that is what
//! is wanted (a connection stays with its replica), but a UDP "flow" is only the same addresses
//! and ports: a client that keeps its socket would keep reaching a replica that left the maps
//! until the entry times out. So when a UDP backend leaves a virtual IP, its UDP entries are
//! deleted and the next packet is balanced again; and when a replica is detached, every entry
//! from or to its address is deleted (nothing of it stays in the table).
//!
//! The kernel's ctnetlink interface over a netlink socket (`NETLINK_NETFILTER`): one dump of the
//! IPv4 table, then one delete per matching entry, naming it by its original tuple as the dump
//! gave it. Blocking calls; the table is the calling thread's network namespace's.
//!
//! ```text
//! nlmsghdr (16) | nfgenmsg (4: family, version, res_id) | attributes (len u16, type u16, value, pad to 4)
//!   CTA_TUPLE_ORIG / CTA_TUPLE_REPLY (nested)
//!     CTA_TUPLE_IP (nested): CTA_IP_V4_SRC, CTA_IP_V4_DST (4 bytes each)
//!     CTA_TUPLE_PROTO (nested): CTA_PROTO_NUM (u8), CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT (u16 BE)
//! ```

use std::net::Ipv4Addr;

/// Netfilter's netlink subsystem of conntrack, and its messages.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// IP protocol numbers.
pub(crate) const UDP: u8 = 17;

/// One entry of the table, as much of it as the filters need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flow {
    /// The CTA_TUPLE_ORIG attribute's value as the kernel gave it (names the entry to delete).
    orig: Vec<u8>,
    pub(crate) protocol: u8,
    pub(crate) orig_src: Ipv4Addr,
    /// Who answers: the replica, for a flow dnat'd to it or sent to it directly.
    pub(crate) reply_src: Ipv4Addr,
    pub(crate) reply_src_port: u16,
}

/// Which entries to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Forget {
    /// UDP flows answered by one of these `(address, port)`: backends that left a map.
    UdpAnsweredBy(Vec<(Ipv4Addr, u16)>),
    /// Every flow from or to one of these addresses: replicas that are gone.
    Touching(Vec<Ipv4Addr>),
}

impl Forget {
    pub(crate) fn matches(&self, f: &Flow) -> bool {
        match self {
            Forget::UdpAnsweredBy(backends) => {
                f.protocol == UDP && backends.contains(&(f.reply_src, f.reply_src_port))
            }
            Forget::Touching(addrs) => addrs.contains(&f.orig_src) || addrs.contains(&f.reply_src),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Forget::UdpAnsweredBy(b) => b.is_empty(),
            Forget::Touching(a) => a.is_empty(),
        }
    }
}

/// Deletes the IPv4 entries `which` names from the calling thread's netns; returns how many
/// went (an entry that expired meanwhile counts as gone, not as an error).
pub(crate) fn forget(which: &Forget) -> std::io::Result<usize> {
    if which.is_empty() {
        return Ok(0);
    }
    let sock = Socket::open()?;
    sock.send(&request(1, IPCTNL_MSG_CT_GET, libc::NLM_F_DUMP as u16, &[]))?;
    let mut doomed = Vec::new();
    sock.receive(1, |kind, body| {
        if kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
            && let Some(flow) = parse_flow(body)
            && which.matches(&flow)
        {
            doomed.push(flow);
        }
    })?;
    let mut gone = 0;
    for (i, flow) in doomed.iter().enumerate() {
        let seq = 2 + i as u32;
        let mut attr = Vec::with_capacity(4 + flow.orig.len());
        put_attr(&mut attr, CTA_TUPLE_ORIG | NLA_F_NESTED, &flow.orig);
        sock.send(&request(
            seq,
            IPCTNL_MSG_CT_DELETE,
            libc::NLM_F_ACK as u16,
            &attr,
        ))?;
        match sock.receive(seq, |_, _| {}) {
            Ok(()) => gone += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => gone += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

/// A ctnetlink request for IPv4: header, nfgenmsg, then `attrs`.
fn request(seq: u32, msg: u16, flags: u16, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg).to_ne_bytes());
    b.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | flags).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    b.extend_from_slice(attrs);
    b
}

fn put_attr(b: &mut Vec<u8>, kind: u16, value: &[u8]) {
    b.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(value);
    b.resize(b.len().next_multiple_of(4), 0);
}

/// The attributes in `b` as `(type without flags, value)`; stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, value))
    })
}

fn find(b: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(b).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// `(source address, protocol, source port)` of a CTA_TUPLE_* value.
fn tuple(b: &[u8]) -> Option<(Ipv4Addr, u8, u16)> {
    let src = find(find(b, CTA_TUPLE_IP)?, CTA_IP_V4_SRC)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(src).ok()?);
    let proto = find(b, CTA_TUPLE_PROTO)?;
    let num = *find(proto, CTA_PROTO_NUM)?.first()?;
    let port = find(proto, CTA_PROTO_SRC_PORT)
        .and_then(|p| <[u8; 2]>::try_from(p).ok())
        .map_or(0, u16::from_be_bytes);
    Some((src, num, port))
}

/// One entry from the body of a dump answer (after its nfgenmsg); `None` if it is not IPv4.
fn parse_flow(body: &[u8]) -> Option<Flow> {
    if body.first() != Some(&(libc::AF_INET as u8)) {
        return None;
    }
    let attrs = body.get(NFGENMSG_LEN..)?;
    let orig = find(attrs, CTA_TUPLE_ORIG)?;
    let (orig_src, protocol, _) = tuple(orig)?;
    let (reply_src, _, reply_src_port) = tuple(find(attrs, CTA_TUPLE_REPLY)?)?;
    Some(Flow {
        orig: orig.to_vec(),
        protocol,
        orig_src,
        reply_src,
        reply_src_port,
    })
}

/// A netlink socket of the netfilter family, bound (the kernel picks its port id).
struct Socket(netlink_sys::Socket);

impl Socket {
    fn open() -> std::io::Result<Socket> {
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        Ok(Socket(sock))
    }

    fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        self.0.send(msg, 0).map(drop)
    }

    /// Reads the answers to request `seq` until its end: the dump's DONE, or the ACK (an error
    /// message with errno 0). Each other message goes to `each(type, body)`. A non-zero errno
    /// is returned as the error. (The kernel answers every request it took, so this does not
    /// wait forever; callers run it on a blocking thread.)
    fn receive(&self, seq: u32, mut each: impl FnMut(u16, &[u8])) -> std::io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            self.0.recv(&mut buf, 0)?;
            let mut b = buf.as_slice();
            while b.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let kind = u16::from_ne_bytes([b[4], b[5]]);
                let got_seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < NLMSG_HDRLEN || len > b.len() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("netlink message of length {len} in {} bytes", b.len()),
                    ));
                }
                let body = &b[NLMSG_HDRLEN..len];
                b = &b[len.next_multiple_of(4).min(b.len())..];
                if got_seq != seq {
                    continue;
                }
                match i32::from(kind) {
                    libc::NLMSG_DONE => return Ok(()),
                    libc::NLMSG_ERROR => {
                        let errno = body
                            .get(..4)
                            .and_then(|e| <[u8; 4]>::try_from(e).ok())
                            .map_or(0, i32::from_ne_bytes);
                        return if errno == 0 {
                            Ok(())
                        } else {
                            Err(std::io::Error::from_raw_os_error(-errno))
                        };
                    }
                    _ => each(kind, body),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "conntrack_test.rs"]
mod tests;

use std::net::Ipv4Addr;

use super::*;

/// A CTA_TUPLE_* value: addresses, protocol and ports.
fn tuple_value(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut ip = Vec::new();
    put_attr(&mut ip, CTA_IP_V4_SRC, &src);
    put_attr(&mut ip, 2, &dst);
    let mut p = Vec::new();
    put_attr(&mut p, CTA_PROTO_NUM, &[proto]);
    put_attr(&mut p, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
    put_attr(&mut p, 3, &dport.to_be_bytes());
    let mut t = Vec::new();
    put_attr(&mut t, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
    put_attr(&mut t, CTA_TUPLE_PROTO | NLA_F_NESTED, &p);
    t
}

/// The body of a dump answer: a client's UDP flow to a virtual IP, dnat'd to a replica.
fn dnat_body() -> (Vec<u8>, Vec<u8>) {
    let orig = tuple_value([10, 88, 0, 5], [10, 96, 0, 1], UDP, 40000, 53);
    let reply = tuple_value([10, 88, 0, 7], [10, 88, 0, 5], UDP, 5353, 40000);
    let mut body = vec![libc::AF_INET as u8, 0, 0, 0];
    put_attr(&mut body, CTA_TUPLE_ORIG | NLA_F_NESTED, &orig);
    put_attr(&mut body, CTA_TUPLE_REPLY | NLA_F_NESTED, &reply);
    // An attribute the parser does not know (CTA_STATUS), after the tuples.
    put_attr(&mut body, 3, &8u32.to_be_bytes());
    (body, orig)
}

#[test]
fn a_dumped_entry_is_read_with_its_original_tuple_kept_whole() {
    let (body, orig) = dnat_body();
    let flow = parse_flow(&body).unwrap();
    assert_eq!(
        flow,
        Flow {
            orig,
            protocol: UDP,
            orig_src: Ipv4Addr::new(10, 88, 0, 5),
            reply_src: Ipv4Addr::new(10, 88, 0, 7),
            reply_src_port: 5353,
        }
    );
}

#[test]
fn entries_of_other_families_or_cut_short_are_skipped() {
    let (mut body, _) = dnat_body();
    body[0] = libc::AF_INET6 as u8;
    assert_eq!(parse_flow(&body), None);
    let (body, _) = dnat_body();
    for cut in [0, 3, 4, 10, 30] {
        assert_eq!(parse_flow(&body[..cut]), None, "cut at {cut}");
    }
    // A length that runs past the end stops the walk instead of reading beyond it.
    let mut bad = vec![libc::AF_INET as u8, 0, 0, 0];
    bad.extend_from_slice(&200u16.to_ne_bytes());
    bad.extend_from_slice(&(CTA_TUPLE_ORIG | NLA_F_NESTED).to_ne_bytes());
    assert_eq!(parse_flow(&bad), None);
}

#[test]
fn filters_pick_udp_backends_that_left_or_every_flow_of_a_gone_replica() {
    let (body, _) = dnat_body();
    let flow = parse_flow(&body).unwrap();
    let replica = Ipv4Addr::new(10, 88, 0, 7);
    let client = Ipv4Addr::new(10, 88, 0, 5);
    assert!(Forget::UdpAnsweredBy(vec![(replica, 5353)]).matches(&flow));
    // Another port of the same replica stays (it is still a backend there).
    assert!(!Forget::UdpAnsweredBy(vec![(replica, 53)]).matches(&flow));
    let tcp = Flow {
        protocol: 6,
        ..flow.clone()
    };
    assert!(!Forget::UdpAnsweredBy(vec![(replica, 5353)]).matches(&tcp));
    // A gone replica: flows it answered and flows it started.
    assert!(Forget::Touching(vec![replica]).matches(&tcp));
    assert!(Forget::Touching(vec![client]).matches(&flow));
    assert!(!Forget::Touching(vec![Ipv4Addr::new(10, 88, 0, 9)]).matches(&flow));
}

#[test]
fn a_delete_request_names_the_entry_by_its_original_tuple() {
    let (_, orig) = dnat_body();
    let mut attr = Vec::new();
    put_attr(&mut attr, CTA_TUPLE_ORIG | NLA_F_NESTED, &orig);
    let msg = request(7, IPCTNL_MSG_CT_DELETE, libc::NLM_F_ACK as u16, &attr);
    assert_eq!(
        u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize,
        msg.len()
    );
    assert_eq!(u16::from_ne_bytes(msg[4..6].try_into().unwrap()), 0x0102);
    let flags = u16::from_ne_bytes(msg[6..8].try_into().unwrap());
    assert_eq!(flags, (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16);
    assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 7);
    assert_eq!(msg[16], libc::AF_INET as u8);
    let (kind, value) = attrs(&msg[20..]).next().unwrap();
    assert_eq!((kind, value), (CTA_TUPLE_ORIG, orig.as_slice()));
}

#[test]
fn nothing_to_forget_opens_no_socket() {
    assert_eq!(forget(&Forget::Touching(vec![])).unwrap(), 0);
    assert_eq!(forget(&Forget::UdpAnsweredBy(vec![])).unwrap(), 0);
}

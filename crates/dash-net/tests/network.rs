//! sysnet against the real kernel: bridge, netns, veth, nft, and traffic through them.

mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::{
    Fixture, HostState, NsUdpClient, assert_nothing_left, conntrack_entries, http_get, ns_wget,
    published_rules, run, tally, udp_echo, wait_http,
};
use dash_net::{NetError, Network, PortMapping, Protocol, VipPort, host_veth_name};
use port_mapping::{tcp, udp};

#[path = "common/port_mapping.rs"]
mod port_mapping;

fn at(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn local(port: u16) -> SocketAddr {
    at(std::net::Ipv4Addr::LOCALHOST, port)
}

/// What the host has before the test, the test's fixture number `n`, and its network.
async fn start(n: u8) -> (HostState, Fixture, Network) {
    let before = HostState::snapshot();
    let fx = Fixture::new(n);
    let net = Network::init(fx.cfg.clone())
        .await
        .expect("init the network");
    (before, fx, net)
}

/// The output of `ip <args>` inside `netns`.
fn ns_ip(netns: &std::path::Path, args: &[&str]) -> String {
    let net = format!("--net={}", netns.display());
    run(&[&["nsenter", net.as_str(), "ip"], args].concat())
}

/// The host-side veth names of `atts`.
fn veths(atts: &[dash_net::Attachment]) -> Vec<String> {
    atts.iter().map(|a| a.host_veth.clone()).collect()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test]
async fn two_replicas_talk_and_leave_nothing_behind() {
    let (before, mut fx, net) = start(1).await;
    assert_eq!(net.gateway(), fx.ip(1));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let route_localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", fx.cfg.bridge);
    assert_eq!(std::fs::read_to_string(route_localnet).unwrap().trim(), "1");

    tracing::info!("--- attach a and b");
    let (a, b) = (fx.replica("rep-a"), fx.replica("rep-b"));
    let (ip_a, ip_b) = (fx.ip(2), fx.ip(3));
    let ports_a = [tcp(27011, 8080), udp(27011, 9000)];
    let ports_b = [tcp(27012, 8080)];
    let t = Instant::now();
    let att_a = net.attach(&a, ip_a, &ports_a, "svc-a").await.unwrap();
    let attach_a = t.elapsed();
    let t = Instant::now();
    let att_b = net.attach(&b, ip_b, &ports_b, "svc-b").await.unwrap();
    let attach_b = t.elapsed();
    assert_eq!(att_a.netns_path, net.netns_path(&a));
    assert_eq!(att_a.host_veth, host_veth_name(&a));
    assert_eq!(att_a.ip, ip_a);

    let addrs = ns_ip(&att_a.netns_path, &["-br", "addr"]);
    assert!(addrs.contains(&format!("{ip_a}/24")), "{addrs}");
    let ns_route = ns_ip(&att_a.netns_path, &["route"]);
    assert!(
        ns_route.contains(&format!("default via {}", fx.ip(1))),
        "{ns_route}"
    );

    fx.start_httpd(&att_a.netns_path, "hello from a");
    fx.start_httpd(&att_b.netns_path, "hello from b");
    fx.start_udp_echo(&att_a.netns_path);

    tracing::info!("--- host → replica ip");
    wait_http(at(ip_a, 8080), "hello from a");
    wait_http(at(ip_b, 8080), "hello from b");

    tracing::info!("--- replica → replica by ip");
    for (from, to, want) in [
        (&att_a, ip_b, "hello from b"),
        (&att_b, ip_a, "hello from a"),
    ] {
        let url = format!("http://{to}:8080/");
        assert_eq!(ns_wget(&from.netns_path, &url).unwrap(), want, "{url}");
    }

    tracing::info!("--- 127.0.0.1:published on the host");
    assert_eq!(http_get(local(27011)).unwrap().trim(), "hello from a");
    assert_eq!(http_get(local(27012)).unwrap().trim(), "hello from b");
    assert_eq!(
        udp_echo(local(27011), "ping over udp").unwrap(),
        "ping over udp"
    );

    tracing::info!("--- hairpin: a replica through the gateway's published ports");
    let gw = fx.ip(1);
    for (port, want) in [(27011, "hello from a"), (27012, "hello from b")] {
        let url = format!("http://{gw}:{port}/");
        assert_eq!(ns_wget(&att_a.netns_path, &url).unwrap(), want, "{url}");
    }

    tracing::info!("--- detach both");
    fx.stop_listeners();
    let t = Instant::now();
    net.detach(&a, ip_a, &ports_a).await.unwrap();
    let detach_a = t.elapsed();
    let t = Instant::now();
    net.detach(&b, ip_b, &ports_b).await.unwrap();
    let detach_b = t.elapsed();
    assert!(
        http_get(local(27011)).is_err(),
        "published port still answers after detach"
    );
    let rules = published_rules(&fx);
    assert!(!rules.contains("dnat"), "{rules}");

    // The kernel frees the unpinned netns and its veth pair in the background: how long?
    let t = Instant::now();
    while run(&["ip", "-br", "link"]).contains(&att_a.host_veth)
        || run(&["ip", "-br", "link"]).contains(&att_b.host_veth)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "veths not freed after detach"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let veth_gone = t.elapsed();
    eprintln!(
        "attach {} / {} (first / second), detach {} / {}, veths freed by the kernel {} after detach",
        ms(attach_a),
        ms(attach_b),
        ms(detach_a),
        ms(detach_b),
        ms(veth_gone)
    );

    tracing::info!("--- teardown");
    net.teardown().await.unwrap();
    assert_nothing_left(&fx, &before, &[att_a.host_veth, att_b.host_veth]);
}

#[tokio::test]
async fn attach_detach_and_teardown_are_idempotent() {
    let (before, mut fx, net) = start(2).await;
    // init again on the same bridge and table: reused.
    let net2 = Network::init(fx.cfg.clone()).await.unwrap();
    drop(net2);

    let a = fx.replica("idem-a");
    let ip = fx.ip(7);
    let ports = [tcp(27021, 8080)];
    let att = net.attach(&a, ip, &ports, "idem").await.unwrap();
    fx.start_httpd(&att.netns_path, "still here");
    wait_http(local(27021), "still here");

    tracing::info!("--- re-attach keeps the netns and the running listener");
    let again = net.attach(&a, ip, &ports, "idem").await.unwrap();
    assert_eq!(again, att);
    wait_http(at(ip, 8080), "still here");
    wait_http(local(27021), "still here");

    tracing::info!("--- re-init (daemon restart) keeps published ports");
    drop(net);
    let net = Network::init(fx.cfg.clone()).await.unwrap();
    wait_http(local(27021), "still here");
    net.attach(&a, ip, &ports, "idem").await.unwrap();
    wait_http(local(27021), "still here");

    tracing::info!("--- a re-attach with a new address moves the replica");
    let ip2 = fx.ip(8);
    net.detach(&a, ip, &ports).await.unwrap_or(());
    fx.stop_listeners();
    net.detach(&a, ip, &ports).await.unwrap();
    net.detach(&a, ip, &ports).await.unwrap();

    tracing::info!("--- attach right after detach: the old veth may still be there");
    let att = net.attach(&a, ip2, &ports, "idem").await.unwrap();
    fx.start_httpd(&att.netns_path, "moved");
    wait_http(at(ip2, 8080), "moved");
    wait_http(local(27021), "moved");
    let addrs = ns_ip(&att.netns_path, &["-br", "-4", "addr", "show", "eth0"]);
    assert!(
        addrs.contains(&format!("{ip2}/24")) && !addrs.contains(&format!("{ip}/")),
        "{addrs}"
    );
    fx.stop_listeners();

    tracing::info!("--- teardown with a replica still attached, twice");
    net.teardown().await.unwrap();
    net.teardown().await.unwrap();
    net.detach(&a, ip2, &ports).await.unwrap();
    assert_nothing_left(&fx, &before, &[att.host_veth]);
}

#[tokio::test]
async fn a_port_of_another_service_is_refused_and_kept() {
    let (before, mut fx, net) = start(3).await;
    let (a, b) = (fx.replica("own-a"), fx.replica("own-b"));
    let (ip_a, ip_b) = (fx.ip(2), fx.ip(3));
    let att_a = net
        .attach(&a, ip_a, &[tcp(27031, 8080)], "svc-a")
        .await
        .unwrap();
    fx.start_httpd(&att_a.netns_path, "owner");
    wait_http(local(27031), "owner");
    let rules_before = published_rules(&fx);

    tracing::info!("--- b of another service asks for a's port");
    let err = net
        .attach(&b, ip_b, &[tcp(27032, 8080), tcp(27031, 8080)], "svc-b")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::PortOwned { host_port: 27031, owner, .. } if owner == "svc-a"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("tcp port 27031") && msg.contains("service svc-a"),
        "{msg}"
    );
    tracing::info!("--- nothing changed: no netns for b, not even its other port");
    assert!(!net.netns_path(&b).exists());
    assert_eq!(published_rules(&fx), rules_before);
    wait_http(local(27031), "owner");

    tracing::info!("--- detaching b leaves a's port alone");
    net.detach(&b, ip_b, &[tcp(27031, 8080), tcp(27032, 8080)])
        .await
        .unwrap();
    assert_eq!(published_rules(&fx), rules_before);
    wait_http(local(27031), "owner");

    tracing::info!("--- bad input is refused before anything happens");
    let bad = net.attach(&b, fx.ip(1), &[], "svc-b").await.unwrap_err();
    assert!(matches!(bad, NetError::Address { .. }), "{bad:?}");
    let bad = net.attach("../etc", ip_b, &[], "svc-b").await.unwrap_err();
    assert!(matches!(bad, NetError::ReplicaId { .. }), "{bad:?}");
    let bad = net.attach(&b, ip_b, &[], "svc \"b").await.unwrap_err();
    assert!(matches!(bad, NetError::Owner { .. }), "{bad:?}");
    assert!(!net.netns_path(&b).exists());

    fx.stop_listeners();
    net.detach(&a, ip_a, &[tcp(27031, 8080)]).await.unwrap();
    net.teardown().await.unwrap();
    assert_nothing_left(&fx, &before, &[att_a.host_veth, host_veth_name(&b)]);
}

#[tokio::test]
async fn traffic_from_and_to_another_machine() {
    let (before, mut fx, net) = start(4).await;
    let a = fx.replica("ext-a");
    let ip_a = fx.ip(2);
    let att = net
        .attach(&a, ip_a, &[tcp(27041, 8080)], "ext")
        .await
        .unwrap();
    fx.start_whoami(&att.netns_path);
    let (outside_ns, outside_ip, host_ip) = {
        let o = fx.make_outside();
        (o.netns.clone(), o.ip, o.host_ip)
    };
    fx.start_whoami(&outside_ns);
    wait_http(at(ip_a, 8080), "whoami");
    wait_http(at(outside_ip, 8080), "whoami");

    tracing::info!("--- replica → other machine: masqueraded to the host's address there");
    let seen = ns_wget(
        &att.netns_path,
        &format!("http://{outside_ip}:8080/cgi-bin/ip"),
    )
    .unwrap();
    assert_eq!(seen, host_ip.to_string());

    tracing::info!("--- other machine → host:published (prerouting dnat), source kept");
    let seen = ns_wget(&outside_ns, &format!("http://{host_ip}:27041/cgi-bin/ip")).unwrap();
    assert_eq!(seen, outside_ip.to_string());

    tracing::info!(
        "--- replica → host:published via the gateway: hairpin, masqueraded to the gateway"
    );
    let seen = ns_wget(
        &att.netns_path,
        &format!("http://{}:27041/cgi-bin/ip", fx.ip(1)),
    )
    .unwrap();
    assert_eq!(seen, fx.ip(1).to_string());

    tracing::info!("--- host 127.0.0.1:published: masqueraded to the gateway");
    let seen = ns_wget_host("http://127.0.0.1:27041/cgi-bin/ip");
    assert_eq!(seen, fx.ip(1).to_string());

    fx.stop_listeners();
    fx.remove_outside();
    net.detach(&a, ip_a, &[tcp(27041, 8080)]).await.unwrap();
    net.teardown().await.unwrap();
    assert_nothing_left(
        &fx,
        &before,
        &[att.host_veth, format!("{}o", fx.cfg.bridge)],
    );
}

/// Attaches `names` (service `web`) at .2, .3, .. on `port` → 8080, each httpd answering its name.
async fn attach_web(
    fx: &mut Fixture,
    net: &Network,
    names: &[&str],
    port: u16,
) -> Vec<dash_net::Attachment> {
    let mut atts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let replica = fx.replica(name);
        let ip = fx.ip(2 + i as u8);
        let att = net
            .attach(&replica, ip, &[tcp(port, 8080)], "web")
            .await
            .unwrap_or_else(|e| panic!("attach {name}: {e}"));
        fx.start_httpd(&att.netns_path, name);
        wait_http(at(ip, 8080), name);
        atts.push(att);
    }
    atts
}

/// The names that answered `GET /` over `n` new connections to 127.0.0.1:`port`; none may fail.
fn local_tally(port: u16, n: usize) -> Vec<String> {
    let seen = tally(n, || http_get(local(port)).map_err(|e| e.to_string()));
    eprintln!("127.0.0.1:{port} × {n}: {seen:?}");
    seen.into_keys().collect()
}

/// The names that answered `GET url` over `n` new connections from `netns`; none may fail.
fn ns_tally(netns: &std::path::Path, url: &str, n: usize) -> Vec<String> {
    tally(n, || ns_wget(netns, url)).into_keys().collect()
}

#[tokio::test]
async fn replicas_of_one_service_share_a_published_port() {
    let (before, mut fx, net) = start(5).await;
    let port = 27051;
    let all = ["lb-1", "lb-2", "lb-3"];
    let atts = attach_web(&mut fx, &net, &all, port).await;

    tracing::info!("--- 127.0.0.1:published (output): round-robin over the 3");
    assert_eq!(local_tally(port, 9), all);

    tracing::info!("--- other machine → host:published (prerouting): round-robin over the 3");
    let (outside_ns, host_ip) = {
        let o = fx.make_outside();
        (o.netns.clone(), o.host_ip)
    };
    let outside_url = format!("http://{host_ip}:{port}/");
    assert_eq!(ns_tally(&outside_ns, &outside_url, 9), all);

    tracing::info!("--- hairpin: a replica through the gateway reaches its siblings and itself");
    let url = format!("http://{}:{port}/", fx.ip(1));
    assert_eq!(ns_tally(&atts[0].netns_path, &url, 9), all);

    tracing::info!("--- re-attach is idempotent: same rules");
    let rules = published_rules(&fx);
    assert_eq!(rules.matches("dnat").count(), 1, "{rules}");
    net.attach("lb-2", fx.ip(3), &[tcp(port, 8080)], "web")
        .await
        .unwrap();
    assert_eq!(published_rules(&fx), rules);

    tracing::info!("--- another service on the same port: refused, nothing changed");
    let other = fx.replica("other-1");
    let err = net
        .attach(&other, fx.ip(9), &[tcp(port, 8080)], "api")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::PortOwned { host_port, owner, replicas: 3, .. } if *host_port == port && owner == "web"),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("port {port}")), "{err}");
    assert!(!net.netns_path(&other).exists());
    assert_eq!(published_rules(&fx), rules);

    tracing::info!("--- detach lb-2 (its httpd still runs): the others answer, every time");
    net.detach("lb-2", fx.ip(3), &[tcp(port, 8080)])
        .await
        .unwrap();
    assert_eq!(local_tally(port, 12), ["lb-1", "lb-3"]);
    assert_eq!(ns_tally(&outside_ns, &outside_url, 6), ["lb-1", "lb-3"]);

    tracing::info!("--- the last backend gone: the rule goes, and the port is free");
    net.detach("lb-1", fx.ip(2), &[tcp(port, 8080)])
        .await
        .unwrap();
    assert_eq!(local_tally(port, 4), ["lb-3"]);
    net.detach("lb-3", fx.ip(4), &[tcp(port, 8080)])
        .await
        .unwrap();
    let rules = published_rules(&fx);
    assert!(!rules.contains("dnat"), "{rules}");
    assert!(http_get(local(port)).is_err(), "answers with no backend");
    net.attach(&other, fx.ip(9), &[tcp(port, 8080)], "api")
        .await
        .unwrap();
    net.detach(&other, fx.ip(9), &[tcp(port, 8080)])
        .await
        .unwrap();

    fx.stop_listeners();
    fx.remove_outside();
    net.teardown().await.unwrap();
    let mut veths = veths(&atts);
    veths.extend([host_veth_name(&other), format!("{}o", fx.cfg.bridge)]);
    assert_nothing_left(&fx, &before, &veths);
}

#[tokio::test]
async fn a_restarted_daemon_keeps_every_backend() {
    let (before, mut fx, net) = start(6).await;
    let port = 27061;
    let all = ["rs-1", "rs-2", "rs-3"];
    let atts = attach_web(&mut fx, &net, &all, port).await;
    assert_eq!(local_tally(port, 9), all);
    let rules = published_rules(&fx);

    tracing::info!("--- restart: drop the Network, init again with the same config");
    drop(net);
    let net = Network::init(fx.cfg.clone()).await.unwrap();
    assert_eq!(published_rules(&fx), rules);
    assert_eq!(local_tally(port, 9), all, "before any re-attach");

    tracing::info!("--- re-attach rs-1 only: rs-2 and rs-3 stay backends");
    net.attach("rs-1", fx.ip(2), &[tcp(port, 8080)], "web")
        .await
        .unwrap();
    assert_eq!(published_rules(&fx), rules);
    assert_eq!(local_tally(port, 9), all);

    tracing::info!("--- another service is still refused: the owner was read back");
    let err = net
        .attach("api-1", fx.ip(9), &[tcp(port, 8080)], "api")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::PortOwned { owner, .. } if owner == "web"),
        "{err:?}"
    );

    tracing::info!("--- detach rs-3, not re-attached yet: found by its address");
    net.detach("rs-3", fx.ip(4), &[tcp(port, 8080)])
        .await
        .unwrap();
    assert_eq!(local_tally(port, 8), ["rs-1", "rs-2"]);

    tracing::info!("--- re-attach the rest, twice: same rules");
    net.attach("rs-2", fx.ip(3), &[tcp(port, 8080)], "web")
        .await
        .unwrap();
    let rules = published_rules(&fx);
    net.attach("rs-2", fx.ip(3), &[tcp(port, 8080)], "web")
        .await
        .unwrap();
    assert_eq!(published_rules(&fx), rules);
    assert_eq!(local_tally(port, 8), ["rs-1", "rs-2"]);

    fx.stop_listeners();
    for (i, name) in ["rs-1", "rs-2"].iter().enumerate() {
        net.detach(name, fx.ip(2 + i as u8), &[tcp(port, 8080)])
            .await
            .unwrap();
    }
    net.teardown().await.unwrap();
    assert_nothing_left(&fx, &before, &veths(&atts));
}

#[tokio::test]
async fn a_udp_flow_follows_its_virtual_ip_when_the_backend_leaves_and_no_entry_outlives_a_replica()
{
    let (before, mut fx, net) = start(7).await;
    let (a, b, client) = (
        fx.replica("udp-a"),
        fx.replica("udp-b"),
        fx.replica("udp-c"),
    );
    let (ip_a, ip_b, ip_c) = (fx.ip(2), fx.ip(3), fx.ip(4));
    let mut atts = Vec::new();
    for (name, ip) in [(&a, ip_a), (&b, ip_b), (&client, ip_c)] {
        atts.push(net.attach(name, ip, &[], "udp").await.unwrap());
    }
    fx.start_udp_echo_tagged(&atts[0].netns_path, "a:");
    fx.start_udp_echo_tagged(&atts[1].netns_path, "b:");
    let vip = std::net::Ipv4Addr::new(10, 212, 7, 1);
    let port = |backends: Vec<std::net::Ipv4Addr>| VipPort {
        vip,
        protocol: Protocol::Udp,
        port: 9000,
        backends,
    };
    net.set_vips(&[port(vec![ip_a])]).await.unwrap();
    let udp = NsUdpClient::new(&atts[2].netns_path);
    let to = at(vip, 9000);
    assert_eq!(udp.ask(to, "1").unwrap(), "a:1");
    assert_eq!(udp.ask(to, "2").unwrap(), "a:2");

    tracing::info!("--- a leaves the map (still running, as a draining replica does)");
    net.set_vips(&[port(vec![ip_b])]).await.unwrap();
    // The same socket, the same flow: its entry was deleted, so it is balanced again.
    assert_eq!(udp.ask(to, "3").unwrap(), "b:3");
    assert!(
        conntrack_entries(ip_a).is_empty(),
        "{:?}",
        conntrack_entries(ip_a)
    );

    tracing::info!("--- the client replica goes: nothing of it stays in the table");
    assert!(!conntrack_entries(ip_c).is_empty(), "the flow is tracked");
    drop(udp);
    fx.stop_listeners();
    net.detach(&client, ip_c, &[]).await.unwrap();
    assert!(
        conntrack_entries(ip_c).is_empty(),
        "{:?}",
        conntrack_entries(ip_c)
    );

    net.set_vips(&[]).await.unwrap();
    for (name, ip) in [(&a, ip_a), (&b, ip_b)] {
        net.detach(name, ip, &[]).await.unwrap();
    }
    net.teardown().await.unwrap();
    assert_nothing_left(&fx, &before, &veths(&atts));
}

/// `GET url` from the host with busybox wget.
fn ns_wget_host(url: &str) -> String {
    run(&["timeout", "5", "busybox", "wget", "-q", "-O", "-", url])
        .trim()
        .to_string()
}

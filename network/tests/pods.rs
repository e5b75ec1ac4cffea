//! Two pods on a bridge: addresses, reachability, teardown leaves nothing behind.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

use common::*;
use network::Network;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_host_each_other_and_gateway() {
    require_root!();
    let fx = Fixture::new(1);
    let net = Network::open(fx.config(), fx.db.clone())
        .await
        .expect("open");
    fx.pin("a");
    fx.pin("b");
    let (ns_a, ns_b) = (fx.netns("a"), fx.netns("b"));

    let t = Instant::now();
    let a = net.setup_pod("pod-a", &ns_a, &[]).await.expect("setup a");
    let setup_a = t.elapsed();
    let b = net.setup_pod("pod-b", &ns_b, &[]).await.expect("setup b");
    println!("setup_pod: {setup_a:?} (first), pods {a:?} {b:?}");
    assert_ne!(a.ip, b.ip);
    assert_eq!(a.prefix_len, 24);
    assert_eq!(a.gateway.to_string(), "10.199.1.1");
    assert!(a.ip.to_string().starts_with("10.199.1."));
    assert_eq!(a.interface, "eth0");
    assert!(a.host_veth.len() <= 15);
    assert_eq!(net.pod_ip("pod-a").expect("pod_ip"), Some(a.ip));

    // A listener inside pod A, reached from the host and from pod B.
    let listener = network::run_in_netns(&ns_a, move || TcpListener::bind((a.ip, 8080)))
        .expect("enter a")
        .expect("bind in a");
    let server_a = serve(listener, "hello from a", 2);
    let addr_a = SocketAddr::from((a.ip, 8080));
    assert_eq!(fetch(addr_a).expect("host -> a"), "hello from a");
    let from_b = network::run_in_netns(&ns_b, move || fetch(addr_a)).expect("enter b");
    assert_eq!(from_b.expect("b -> a"), "hello from a");

    // The gateway answers: a host listener on the gateway address, reached from pod A.
    let gw = TcpListener::bind((a.gateway, 0)).expect("bind gateway");
    let gw_addr = gw.local_addr().expect("addr");
    let server_gw = serve(gw, "hello from host", 1);
    let from_a = network::run_in_netns(&ns_a, move || fetch(gw_addr)).expect("enter a");
    assert_eq!(from_a.expect("a -> gateway"), "hello from host");
    server_a.join().expect("server a");
    server_gw.join().expect("server gw");

    // Inside: eth0 up with the configured MTU, lo up.
    let (eth0, lo) =
        network::run_in_netns(&ns_a, || (link_flags_mtu("eth0"), link_flags_mtu("lo")))
            .expect("enter a");
    let (eth0_flags, eth0_mtu) = eth0.expect("eth0 inside");
    assert_eq!(eth0_mtu, 1500);
    assert_ne!(eth0_flags & libc::IFF_UP, 0);
    assert_ne!(lo.expect("lo inside").0 & libc::IFF_UP, 0);

    // Teardown, twice; then the namespaces, twice.
    let t = Instant::now();
    net.teardown_pod("pod-a", Some(&ns_a))
        .await
        .expect("teardown a");
    let teardown_a = t.elapsed();
    let t = Instant::now();
    network::release_namespaces(&fx.pod_dir("a")).expect("release a");
    let release_a = t.elapsed();
    println!("teardown_pod: {teardown_a:?}, release_namespaces: {release_a:?}");
    net.teardown_pod("pod-a", Some(&ns_a))
        .await
        .expect("teardown a again");
    net.teardown_pod("pod-a", None)
        .await
        .expect("teardown a without netns");
    network::release_namespaces(&fx.pod_dir("a")).expect("release a again");
    net.teardown_pod("pod-b", None).await.expect("teardown b");
    network::release_namespaces(&fx.pod_dir("b")).expect("release b");
    net.teardown_pod("never-existed", None)
        .await
        .expect("teardown unknown");

    assert!(wait_link_gone(&a.host_veth), "veth {} left", a.host_veth);
    assert!(wait_link_gone(&b.host_veth), "veth {} left", b.host_veth);
    assert_eq!(mounts_under(fx.dir.path()), Vec::<String>::new());
    assert!(!fx.netns("a").exists());
    assert_eq!(net.pod_ip("pod-a").expect("pod_ip"), None);
    assert_eq!(net.pod_ip("pod-b").expect("pod_ip"), None);
    assert!(!nft_table(&fx.bridge).contains("corral pod"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_setup_leaves_nothing() {
    require_root!();
    let fx = Fixture::new(5);
    let net = Network::open(fx.config(), fx.db.clone())
        .await
        .expect("open");
    // Not a network namespace: an ordinary file.
    let bogus = fx.dir.path().join("not-a-netns");
    std::fs::write(&bogus, "").expect("write");
    let err = net
        .setup_pod("pod-x", &bogus, &[])
        .await
        .expect_err("must fail");
    println!("expected failure: {err}");
    assert_eq!(err.kind(), network::ErrorKind::NotFound);
    assert_eq!(net.pod_ip("pod-x").expect("pod_ip"), None);
    assert!(!std::path::Path::new("/sys/class/net")
        .join(network_veth("pod-x"))
        .exists());

    // A pod whose setup succeeded cannot be set up twice; the first stays intact.
    fx.pin("y");
    let y = net
        .setup_pod("pod-y", &fx.netns("y"), &[])
        .await
        .expect("setup y");
    let err = net
        .setup_pod("pod-y", &fx.netns("y"), &[])
        .await
        .expect_err("twice");
    assert_eq!(err.kind(), network::ErrorKind::AlreadyExists);
    assert_eq!(net.pod_ip("pod-y").expect("pod_ip"), Some(y.ip));
    net.teardown_pod("pod-y", Some(&fx.netns("y")))
        .await
        .expect("teardown");
}

fn network_veth(pod_id: &str) -> String {
    // Mirrors the crate's naming: "corral" + 8 hex digits of FNV-1a of the pod id.
    let h = pod_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("corral{h:08x}")
}

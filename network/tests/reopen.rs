//! Reopening with the same database keeps allocations; a pod CIDR from kubelet applies to
//! new pods only. Also prints setup/teardown timings over a few pods.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::*;
use network::Network;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_allocations_and_pod_cidr_applies_to_new_pods() {
    require_root!();
    let fx = Fixture::new(3);
    fx.pin("a");
    let a = {
        let net = Network::open(fx.config(), fx.db.clone())
            .await
            .expect("open");
        net.setup_pod("pod-a", &fx.netns("a"), &[])
            .await
            .expect("setup a")
    };
    // A restart: a new Network over the same database and the same, still-present bridge.
    let net = Network::open(fx.config(), fx.db.clone())
        .await
        .expect("reopen");
    assert_eq!(net.pod_ip("pod-a").expect("pod_ip"), Some(a.ip));
    fx.pin("b");
    let b = net
        .setup_pod("pod-b", &fx.netns("b"), &[])
        .await
        .expect("setup b");
    assert_ne!(a.ip, b.ip);

    // kubelet's pod CIDR: new pods come from it and are reachable; old ones keep theirs.
    net.set_pod_cidr("10.199.103.0/24")
        .await
        .expect("set_pod_cidr");
    net.set_pod_cidr("10.199.103.0/24")
        .await
        .expect("set_pod_cidr again");
    assert!(net.set_pod_cidr("nonsense").await.is_err());
    fx.pin("c");
    let c = net
        .setup_pod("pod-c", &fx.netns("c"), &[])
        .await
        .expect("setup c");
    assert_eq!(c.ip.to_string(), "10.199.103.2");
    assert_eq!(c.gateway.to_string(), "10.199.103.1");
    assert_eq!(net.pod_ip("pod-a").expect("pod_ip"), Some(a.ip));
    let listener = network::run_in_netns(&fx.netns("c"), move || TcpListener::bind((c.ip, 8080)))
        .expect("enter")
        .expect("bind");
    let server = serve(listener, "hello from c", 2);
    assert_eq!(
        fetch(SocketAddr::from((c.ip, 8080))).expect("host -> c"),
        "hello from c"
    );
    // Pod a (old range) reaches pod c (new range) through the gateway.
    let from_a = network::run_in_netns(&fx.netns("a"), move || {
        fetch(SocketAddr::from((c.ip, 8080)))
    })
    .expect("enter");
    assert_eq!(from_a.expect("a -> c"), "hello from c");
    server.join().expect("server");
    let table = nft_table(&fx.bridge);
    assert!(
        table.contains("10.199.3.0/24") && table.contains("10.199.103.0/24"),
        "{table}"
    );

    for pod in ["a", "b", "c"] {
        net.teardown_pod(&format!("pod-{pod}"), Some(&fx.netns(pod)))
            .await
            .expect("teardown");
        network::release_namespaces(&fx.pod_dir(pod)).expect("release");
        assert_eq!(net.pod_ip(&format!("pod-{pod}")).expect("pod_ip"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timings() {
    require_root!();
    let fx = Fixture::new(6);
    let net = Network::open(fx.config(), fx.db.clone())
        .await
        .expect("open");
    let (mut pin, mut setup, mut teardown, mut release) = (vec![], vec![], vec![], vec![]);
    for i in 0..20 {
        let name = format!("p{i}");
        let t = Instant::now();
        fx.pin(&name);
        pin.push(t.elapsed());
        let t = Instant::now();
        net.setup_pod(&name, &fx.netns(&name), &[])
            .await
            .expect("setup");
        setup.push(t.elapsed());
    }
    for i in 0..20 {
        let name = format!("p{i}");
        let t = Instant::now();
        net.teardown_pod(&name, Some(&fx.netns(&name)))
            .await
            .expect("teardown");
        teardown.push(t.elapsed());
        let t = Instant::now();
        network::release_namespaces(&fx.pod_dir(&name)).expect("release");
        release.push(t.elapsed());
    }
    let show = |what: &str, v: &Vec<Duration>| {
        let max = v.iter().max().copied().unwrap_or_default();
        println!(
            "{what}: median {:?}, max {max:?} over {}",
            median(v.clone()),
            v.len()
        );
    };
    show("pin_namespaces", &pin);
    show("setup_pod", &setup);
    show("teardown_pod", &teardown);
    show("release_namespaces", &release);
}

//! Host ports: DNAT from the host's loopback (and any local address) to a pod.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use common::*;
use network::{Network, PortMapping, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_on_loopback_reaches_the_pod() {
    require_root!();
    let fx = Fixture::new(2);
    let net = Network::open(fx.config(), fx.db.clone())
        .await
        .expect("open");
    fx.pin("a");
    let ns = fx.netns("a");
    let ports = [
        PortMapping {
            protocol: Protocol::Tcp,
            container_port: 8080,
            host_port: 18081,
            host_ip: Some("127.0.0.1".parse().expect("ip")),
        },
        PortMapping {
            protocol: Protocol::Tcp,
            container_port: 8080,
            host_port: 18082,
            host_ip: None,
        },
        PortMapping {
            protocol: Protocol::Udp,
            container_port: 53,
            host_port: 18053,
            host_ip: None,
        },
    ];
    let pod = net.setup_pod("pod-a", &ns, &ports).await.expect("setup");
    let table = nft_table(&fx.bridge);
    println!("{table}");
    assert_eq!(table.matches("corral pod pod-a").count(), 3, "{table}");

    let listener = network::run_in_netns(&ns, || TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8080)))
        .expect("enter")
        .expect("bind in pod");
    let server = serve(listener, "hello via hostport", 3);
    let via_lo = fetch(SocketAddr::from(([127, 0, 0, 1], 18081)));
    assert_eq!(via_lo.expect("127.0.0.1:18081"), "hello via hostport");
    let via_lo_any = fetch(SocketAddr::from(([127, 0, 0, 1], 18082)));
    assert_eq!(via_lo_any.expect("127.0.0.1:18082"), "hello via hostport");
    // The mapping without host_ip answers on the host's other addresses too.
    let via_gw = fetch(SocketAddr::from((pod.gateway, 18082)));
    assert_eq!(via_gw.expect("gateway:18082"), "hello via hostport");
    server.join().expect("server");

    net.teardown_pod("pod-a", Some(&ns))
        .await
        .expect("teardown");
    assert!(!nft_table(&fx.bridge).contains("corral pod"));
    // The rules are gone: nothing listens on the host's 18081.
    assert!(fetch(SocketAddr::from(([127, 0, 0, 1], 18081))).is_err());
    net.teardown_pod("pod-a", Some(&ns))
        .await
        .expect("teardown twice");
    network::release_namespaces(&fx.pod_dir("a")).expect("release");
    assert!(wait_link_gone(&pod.host_veth));
}

//! CNI plugin mode end to end: a real corrald with `[network] mode = "cni"`, Debian's
//! containernetworking-plugins (bridge, host-local, portmap, ptp, bandwidth in
//! /usr/lib/cni), and small shell plugins for what those can't show (1.1's STATUS and GC,
//! failures). Bridges `crtcn*`, subnets 10.233.0.0/16 (bridge) and 10.234.0.0/16 (ptp);
//! host-local keeps its addresses in /var/lib/cni/networks/corral-e2e-cn*, which
//! hack/check-leaks checks.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use e2e::client::Cri;
use e2e::daemon::Daemon;
use e2e::skip::have_root;

const PLUGINS: &str = "/usr/lib/cni";

/// A test's CNI world: its conf dir, a bin dir for fake plugins (searched before Debian's),
/// and the bridge the bridge plugin makes, deleted when the test ends.
struct World {
    dir: tempfile::TempDir,
    bridges: Vec<String>,
}

impl World {
    fn new(bridges: &[&str]) -> Result<World> {
        let dir = tempfile::Builder::new()
            .prefix("corral-e2e-cni-")
            .tempdir()?;
        std::fs::create_dir(dir.path().join("net.d"))?;
        std::fs::create_dir(dir.path().join("bin"))?;
        Ok(World {
            dir,
            bridges: bridges.iter().map(|b| b.to_string()).collect(),
        })
    }
    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }
    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The daemon's `[network]` table.
    fn daemon_config(&self) -> String {
        format!(
            "[network]\nmode = \"cni\"\nconf_dir = {:?}\nbin_dirs = [{:?}, {PLUGINS:?}]\n",
            self.conf_dir().display().to_string(),
            self.bin().display().to_string(),
        )
    }
    fn write_conf(&self, name: &str, text: &str) -> Result<()> {
        // Written aside and renamed in, as installers do: the watcher never sees half a file.
        let tmp = self.dir.path().join(format!("{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.conf_dir().join(name))?;
        Ok(())
    }
    /// A fake plugin: a shell script in the bin dir.
    fn plugin(&self, name: &str, body: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.bin().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for bridge in &self.bridges {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", bridge])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// bridge + host-local (+ portmap), what most clusters start from.
fn bridge_conflist(net: &str, bridge: &str, subnet: &str, extra_plugins: &str) -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "{net}", "plugins": [
            {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false,
              "hairpinMode": true,
              "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]],
                        "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
            {{"type": "portmap", "capabilities": {{"portMappings": true}}}}{extra_plugins}
        ]}}"#
    )
}

async fn start(test: &str, world: &World) -> Result<Option<(Daemon, Cri)>> {
    if !have_root(test) {
        return Ok(None);
    }
    if !Path::new(PLUGINS).join("bridge").exists() {
        eprintln!("skipping {test}: no CNI plugins in {PLUGINS} (hack/install-deps)");
        return Ok(None);
    }
    let d = Daemon::start(&world.daemon_config()).await?;
    let c = d.client().await?;
    Ok(Some((d, c)))
}

fn pod_config(name: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        linux: Some(proto::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

async fn run(c: &mut Cri, config: proto::PodSandboxConfig) -> Result<String, tonic::Status> {
    c.run_pod(&config).await
}

async fn status(c: &mut Cri, id: &str) -> Result<(proto::PodSandboxStatus, serde_json::Value)> {
    let r = c
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(r.info.get("info").context("info")?)?;
    Ok((r.status.context("status")?, info))
}

async fn pod_ip(c: &mut Cri, id: &str) -> Result<Ipv4Addr> {
    let (s, _) = status(c, id).await?;
    Ok(s.network.context("network")?.ip.parse()?)
}

async fn netns(c: &mut Cri, id: &str) -> Result<PathBuf> {
    let (_, info) = status(c, id).await?;
    Ok(PathBuf::from(
        info["namespaces"]["network"].as_str().unwrap_or_default(),
    ))
}

async fn stop(c: &mut Cri, id: &str) -> Result<(), tonic::Status> {
    c.stop_pod(id).await
}

async fn remove(c: &mut Cri, id: &str) -> Result<(), tonic::Status> {
    c.remove_pod(id).await
}

async fn stop_remove(c: &mut Cri, id: &str) -> Result<()> {
    stop(c, id).await?;
    remove(c, id).await?;
    Ok(())
}

/// (ready, reason, message) of NetworkReady.
async fn network_ready(c: &mut Cri) -> Result<(bool, String, String)> {
    let s = c
        .runtime
        .status(proto::StatusRequest { verbose: false })
        .await?
        .into_inner();
    let cond = s
        .status
        .context("status")?
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .context("no NetworkReady")?;
    Ok((cond.status, cond.reason, cond.message))
}

async fn wait_ready(c: &mut Cri, want: bool) -> Result<(bool, String, String)> {
    for _ in 0..100 {
        let r = network_ready(c).await?;
        if r.0 == want {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "NetworkReady never became {want}: {:?}",
        network_ready(c).await?
    )
}

/// host-local's record of `ip` in network `net`.
fn ipam_file(net: &str, ip: Ipv4Addr) -> PathBuf {
    PathBuf::from(format!("/var/lib/cni/networks/{net}/{ip}"))
}

fn serve_in_pod(netns: &Path, port: u16, reply: &'static str) -> Result<()> {
    let listener = network::run_in_netns(netns, move || TcpListener::bind(("0.0.0.0", port)))??;
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(16) {
            let mut s = s;
            let _ = s.write_all(reply.as_bytes());
        }
    });
    Ok(())
}

fn fetch(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn sh(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn bridge_ports(bridge: &str) -> String {
    sh(&["ip", "-o", "link", "show", "master", bridge]).unwrap_or_default()
}

fn host_ip() -> Result<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
    s.connect("192.0.2.1:9")?;
    match s.local_addr()?.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => bail!("no IPv4 host address"),
    }
}

fn cache_entries(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.root.join("cni/results"))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_network_not_ready_until_a_config_then_pods_reach_each_other_and_host_ports(
) -> Result<()> {
    let (net, br) = ("corral-e2e-cn1", "crtcn1");
    let world = World::new(&[br])?;
    let Some((d, mut c)) = start("cni bridge", &world).await? else {
        return Ok(());
    };
    // Empty conf dir: not ready, with a reason kubelet shows; pods refused.
    let (_, reason, message) = wait_ready(&mut c, false).await?;
    assert_eq!(reason, "NetworkPluginNotReady");
    assert!(message.contains("no valid network config"), "{message}");
    let err = run(&mut c, pod_config("early"))
        .await
        .expect_err("not ready");
    assert!(err.message().contains("not ready"), "{}", err.message());

    world.write_conf(
        "10-bridge.conflist",
        &bridge_conflist(net, br, "10.233.1.0/24", ""),
    )?;
    wait_ready(&mut c, true).await?;

    let mut a_cfg = pod_config("a");
    a_cfg.port_mappings = vec![proto::PortMapping {
        protocol: proto::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: 18233,
        host_ip: String::new(),
    }];
    let a = run(&mut c, a_cfg).await?;
    let b = run(&mut c, pod_config("b")).await?;
    let result = async {
        let (ip_a, ip_b) = (pod_ip(&mut c, &a).await?, pod_ip(&mut c, &b).await?);
        for ip in [ip_a, ip_b] {
            assert_eq!(ip.octets()[..3], [10, 233, 1], "{ip}");
            assert!(
                ipam_file(net, ip).exists(),
                "host-local has no record of {ip}"
            );
        }
        assert_ne!(ip_a, ip_b);
        let (ns_a, ns_b) = (netns(&mut c, &a).await?, netns(&mut c, &b).await?);
        let (_, info) = status(&mut c, &a).await?;
        assert_eq!(info["network"]["mode"], "cni");
        // The pod's files: its own address in /etc/hosts.
        let hosts = std::fs::read_to_string(d.state.join("pods").join(&a[..16]).join("hosts"))?;
        assert!(hosts.contains(&format!("{ip_a}\ta-host")), "{hosts}");
        // lo is up inside (the runtime's job in CNI mode).
        let lo = network::run_in_netns(&ns_a, || TcpListener::bind(("127.0.0.1", 0)).map(|_| ()))?;
        lo?;

        serve_in_pod(&ns_a, 8080, "from-a")?;
        // host → pod
        assert_eq!(fetch(SocketAddr::new(ip_a.into(), 8080))?, "from-a");
        // pod → pod, from b's namespace
        let got = network::run_in_netns(&ns_b, move || fetch(SocketAddr::new(ip_a.into(), 8080)))??;
        assert_eq!(got, "from-a");
        // hostPort through portmap: the host's address, and 127.0.0.1.
        assert_eq!(fetch(SocketAddr::new(host_ip()?.into(), 18233))?, "from-a");
        assert_eq!(
            fetch(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 18233))?,
            "from-a"
        );
        assert_eq!(cache_entries(&d).len(), 2);

        stop_remove(&mut c, &a).await?;
        stop_remove(&mut c, &b).await?;
        for ip in [ip_a, ip_b] {
            assert!(
                !ipam_file(net, ip).exists(),
                "{ip} still allocated after DEL"
            );
        }
        assert!(cache_entries(&d).is_empty(), "{:?}", cache_entries(&d));
        assert!(
            TcpStream::connect_timeout(
                &SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 18233),
                Duration::from_millis(500)
            )
            .is_err(),
            "host port still forwarded"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!("{}", d.log_tail(40));
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptp_network_kindnet_shape() -> Result<()> {
    let net = "corral-e2e-cn2";
    let world = World::new(&["crtcn2"])?;
    let Some((_d, mut c)) = start("cni ptp", &world).await? else {
        return Ok(());
    };
    // A single-plugin .conf at 0.3.1, as older installers write.
    world.write_conf(
        "10-ptp.conf",
        &format!(
            r#"{{"cniVersion": "0.3.1", "name": "{net}", "type": "ptp", "mtu": 1460,
                "ipam": {{"type": "host-local", "subnet": "10.234.2.0/24",
                          "routes": [{{"dst": "0.0.0.0/0"}}]}}}}"#
        ),
    )?;
    wait_ready(&mut c, true).await?;
    let a = run(&mut c, pod_config("p")).await?;
    let ip = pod_ip(&mut c, &a).await?;
    assert_eq!(ip.octets()[..3], [10, 234, 2], "{ip}");
    let ns = netns(&mut c, &a).await?;
    serve_in_pod(&ns, 8081, "from-ptp")?;
    assert_eq!(fetch(SocketAddr::new(ip.into(), 8081))?, "from-ptp");
    stop_remove(&mut c, &a).await?;
    assert!(!ipam_file(net, ip).exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_uses_the_cache_after_a_crash_an_edit_and_a_removal() -> Result<()> {
    let (net, br) = ("corral-e2e-cn3", "crtcn3");
    // The bridge plugin gives one bridge one range: the edited config names another.
    let world = World::new(&[br, "crtcn3b"])?;
    let Some((mut d, mut c)) = start("cni del from cache", &world).await? else {
        return Ok(());
    };
    world.write_conf(
        "10-a.conflist",
        &bridge_conflist(net, br, "10.233.3.0/24", ""),
    )?;
    wait_ready(&mut c, true).await?;

    // kill -9 and restart: the DEL still has the ADD's config and result.
    let a = run(&mut c, pod_config("crash")).await?;
    let ip_a = pod_ip(&mut c, &a).await?;
    d.restart().await?;
    let mut c = d.client().await?;
    assert_eq!(
        pod_ip(&mut c, &a).await?,
        ip_a,
        "address lost across the restart"
    );
    stop_remove(&mut c, &a).await?;
    assert!(
        !ipam_file(net, ip_a).exists(),
        "DEL after restart left {ip_a}"
    );

    // The conflist edited (another network name and range): the old pod is DELeted
    // from its own network, new pods get the new one.
    let b = run(&mut c, pod_config("edit")).await?;
    let ip_b = pod_ip(&mut c, &b).await?;
    let net2 = "corral-e2e-cn3b";
    world.write_conf(
        "10-a.conflist",
        &bridge_conflist(net2, "crtcn3b", "10.233.103.0/24", ""),
    )?;
    let mut new_ip = None;
    for _ in 0..100 {
        // The watcher picks the edit up; a pod made meanwhile may still get the old one.
        let id = run(&mut c, pod_config("after-edit")).await?;
        let ip = pod_ip(&mut c, &id).await?;
        stop_remove(&mut c, &id).await?;
        if ip.octets()[2] == 103 {
            new_ip = Some(ip);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_ip = new_ip.context("the edited config was never used")?;
    assert!(!ipam_file(net2, new_ip).exists());
    stop_remove(&mut c, &b).await?;
    assert!(
        !ipam_file(net, ip_b).exists(),
        "DEL after an edit left {ip_b}"
    );

    // The config removed: not ready, and a pod made before still gets its DEL.
    let e = run(&mut c, pod_config("removed")).await?;
    let ip_e = pod_ip(&mut c, &e).await?;
    std::fs::remove_file(world.conf_dir().join("10-a.conflist"))?;
    wait_ready(&mut c, false).await?;
    stop_remove(&mut c, &e).await?;
    assert!(
        !ipam_file(net, ip_e).exists() && !ipam_file(net2, ip_e).exists(),
        "DEL after removal left {ip_e}"
    );
    assert!(cache_entries(&d).is_empty(), "{:?}", cache_entries(&d));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_add_leaves_nothing() -> Result<()> {
    let (net, br) = ("corral-e2e-cn4", "crtcn4");
    let world = World::new(&[br])?;
    let Some((d, mut c)) = start("cni failed add", &world).await? else {
        return Ok(());
    };
    // After bridge + host-local made a veth and took an address, the third plugin fails.
    world.plugin(
        "refuse",
        r#"cat >/dev/null
case "$CNI_COMMAND" in
ADD) echo "refuse: quota exceeded" >&2
     echo '{"cniVersion":"1.0.0","code":999,"msg":"no more pods here","details":"quota"}'; exit 1;;
esac
exit 0"#,
    )?;
    world.write_conf(
        "10-f.conflist",
        &bridge_conflist(net, br, "10.233.4.0/24", r#", {"type": "refuse"}"#),
    )?;
    wait_ready(&mut c, true).await?;
    let err = run(&mut c, pod_config("refused"))
        .await
        .expect_err("ADD fails");
    let msg = err.message();
    assert!(msg.contains("no more pods here"), "{msg}");
    assert!(msg.contains("quota exceeded"), "stderr missing: {msg}");
    let leftovers: Vec<_> = std::fs::read_dir(format!("/var/lib/cni/networks/{net}"))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("10."))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "host-local kept {leftovers:?}");
    let ports = bridge_ports(br);
    assert!(ports.is_empty(), "veth left on the bridge: {ports}");
    assert!(cache_entries(&d).is_empty(), "{:?}", cache_entries(&d));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_annotation_shapes_the_host_veth() -> Result<()> {
    let (net, br) = ("corral-e2e-cn5", "crtcn5");
    let world = World::new(&[br])?;
    let Some((_d, mut c)) = start("cni bandwidth", &world).await? else {
        return Ok(());
    };
    world.write_conf(
        "10-bw.conflist",
        &bridge_conflist(
            net,
            br,
            "10.233.5.0/24",
            r#", {"type": "bandwidth", "capabilities": {"bandwidth": true}}"#,
        ),
    )?;
    wait_ready(&mut c, true).await?;
    let mut cfg = pod_config("shaped");
    cfg.annotations = [(
        "kubernetes.io/ingress-bandwidth".to_string(),
        "10M".to_string(),
    )]
    .into();
    let a = run(&mut c, cfg).await?;
    let ports = bridge_ports(br);
    let veth = ports
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.trim_end_matches(':').split('@').next())
        .context("no veth on the bridge")?
        .to_string();
    let qdisc = sh(&["tc", "qdisc", "show", "dev", &veth])?;
    assert!(qdisc.contains("tbf"), "no tbf on {veth}: {qdisc}");
    assert!(qdisc.contains("10Mbit"), "{qdisc}");
    stop_remove(&mut c, &a).await?;
    Ok(())
}

/// A fake 1.1 plugin: logs each call, answers ADD with a fixed dual-stack result, fails
/// STATUS while `not-ready` exists and DEL while `del-fails` exists.
fn v11_plugin(world: &World) -> Result<()> {
    let dir = world.dir.path().display().to_string();
    world.plugin(
        "fake11",
        &format!(
            r#"conf=$(cat)
echo "$CNI_COMMAND ${{CNI_CONTAINERID:-}}" >> {dir}/calls
printf '%s' "$conf" > {dir}/last-$CNI_COMMAND.json
case "$CNI_COMMAND" in
ADD) echo '{{"cniVersion":"1.1.0","interfaces":[{{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}}],"ips":[{{"address":"fd00:cafe::7/64","interface":0}},{{"address":"10.233.9.7/24","interface":0}}]}}';;
STATUS) if [ -e {dir}/not-ready ]; then echo '{{"cniVersion":"1.1.0","code":50,"msg":"the agent is starting"}}'; exit 1; fi;;
DEL) if [ -e {dir}/del-fails ]; then echo '{{"cniVersion":"1.1.0","code":11,"msg":"datastore unreachable"}}'; exit 1; fi;;
esac
exit 0"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_1_1_status_gc_dual_stack_and_undeletable_pods() -> Result<()> {
    let world = World::new(&["crtcn6"])?;
    v11_plugin(&world)?;
    let Some((mut d, mut c)) = start("cni 1.1", &world).await? else {
        return Ok(());
    };
    std::fs::write(world.file("not-ready"), "")?;
    world.write_conf(
        "10-fake.conflist",
        r#"{"cniVersion": "1.1.0", "name": "corral-e2e-cn6", "plugins": [{"type": "fake11"}]}"#,
    )?;
    // STATUS feeds NetworkReady, with the plugin's message.
    for _ in 0..100 {
        let (ready, _, message) = network_ready(&mut c).await?;
        assert!(!ready);
        if message.contains("the agent is starting") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, message) = network_ready(&mut c).await?;
    assert!(message.contains("the agent is starting"), "{message}");
    std::fs::remove_file(world.file("not-ready"))?;
    // The STATUS answer is reused for a few seconds.
    for _ in 0..200 {
        if network_ready(&mut c).await?.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(network_ready(&mut c).await?.0);

    // Dual stack: IPv4 primary, IPv6 additional; CNI_ARGS and the capability args.
    let mut cfg = pod_config("dual");
    cfg.annotations = [("team".to_string(), "net".to_string())].into();
    let a = run(&mut c, cfg).await?;
    let (s, _) = status(&mut c, &a).await?;
    let n = s.network.context("network")?;
    assert_eq!(n.ip, "10.233.9.7");
    assert_eq!(
        n.additional_ips
            .iter()
            .map(|i| i.ip.as_str())
            .collect::<Vec<_>>(),
        ["fd00:cafe::7"]
    );
    let add: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.file("last-ADD.json"))?)?;
    assert_eq!(add["name"], "corral-e2e-cn6");
    assert_eq!(add["cniVersion"], "1.1.0");

    // A pod that is gone (an attachment no record owns): its entry is a copy of a's.
    let gone = "0123456789abcdef".repeat(4);
    let cache = d.root.join("cni/results");
    let entry = std::fs::read_to_string(cache.join(format!("corral-e2e-cn6-{a}-eth0")))?;
    std::fs::write(
        cache.join(format!("corral-e2e-cn6-{gone}-eth0")),
        entry.replace(&a, &gone),
    )?;
    // DEL keeps failing: stop reports it, the status says so, remove still works.
    std::fs::write(world.file("del-fails"), "")?;
    let err = stop(&mut c, &a).await.expect_err("DEL fails");
    assert!(
        err.message().contains("datastore unreachable"),
        "{}",
        err.message()
    );
    let (s, info) = status(&mut c, &a).await?;
    assert_eq!(s.state, proto::PodSandboxState::SandboxNotready as i32);
    assert!(
        info["network"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("datastore unreachable")),
        "{info}"
    );
    remove(&mut c, &a).await?;
    assert!(
        cache.join(format!("corral-e2e-cn6-{a}-eth0")).exists(),
        "the undeleted attachment must stay for a later DEL"
    );

    // A second pod keeps living across the restart; the start-up GC DELs the two
    // attachments whose pods are gone and tells the plugin which ones are valid.
    std::fs::remove_file(world.file("del-fails"))?;
    let live = run(&mut c, pod_config("live")).await?;
    std::fs::write(world.file("calls"), "")?;
    d.restart().await?;
    let mut c = d.client().await?;
    let calls = std::fs::read_to_string(world.file("calls"))?;
    assert!(calls.contains(&format!("DEL {gone}")), "{calls}");
    assert!(calls.contains(&format!("DEL {a}")), "{calls}");
    assert!(!calls.contains(&format!("DEL {live}")), "{calls}");
    assert!(calls.contains("GC"), "{calls}");
    let gc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.file("last-GC.json"))?)?;
    assert_eq!(
        gc["cni.dev/valid-attachments"],
        serde_json::json!([{"containerID": live, "ifname": "eth0"}])
    );
    let mut left = cache_entries(&d);
    left.sort();
    assert_eq!(left, [format!("corral-e2e-cn6-{live}-eth0")]);
    stop_remove(&mut c, &live).await?;
    assert!(cache_entries(&d).is_empty());
    Ok(())
}

//! Pod networking for Corral: pinned pod namespaces, a bridge with a veth pair per pod
//! over rtnetlink, IPAM persisted in the daemon's redb database, and NAT (masquerade and
//! host ports) in an nf_tables table of our own, written over netlink.
//!
//! Nothing here execs a program, forks, or calls `setns` on a tokio worker: namespace
//! work runs on short-lived dedicated threads (see [`netns`]).
//!
//! ```text
//! Network::open       bridge up with the gateway address, ip_forward, route_localnet, nat table
//! Network::setup_pod  IP (persisted first) → veth (peer born inside the pod netns as eth0)
//!                     → lo up, address, default route → DNAT rules; undone on failure
//! Network::teardown_pod  DNAT rules gone → address flushed → IP released (veth reaped with the netns)
//! ```
#![deny(unsafe_code)]

mod addr;
mod bridge;
pub mod cni;
mod dial;
mod error;
mod hostport;
mod ipam;
mod link;
mod nat;
mod netns;
mod nft;
mod route;
mod sysctl;
mod userns;
mod veth;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use dial::dial_loopback;
pub use error::{Error, ErrorKind, Result};
pub use netns::{
    pin_namespaces, release_namespaces, run_in_netns, NamespaceRequest, PinnedNamespaces,
};
pub use sysctl::{validate_sysctl, SysctlKind};
pub use userns::{map_text, with_user_namespace, IdMapping, UserNamespace};

use hostport::HostPort;
use ipam::{Ipam, Ipv4Net, PodRange};
use link::Netlink;

/// The name of the pod's interface inside its network namespace.
pub const POD_INTERFACE: &str = "eth0";

/// The `[network]` section of the daemon's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The bridge the pods' veths are attached to.
    pub bridge: String,
    /// The IPv4 range pods get addresses from, until kubelet sends a pod CIDR.
    pub subnet: String,
    /// The bridge's address and the pods' default gateway; the first host of `subnet`
    /// when unset.
    pub gateway: Option<Ipv4Addr>,
    /// MTU of the bridge and of both ends of each veth.
    pub mtu: u32,
    /// Masquerade traffic from pods that leaves the host.
    pub masquerade: bool,
    /// `native` (the bridge above), `cni` (plugins from `conf_dir`/`bin_dirs`), or `auto`:
    /// CNI when `conf_dir` holds a valid network config at start-up, else native.
    pub mode: NetworkMode,
    /// CNI network configs (`.conflist`, `.conf`, `.json`); the first valid one in lexical
    /// order is used, and the directory is watched.
    pub conf_dir: PathBuf,
    /// Where CNI plugin binaries are looked for, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// Seconds one CNI plugin may run before it is killed.
    pub plugin_timeout_seconds: u64,
}

/// Which pod network a node uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Native,
    Cni,
    #[default]
    Auto,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: "corral0".into(),
            subnet: "10.89.0.0/16".into(),
            gateway: None,
            mtu: 1500,
            masquerade: true,
            mode: NetworkMode::Auto,
            // kubelet's and containerd's defaults; Debian's containernetworking-plugins
            // install into /usr/lib/cni.
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            plugin_timeout_seconds: cni::PLUGIN_TIMEOUT.as_secs(),
        }
    }
}

/// Transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
            Protocol::Sctp => libc::IPPROTO_SCTP as u8,
        }
    }
}

/// A CRI port mapping: `host_ip:host_port` on the host → `container_port` in the pod.
/// A `host_port` of 0 means no host port (kubelet sends those for plain containerPorts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: Option<IpAddr>,
}

/// What a pod got from [`Network::setup_pod`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The interface inside the pod ("eth0").
    pub interface: String,
    /// The host end of the veth pair, on the bridge.
    pub host_veth: String,
}

/// The node's pod network: one bridge, its IPAM and its NAT rules.
pub struct Network {
    config: NetworkConfig,
    nl: Netlink,
    bridge_index: u32,
    ipam: Ipam,
    /// Where new pods' addresses come from.
    range: Mutex<PodRange>,
    /// Every range pods may hold addresses in (the configured one, then pod CIDRs), for
    /// the masquerade rules.
    subnets: tokio::sync::Mutex<Vec<Ipv4Net>>,
}

impl Network {
    /// Make the bridge ready: created if missing, up, with the gateway address;
    /// `ip_forward` and the bridge's `route_localnet` on; our nf_tables table with the
    /// masquerade rules. An error means the node's network is not ready.
    pub async fn open(config: NetworkConfig, db: Arc<redb::Database>) -> Result<Network> {
        validate_bridge_name(&config.bridge)?;
        if !(68..=65535).contains(&config.mtu) {
            return Err(Error::invalid(
                "network.mtu",
                format!("{} is not in 68..=65535", config.mtu),
            ));
        }
        let net: Ipv4Net = config.subnet.parse().map_err(|_| {
            Error::invalid(
                "network.subnet",
                format!("{:?} is not an IPv4 CIDR", config.subnet),
            )
        })?;
        let range = PodRange::new(net, config.gateway)?;

        let nl = Netlink::connect()?;
        let bridge_index = bridge::ensure_bridge(&nl, &config.bridge, config.mtu).await?;
        bridge::ensure_gateway(&nl, bridge_index, range.gateway, net.prefix()).await?;
        write_host_sysctl("/proc/sys/net/ipv4/ip_forward")?;
        write_host_sysctl(&format!(
            "/proc/sys/net/ipv4/conf/{}/route_localnet",
            config.bridge
        ))?;

        let subnets = vec![net];
        let (bridge, masquerade, s) = (config.bridge.clone(), config.masquerade, subnets.clone());
        blocking(move || nat::ensure(&bridge, &s, masquerade)).await?;

        Ok(Network {
            nl,
            bridge_index,
            ipam: Ipam::new(db),
            range: Mutex::new(range),
            subnets: tokio::sync::Mutex::new(subnets),
            config,
        })
    }

    /// Give new pods addresses from `cidr` (kubelet's pod CIDR) from now on; the bridge
    /// gets that range's gateway too. Existing allocations stay valid.
    pub async fn set_pod_cidr(&self, cidr: &str) -> Result<()> {
        let net: Ipv4Net = cidr
            .parse()
            .map_err(|_| Error::invalid("pod_cidr", format!("{cidr:?} is not an IPv4 CIDR")))?;
        let range =
            PodRange::new(net, None).map_err(|e| Error::invalid("pod_cidr", e.to_string()))?;
        if *self.current_range()? == range {
            return Ok(());
        }
        let mut subnets = self.subnets.lock().await;
        bridge::ensure_gateway(&self.nl, self.bridge_index, range.gateway, net.prefix()).await?;
        if !subnets.contains(&net) {
            let mut next = subnets.clone();
            next.push(net);
            let (bridge, masquerade, s) = (
                self.config.bridge.clone(),
                self.config.masquerade,
                next.clone(),
            );
            blocking(move || nat::ensure(&bridge, &s, masquerade)).await?;
            *subnets = next;
        }
        *self.current_range()? = range;
        Ok(())
    }

    /// Connect the pod whose network namespace is pinned at `netns`: an address
    /// (persisted before anything else), a veth pair with `eth0` inside, lo up, the
    /// address and a default route via the gateway, and DNAT rules for `ports`. On
    /// failure everything made is undone and the error returned.
    pub async fn setup_pod(
        &self,
        pod_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<PodNetwork> {
        if pod_id.is_empty() {
            return Err(Error::invalid("pod_id", "empty"));
        }
        let host_ports = resolve_ports(ports)?;
        let range = *self.current_range()?;
        let ipam = self.ipam.clone();
        let id = pod_id.to_string();
        let allocation = blocking(move || ipam.allocate(&id, &range)).await?;
        let pod = PodNetwork {
            ip: allocation.ip,
            prefix_len: allocation.prefix_len,
            gateway: allocation.gateway,
            interface: POD_INTERFACE.to_string(),
            host_veth: veth::host_veth_name(pod_id),
        };
        let mut made = Made::default();
        match self
            .connect_pod(pod_id, netns, &pod, &host_ports, &mut made)
            .await
        {
            Ok(()) => Ok(pod),
            Err(err) => {
                let cleanup = self.undo(pod_id, &pod, made).await;
                Err(err.with_cleanup(cleanup))
            }
        }
    }

    async fn connect_pod(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodNetwork,
        ports: &[HostPort],
        made: &mut Made,
    ) -> Result<()> {
        let ns = netns::open_netns(netns)?;
        let create = veth::create_pair(
            &self.nl,
            &pod.host_veth,
            POD_INTERFACE,
            self.bridge_index,
            self.config.mtu,
            &ns,
        );
        let (created, inside) = tokio::join!(create, Netlink::connect_in(netns));
        created?;
        made.veth = true;
        let inside = inside?;
        let eth0 = inside
            .link_index(POD_INTERFACE)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{POD_INTERFACE} in {}", netns.display())))?;
        // Sent back to back on one socket, so the kernel applies them in this order.
        let (lo, up, address) = tokio::join!(
            inside.loopback_up(),
            inside.set_up(eth0),
            addr::replace_address(&inside, eth0, pod.ip, pod.prefix_len)
        );
        lo?;
        up?;
        address?;
        route::replace_default_route(&inside, pod.gateway, eth0).await?;
        if !ports.is_empty() {
            made.rules = true;
            let (bridge, id, ip, ports) = (
                self.config.bridge.clone(),
                pod_id.to_string(),
                pod.ip,
                ports.to_vec(),
            );
            blocking(move || hostport::add(&bridge, &id, ip, &ports)).await?;
        }
        Ok(())
    }

    /// Undo a failed setup, newest first, carrying on past failures.
    async fn undo(&self, pod_id: &str, pod: &PodNetwork, made: Made) -> Vec<Error> {
        let mut errors = Vec::new();
        let mut keep_record = false;
        if made.rules {
            let (bridge, id) = (self.config.bridge.clone(), pod_id.to_string());
            if let Err(e) = blocking(move || hostport::remove(&bridge, &id)).await {
                // Keep the allocation: it is the record that lets teardown_pod remove
                // the rules later.
                keep_record = true;
                errors.push(e);
            }
        }
        if made.veth {
            if let Err(e) = self.nl.delete_link(&pod.host_veth).await {
                errors.push(e);
            }
        }
        if !keep_record {
            let (ipam, id) = (self.ipam.clone(), pod_id.to_string());
            if let Err(e) = blocking(move || ipam.release(&id)).await {
                errors.push(e);
            }
        }
        errors
    }

    /// Disconnect a pod: remove its DNAT rules, take the address off its `eth0` when
    /// its namespace is still there, release the address. The veth is not deleted here
    /// (a synchronous delete waits ~19 ms on RCU): releasing the pinned namespace lets
    /// the kernel reap it. Idempotent, and Ok for a pod that never had networking.
    pub async fn teardown_pod(&self, pod_id: &str, netns: Option<&Path>) -> Result<()> {
        if self.pod_ip(pod_id)?.is_none() {
            return Ok(());
        }
        let (bridge, id) = (self.config.bridge.clone(), pod_id.to_string());
        blocking(move || hostport::remove(&bridge, &id)).await?;
        if let Some(netns) = netns {
            match flush_pod_address(netns).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let (ipam, id) = (self.ipam.clone(), pod_id.to_string());
        blocking(move || ipam.release(&id)).await?;
        // The veth would go with the pod's netns, but a netns outlives its last process
        // for as long as anything still references it (a socket in TIME_WAIT: a minute).
        // Delete it in the background: the ~19 ms synchronous delete stays off the
        // caller's latency, and the link never lingers.
        let host_veth = veth::host_veth_name(pod_id);
        tokio::spawn(async move {
            if let Ok(nl) = Netlink::connect() {
                // An already gone link is success.
                if let Err(e) = nl.delete_link(&host_veth).await {
                    tracing::debug!(link = %host_veth, error = %e, "deleting a pod's veth");
                }
            }
        });
        Ok(())
    }

    /// The pods that hold an address (and so may hold rules and a veth): what the start-up
    /// reconciliation compares with the pods it knows.
    pub fn attached_pods(&self) -> Result<Vec<String>> {
        Ok(self.ipam.list()?.into_iter().map(|(id, _)| id).collect())
    }

    /// The pod's address, as persisted (also after a daemon restart).
    pub fn pod_ip(&self, pod_id: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self.ipam.get(pod_id)?.map(|a| a.ip))
    }

    fn current_range(&self) -> Result<std::sync::MutexGuard<'_, PodRange>> {
        self.range
            .lock()
            .map_err(|_| Error::Internal("pod range lock poisoned".into()))
    }
}

/// Delete everything of ours for `bridge`: the nf_tables table with all its rules, and
/// the bridge itself. For tests and for an operator's cleanup; pods must be gone.
pub async fn cleanup_all(bridge: &str) -> Result<()> {
    validate_bridge_name(bridge)?;
    let name = bridge.to_string();
    blocking(move || nat::delete_table(&name)).await?;
    let nl = Netlink::connect()?;
    nl.delete_link(bridge).await
}

/// What a setup made so far, for its undo.
#[derive(Default)]
struct Made {
    veth: bool,
    rules: bool,
}

async fn flush_pod_address(netns: &Path) -> Result<()> {
    let inside = Netlink::connect_in(netns).await?;
    match inside.link_index(POD_INTERFACE).await? {
        Some(index) => addr::flush_ipv4(&inside, index).await,
        None => Ok(()),
    }
}

/// Check the mappings and keep the ones that map a host port (IPv4 only for now).
fn resolve_ports(ports: &[PortMapping]) -> Result<Vec<HostPort>> {
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        if p.host_port == 0 {
            continue;
        }
        if p.container_port == 0 {
            return Err(Error::invalid(
                format!("port_mappings[{i}].container_port"),
                "must not be 0",
            ));
        }
        let host_ip = match p.host_ip {
            None => None,
            Some(IpAddr::V4(ip)) if ip.is_unspecified() => None,
            Some(IpAddr::V4(ip)) => Some(ip),
            Some(IpAddr::V6(ip)) if ip.is_unspecified() => None,
            Some(IpAddr::V6(ip)) => {
                tracing::debug!(%ip, "skipping IPv6 host port mapping: pods are IPv4-only");
                continue;
            }
        };
        let hp = HostPort {
            proto: p.protocol.number(),
            host_ip,
            host_port: p.host_port,
            container_port: p.container_port,
        };
        if out.contains(&hp) {
            continue;
        }
        out.push(hp);
    }
    Ok(out)
}

fn validate_bridge_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "network.bridge",
            format!("{name:?} is not a valid interface name"),
        ))
    }
}

fn write_host_sysctl(path: &str) -> Result<()> {
    if std::fs::read_to_string(path)
        .map(|v| v.trim() == "1")
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(Error::io(format!("write {path}")))
}

/// Run blocking work (redb transactions, nf_tables batches) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_toml() {
        let c: NetworkConfig = toml::from_str("").expect("empty");
        assert_eq!(c, NetworkConfig::default());
        let c: NetworkConfig =
            toml::from_str("bridge = \"br9\"\nmtu = 9000\ngateway = \"10.1.0.254\"")
                .expect("parse");
        assert_eq!(c.bridge, "br9");
        assert_eq!(c.mtu, 9000);
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 1, 0, 254)));
        assert_eq!(c.subnet, "10.89.0.0/16");
        assert!(toml::from_str::<NetworkConfig>("bridges = \"x\"").is_err());
        let c: NetworkConfig =
            toml::from_str("mode = \"cni\"\nconf_dir = \"/x\"\nbin_dirs = [\"/a\", \"/b\"]")
                .expect("parse");
        assert_eq!(c.mode, NetworkMode::Cni);
        assert_eq!(c.conf_dir, PathBuf::from("/x"));
        assert_eq!(c.bin_dirs.len(), 2);
        assert_eq!(NetworkConfig::default().mode, NetworkMode::Auto);
        assert!(toml::from_str::<NetworkConfig>("mode = \"calico\"").is_err());
    }

    #[test]
    fn ports_resolve() {
        let pm = |host_port, container_port, host_ip| PortMapping {
            protocol: Protocol::Tcp,
            container_port,
            host_port,
            host_ip,
        };
        let got = resolve_ports(&[
            pm(0, 80, None),
            pm(8080, 80, None),
            pm(8080, 80, None),
            pm(8081, 81, Some("127.0.0.1".parse().expect("ip"))),
            pm(8082, 82, Some("0.0.0.0".parse().expect("ip"))),
            pm(8083, 83, Some("fd00::1".parse().expect("ip"))),
        ])
        .expect("resolve");
        let want = vec![
            HostPort {
                proto: 6,
                host_ip: None,
                host_port: 8080,
                container_port: 80,
            },
            HostPort {
                proto: 6,
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 8081,
                container_port: 81,
            },
            HostPort {
                proto: 6,
                host_ip: None,
                host_port: 8082,
                container_port: 82,
            },
        ];
        assert_eq!(got, want);
        let err = resolve_ports(&[pm(80, 0, None)]).expect_err("bad");
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidArgument {
                field: "port_mappings[0].container_port".into()
            }
        );
    }

    #[test]
    fn bridge_names() {
        for (name, ok) in [
            ("corral0", true),
            ("", false),
            ("a/b", false),
            ("0123456789abcdef", false),
            ("a b", false),
        ] {
            assert_eq!(validate_bridge_name(name).is_ok(), ok, "{name}");
        }
    }
}

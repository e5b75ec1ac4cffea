//! A pod's network counters, per interface, read inside its network namespace.
//!
//! `/proc/<pid>/net/dev` shows the namespace of process `pid`, so any process already in
//! the pod's netns (the pause, or a running container's init) gives the counters with one
//! file read and no `setns`. The process is checked to really be in the pod's netns (its
//! `ns/net` is the pinned file's inode) after the file is opened, so a pid that was reused
//! in between can only make us skip a good read, never report another namespace. With no
//! such process, a dedicated thread enters the netns ([`network::run_in_netns`]) and reads
//! `/proc/thread-self/net/dev`; a tokio worker never does.
//!
//! As containerd does, a host-network pod reports no network stats (its traffic is the
//! node's, which kubelet reports itself), the default interface is the pod's `eth0`, and
//! `lo` is left out (as cAdvisor leaves it out).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::sandbox::SandboxRecord;

/// One interface's cumulative counters (`/proc/net/dev`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// A pod's interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkUsage {
    /// Unix nanoseconds.
    pub timestamp: i64,
    /// The pod's `eth0`, when it has one.
    pub default_interface: Option<InterfaceUsage>,
    /// Every other interface but `lo`.
    pub interfaces: Vec<InterfaceUsage>,
}

impl NetworkUsage {
    /// Every interface, the default first.
    pub fn all(&self) -> impl Iterator<Item = &InterfaceUsage> {
        self.default_interface.iter().chain(&self.interfaces)
    }
}

/// Parses `/proc/net/dev`: two header lines, then `name: 8 receive and 8 transmit
/// counters`. Lines that don't have that shape are skipped.
pub(crate) fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .filter_map(|line| {
            // Interface names cannot hold ':' (the kernel refuses them), so the first one
            // ends the name even when the counters touch it (`eth0:123`).
            let (name, counters) = line.split_once(':')?;
            let v: Vec<u64> = counters
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if v.len() < 16 {
                return None;
            }
            Some(InterfaceUsage {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// Splits parsed interfaces into the pod's default one and the others, without `lo`.
pub(crate) fn arrange(timestamp: i64, all: Vec<InterfaceUsage>) -> NetworkUsage {
    let mut usage = NetworkUsage {
        timestamp,
        ..Default::default()
    };
    for iface in all {
        if iface.name == "lo" {
            continue;
        }
        if iface.name == network::POD_INTERFACE && usage.default_interface.is_none() {
            usage.default_interface = Some(iface);
        } else {
            usage.interfaces.push(iface);
        }
    }
    usage
}

/// The pod's network counters; `None` for a host-network pod and for one whose netns is
/// gone (stopped). Blocking. `pids` are processes that may be in the pod's netns (running
/// containers' inits); the pause is tried first.
pub(crate) fn read(pod: &SandboxRecord, pids: &[i32]) -> Result<Option<NetworkUsage>> {
    if pod.config.host_network() {
        return Ok(None);
    }
    let Some(netns) = &pod.netns else {
        return Ok(None);
    };
    let pinned = match std::fs::metadata(netns) {
        Ok(md) => (md.dev(), md.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", netns)(e)),
    };
    let text = match pod
        .pause_pid
        .iter()
        .chain(pids)
        .find_map(|&pid| read_through(pid, pinned))
    {
        Some(text) => text,
        None => match read_in_netns(netns) {
            Ok(text) => text,
            // Unpinned between the stat and the thread's open: the pod is stopping.
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    Ok(Some(arrange(
        crate::clock::now_nanos(),
        parse_net_dev(&text),
    )))
}

/// `/proc/<pid>/net/dev`, if `pid` is in the netns whose nsfs inode is `pinned`.
fn read_through(pid: i32, pinned: (u64, u64)) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    // Opened first: the file is bound to the namespace of whoever `pid` is now; checked
    // second, so a pid reused after the open fails the check rather than passing it.
    let mut file = std::fs::File::open(format!("/proc/{pid}/net/dev")).ok()?;
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
    if (ns.dev(), ns.ino()) != pinned {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text)
}

/// `/proc/net/dev` as seen from inside `netns`, on a thread of its own.
fn read_in_netns(netns: &Path) -> Result<String> {
    let text = network::run_in_netns(netns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })?;
    text.map_err(Error::io("reading", "/proc/thread-self/net/dev"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0:1048576    800    2    1    0     0          0         0    52000     400    3    4    0     0       0          0
 net1: 5 1 0 0 0 0 0 0 6 2 0 0 0 0 0 0
 bad: 1 2 3
";

    #[test]
    fn parses_proc_net_dev() {
        let all = parse_net_dev(NET_DEV);
        assert_eq!(all.len(), 3);
        let eth0 = &all[1];
        assert_eq!(
            eth0,
            &InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 1_048_576,
                rx_packets: 800,
                rx_errors: 2,
                rx_dropped: 1,
                tx_bytes: 52_000,
                tx_packets: 400,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
        assert_eq!(all[2].name, "net1");
        assert_eq!((all[2].rx_bytes, all[2].tx_bytes), (5, 6));
    }

    #[test]
    fn eth0_is_the_default_and_lo_is_left_out() {
        let usage = arrange(42, parse_net_dev(NET_DEV));
        assert_eq!(usage.timestamp, 42);
        assert_eq!(
            usage.default_interface.as_ref().map(|i| i.name.as_str()),
            Some("eth0")
        );
        let others: Vec<&str> = usage.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(others, ["net1"]);
        assert_eq!(usage.all().count(), 2);
        // No eth0 (a pod on some other network): no default, the rest still listed.
        let usage = arrange(1, parse_net_dev(&NET_DEV.replace("eth0", "ens3")));
        assert!(usage.default_interface.is_none());
        assert_eq!(usage.interfaces.len(), 2);
    }

    #[test]
    fn reads_our_own_namespace_through_our_pid() {
        // This process is, by definition, in its own netns: read_through must accept it
        // and reject a namespace inode that isn't ours.
        let me = i32::try_from(std::process::id()).unwrap();
        let ns = std::fs::metadata("/proc/self/ns/net").unwrap();
        let text = read_through(me, (ns.dev(), ns.ino())).expect("own netns");
        assert!(!parse_net_dev(&text).is_empty());
        assert!(read_through(me, (ns.dev(), ns.ino() + 1)).is_none());
        assert!(read_through(0, (ns.dev(), ns.ino())).is_none());
    }
}

//! The veth pair of a pod: host end on the bridge, peer made directly inside the pod's
//! network namespace under its final name, so there is no move and no rename.

use std::os::fd::AsRawFd;

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::error::{Error, Result};
use crate::link::{errno_of, nl_err, Netlink};

/// The host end's name: `corral` and 8 hex digits of a hash of the pod id (14 bytes,
/// under IFNAMSIZ).
pub(crate) fn host_veth_name(pod_id: &str) -> String {
    format!("corral{:08x}", fnv1a(pod_id.as_bytes()))
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Create `host` (up, enslaved to `bridge`) with its peer `peer` inside `netns`. The
/// peer stays down: a veth cannot be opened before its pair exists (ENOTCONN), so the
/// caller brings it up from inside.
pub(crate) async fn create_pair(
    nl: &Netlink,
    host: &str,
    peer: &str,
    bridge: u32,
    mtu: u32,
    netns: &std::fs::File,
) -> Result<()> {
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer)
        .mtu(mtu)
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host)
        .mtu(mtu)
        .controller(bridge)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    match nl.handle.link().add(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno_of(&e) == Some(libc::EEXIST) => {
            Err(Error::AlreadyExists(format!("link {host}")))
        }
        Err(e) => Err(nl_err(format!("create veth {host}"))(e)),
    }
}

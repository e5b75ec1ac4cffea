//! The pods' bridge: created when missing, brought up, given the gateway address.

use std::net::Ipv4Addr;

use rtnetlink::LinkBridge;

use crate::error::Result;
use crate::link::{errno_of, is_up, nl_err, Netlink};

/// Make sure bridge `name` exists and is up; return its index.
pub(crate) async fn ensure_bridge(nl: &Netlink, name: &str, mtu: u32) -> Result<u32> {
    if let Some(link) = nl.link_by_name(name).await? {
        let index = link.header.index;
        if !is_up(&link) {
            nl.set_up(index).await?;
        }
        return Ok(index);
    }
    // A fixed, locally administered MAC keeps the gateway's address stable while ports
    // come and go (a bridge otherwise takes the lowest MAC of its ports).
    let created = nl
        .handle
        .link()
        .add(
            LinkBridge::new(name)
                .mtu(mtu)
                .address(bridge_mac(name))
                .build(),
        )
        .execute()
        .await;
    match created {
        Ok(()) => {}
        Err(e) if errno_of(&e) == Some(libc::EEXIST) => {}
        Err(e) => return Err(nl_err(format!("create bridge {name}"))(e)),
    }
    let link = nl
        .link_by_name(name)
        .await?
        .ok_or_else(|| crate::Error::NotFound(format!("bridge {name} right after creating it")))?;
    if !is_up(&link) {
        nl.set_up(link.header.index).await?;
    }
    Ok(link.header.index)
}

/// Put `gateway/prefix` on the bridge (idempotent).
pub(crate) async fn ensure_gateway(
    nl: &Netlink,
    index: u32,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<()> {
    crate::addr::replace_address(nl, index, gateway, prefix).await
}

fn bridge_mac(name: &str) -> Vec<u8> {
    let h = crate::veth::fnv1a(name.as_bytes()).to_be_bytes();
    vec![0x02, 0xc0, h[0], h[1], h[2], h[3]]
}

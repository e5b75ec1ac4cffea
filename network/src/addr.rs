//! Interface addresses.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

use crate::error::Result;
use crate::link::{errno_of, nl_err, Netlink};

/// Add `ip/prefix` to link `index`, replacing an equal one (idempotent).
pub(crate) async fn replace_address(
    nl: &Netlink,
    index: u32,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<()> {
    nl.handle
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .replace()
        .execute()
        .await
        .map_err(nl_err(format!("add address {ip}/{prefix} to link {index}")))
}

/// Remove every IPv4 address of link `index`; Ok when the link is gone.
pub(crate) async fn flush_ipv4(nl: &Netlink, index: u32) -> Result<()> {
    let mut stream = nl
        .handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut mine: Vec<AddressMessage> = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(msg)) => {
                let v4 = msg
                    .attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(_))));
                if v4 && msg.header.index == index {
                    mine.push(msg);
                }
            }
            Ok(None) => break,
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => return Ok(()),
            Err(e) => return Err(nl_err(format!("list addresses of link {index}"))(e)),
        }
    }
    for msg in mine {
        match nl.handle.address().del(msg).execute().await {
            Ok(()) => {}
            Err(e) if matches!(errno_of(&e), Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV)) => {}
            Err(e) => return Err(nl_err(format!("delete address of link {index}"))(e)),
        }
    }
    Ok(())
}

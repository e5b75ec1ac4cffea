//! Routes.

use std::net::Ipv4Addr;

use rtnetlink::RouteMessageBuilder;

use crate::error::Result;
use crate::link::{nl_err, Netlink};

/// `default via gateway dev index` (idempotent).
pub(crate) async fn replace_default_route(
    nl: &Netlink,
    gateway: Ipv4Addr,
    index: u32,
) -> Result<()> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    nl.handle
        .route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(nl_err(format!("add default route via {gateway}")))
}

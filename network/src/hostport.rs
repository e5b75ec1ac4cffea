//! Host ports: one DNAT rule per port mapping in the `hostports` chain of our table
//! (see [`crate::nat`]), tagged with the pod id so teardown finds exactly its own.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::nat::{self, HOSTPORTS};
use crate::nft::{self, Base, CmpOp, Expr, MetaKey, Msg};

/// One resolved mapping: protocol number, optional host address, ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) proto: u8,
    pub(crate) host_ip: Option<Ipv4Addr>,
    pub(crate) host_port: u16,
    pub(crate) container_port: u16,
}

fn comment(pod_id: &str) -> String {
    format!("corral pod {pod_id}")
}

/// Add the pod's DNAT rules, all in one transaction.
pub(crate) fn add(bridge: &str, pod_id: &str, pod_ip: Ipv4Addr, ports: &[HostPort]) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let table = nat::table_name(bridge);
    let tag = comment(pod_id);
    let msgs = ports
        .iter()
        .map(|p| {
            let mut exprs = Vec::new();
            if let Some(host_ip) = p.host_ip {
                exprs.extend(nft::match_ip_net(
                    true,
                    host_ip,
                    Ipv4Addr::BROADCAST,
                    CmpOp::Eq,
                ));
            }
            exprs.extend([
                Expr::Meta {
                    key: MetaKey::L4proto,
                    dreg: nft::REG1,
                },
                Expr::Cmp {
                    sreg: nft::REG1,
                    op: CmpOp::Eq,
                    data: vec![p.proto],
                },
                // The destination port is at offset 2 of TCP, UDP and SCTP headers alike.
                Expr::Payload {
                    base: Base::Transport,
                    offset: 2,
                    len: 2,
                    dreg: nft::REG1,
                },
                Expr::Cmp {
                    sreg: nft::REG1,
                    op: CmpOp::Eq,
                    data: p.host_port.to_be_bytes().to_vec(),
                },
                Expr::Immediate {
                    dreg: nft::REG1,
                    data: pod_ip.octets().to_vec(),
                },
                Expr::Immediate {
                    dreg: nft::REG2,
                    data: p.container_port.to_be_bytes().to_vec(),
                },
                Expr::Dnat {
                    addr_reg: nft::REG1,
                    port_reg: nft::REG2,
                },
            ]);
            Msg::new_rule(&table, HOSTPORTS, &exprs, &tag)
        })
        .collect();
    nat::batch(msgs, format!("add host ports of pod {pod_id}"))
}

/// Remove the pod's DNAT rules; Ok when it has none (or the table is gone).
pub(crate) fn remove(bridge: &str, pod_id: &str) -> Result<()> {
    let table = nat::table_name(bridge);
    let tag = comment(pod_id);
    let context = format!("remove host ports of pod {pod_id}");
    let mut sock = nft::Socket::open().map_err(|source| Error::Nftables {
        context: context.clone(),
        source,
    })?;
    let rules = sock
        .list_rules(&table, HOSTPORTS)
        .map_err(|source| Error::Nftables {
            context: context.clone(),
            source,
        })?;
    let msgs: Vec<Msg> = rules
        .iter()
        .filter(|r| r.comment.as_deref() == Some(tag.as_str()))
        .map(|r| Msg::del_rule(&table, HOSTPORTS, r.handle))
        .collect();
    match sock.batch(msgs) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(source) => Err(Error::Nftables { context, source }),
    }
}

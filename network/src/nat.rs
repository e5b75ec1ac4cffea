//! NAT for pods, in an nf_tables table of our own, `ip corral-<bridge>` (one per bridge,
//! so separate Corral instances, and tests, never touch each other's rules):
//!
//! ```text
//! table ip corral-corral0 {
//!   chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump hostports }
//!   chain output      { type nat hook output priority -100;      fib daddr type local jump hostports }
//!   chain hostports   { one DNAT rule per port mapping, commented "corral pod <id>" }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!                       ip saddr 127.0.0.0/8 oifname "corral0" masquerade   # hostPort via 127.0.0.1
//!                       ip saddr <subnet> ip daddr != <subnet> oifname != "corral0" masquerade }
//! }
//! ```
//!
//! Written over netlink by [`crate::nft`]; nothing is exec'd. The base chains are
//! rewritten whole in one transaction on open and on a pod CIDR change, which leaves the
//! per-pod `hostports` rules alone. Deleting the table removes all of it.

use crate::error::{Error, Result};
use crate::ipam::Ipv4Net;
use crate::nft::{self, CmpOp, Expr, Hook, Msg};

pub(crate) const HOSTPORTS: &str = "hostports";
const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const POSTROUTING: &str = "postrouting";
/// RTN_LOCAL, the `fib ... type local` result.
const RTN_LOCAL: u32 = 2;

/// The nf_tables table for `bridge`.
pub(crate) fn table_name(bridge: &str) -> String {
    format!("corral-{bridge}")
}

/// Create the table and chains if missing, and (re)write the base chains' rules.
pub(crate) fn ensure(bridge: &str, subnets: &[Ipv4Net], masquerade: bool) -> Result<()> {
    let table = table_name(bridge);
    let to_hostports = || {
        vec![
            Expr::FibDaddrType { dreg: nft::REG1 },
            Expr::Cmp {
                sreg: nft::REG1,
                op: CmpOp::Eq,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            },
            Expr::Jump {
                chain: HOSTPORTS.to_string(),
            },
        ]
    };
    let mut msgs = vec![
        Msg::new_table(&table),
        Msg::new_nat_chain(&table, PREROUTING, Hook::Prerouting, -100),
        Msg::new_nat_chain(&table, OUTPUT, Hook::Output, -100),
        Msg::new_nat_chain(&table, POSTROUTING, Hook::Postrouting, 100),
        Msg::new_chain(&table, HOSTPORTS),
        Msg::flush_chain(&table, PREROUTING),
        Msg::flush_chain(&table, OUTPUT),
        Msg::flush_chain(&table, POSTROUTING),
        Msg::new_rule(&table, PREROUTING, &to_hostports(), "corral hostports"),
        Msg::new_rule(&table, OUTPUT, &to_hostports(), "corral hostports"),
    ];
    let mut localhost = nft::match_ip_net(
        false,
        std::net::Ipv4Addr::new(127, 0, 0, 0),
        std::net::Ipv4Addr::new(255, 0, 0, 0),
        CmpOp::Eq,
    );
    localhost.extend(nft::match_oifname(bridge, CmpOp::Eq));
    localhost.push(Expr::Masquerade);
    msgs.push(Msg::new_rule(
        &table,
        POSTROUTING,
        &localhost,
        "corral hostports from localhost",
    ));
    if masquerade {
        for net in subnets {
            let mut exprs = nft::match_ip_net(false, net.network(), net.mask(), CmpOp::Eq);
            exprs.extend(nft::match_ip_net(
                true,
                net.network(),
                net.mask(),
                CmpOp::Neq,
            ));
            exprs.extend(nft::match_oifname(bridge, CmpOp::Neq));
            exprs.push(Expr::Masquerade);
            msgs.push(Msg::new_rule(
                &table,
                POSTROUTING,
                &exprs,
                &format!("corral masquerade {net}"),
            ));
        }
    }
    batch(msgs, format!("set up table {table}"))
}

/// Delete our table for `bridge` with every rule in it; Ok when there is none.
pub(crate) fn delete_table(bridge: &str) -> Result<()> {
    let table = table_name(bridge);
    match batch(
        vec![Msg::del_table(&table)],
        format!("delete table {table}"),
    ) {
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

pub(crate) fn batch(msgs: Vec<Msg>, context: String) -> Result<()> {
    let mut sock = nft::Socket::open().map_err(|source| Error::Nftables {
        context: context.clone(),
        source,
    })?;
    sock.batch(msgs)
        .map_err(|source| Error::Nftables { context, source })
}

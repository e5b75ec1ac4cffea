//! A small nf_tables client over NETLINK_NETFILTER: just the messages Corral needs
//! (tables, chains, rules built from a handful of expressions), sent as atomic batches.
//!
//! No libnftnl and no `nft` binary: each message is encoded here from the constants of
//! `linux/netfilter/nf_tables.h` and `nfnetlink.h`. `nft list table ip corral-<bridge>`
//! shows the result.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType,
};
use nix::sys::time::TimeVal;

// netlink
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

// nfnetlink
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_UNSPEC: u8 = 0;
pub(crate) const NFPROTO_IPV4: u8 = 2;

// nf_tables messages
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;

// attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// Netfilter hooks of the inet families.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Hook {
    Prerouting = 0,
    Output = 3,
    Postrouting = 4,
}

/// The 16-byte registers of nf_tables (NFT_REG_1..4); NFT_REG_VERDICT is 0.
const REG_VERDICT: u32 = 0;
pub(crate) const REG1: u32 = 1;
pub(crate) const REG2: u32 = 2;

pub(crate) const NFT_JUMP: i32 = -3;
const NF_ACCEPT: u32 = 1;

/// Comparison operators of `cmp`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CmpOp {
    Eq = 0,
    Neq = 1,
}

/// Where `payload` reads from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Base {
    Network = 1,
    Transport = 2,
}

/// `meta` keys we use.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MetaKey {
    Oifname = 7,
    L4proto = 16,
}

/// The expressions Corral's rules are made of.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// `fib daddr type` into `dreg` (an RTN_* value, host byte order).
    FibDaddrType {
        dreg: u32,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Jump {
        chain: String,
    },
    /// DNAT to the IPv4 address in `addr_reg` and the port in `port_reg`.
    Dnat {
        addr_reg: u32,
        port_reg: u32,
    },
    Masquerade,
}

impl Expr {
    fn encode(&self, b: &mut Attrs) {
        let (name, body): (&str, Attrs) = match self {
            Expr::Meta { key, dreg } => ("meta", Attrs::new().u32(2, *key as u32).u32(1, *dreg)),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => (
                "payload",
                Attrs::new()
                    .u32(1, *dreg)
                    .u32(2, *base as u32)
                    .u32(3, *offset)
                    .u32(4, *len),
            ),
            Expr::Bitwise { reg, mask } => {
                let len = mask.len() as u32;
                let xor = vec![0u8; mask.len()];
                (
                    "bitwise",
                    Attrs::new()
                        .u32(1, *reg)
                        .u32(2, *reg)
                        .u32(3, len)
                        .nest(4, Attrs::new().bytes(NFTA_DATA_VALUE, mask))
                        .nest(5, Attrs::new().bytes(NFTA_DATA_VALUE, &xor)),
                )
            }
            Expr::Cmp { sreg, op, data } => (
                "cmp",
                Attrs::new()
                    .u32(1, *sreg)
                    .u32(2, *op as u32)
                    .nest(3, Attrs::new().bytes(NFTA_DATA_VALUE, data)),
            ),
            // NFTA_FIB_DREG 1, NFTA_FIB_RESULT 2 (NFT_FIB_RESULT_ADDRTYPE 3),
            // NFTA_FIB_FLAGS 3 (NFTA_FIB_F_DADDR 2)
            Expr::FibDaddrType { dreg } => ("fib", Attrs::new().u32(1, *dreg).u32(2, 3).u32(3, 2)),
            Expr::Immediate { dreg, data } => (
                "immediate",
                Attrs::new()
                    .u32(1, *dreg)
                    .nest(2, Attrs::new().bytes(NFTA_DATA_VALUE, data)),
            ),
            Expr::Jump { chain } => (
                "immediate",
                Attrs::new().u32(1, REG_VERDICT).nest(
                    2,
                    Attrs::new().nest(
                        NFTA_DATA_VERDICT,
                        Attrs::new()
                            .u32(NFTA_VERDICT_CODE, NFT_JUMP as u32)
                            .str(NFTA_VERDICT_CHAIN, chain),
                    ),
                ),
            ),
            // NFTA_NAT_TYPE 1 (NFT_NAT_DNAT 1), NFTA_NAT_FAMILY 2, NFTA_NAT_REG_ADDR_MIN 3,
            // NFTA_NAT_REG_PROTO_MIN 5
            Expr::Dnat { addr_reg, port_reg } => (
                "nat",
                Attrs::new()
                    .u32(1, 1)
                    .u32(2, u32::from(NFPROTO_IPV4))
                    .u32(3, *addr_reg)
                    .u32(5, *port_reg),
            ),
            Expr::Masquerade => ("masq", Attrs::new()),
        };
        let mut elem = Attrs::new().str(NFTA_EXPR_NAME, name);
        if !body.0.is_empty() {
            elem = elem.nest(NFTA_EXPR_DATA, body);
        }
        b.push_nest(NFTA_LIST_ELEM, elem);
    }
}

/// Expressions for `ip <saddr|daddr> <net>` compared with `op`.
pub(crate) fn match_ip_net(daddr: bool, net: Ipv4Addr, mask: Ipv4Addr, op: CmpOp) -> Vec<Expr> {
    vec![
        Expr::Payload {
            base: Base::Network,
            offset: if daddr { 16 } else { 12 },
            len: 4,
            dreg: REG1,
        },
        Expr::Bitwise {
            reg: REG1,
            mask: mask.octets().to_vec(),
        },
        Expr::Cmp {
            sreg: REG1,
            op,
            data: net.octets().to_vec(),
        },
    ]
}

/// Expressions for `oifname <op> "name"`.
pub(crate) fn match_oifname(name: &str, op: CmpOp) -> Vec<Expr> {
    let mut data = [0u8; 16];
    let n = name.len().min(15);
    data[..n].copy_from_slice(&name.as_bytes()[..n]);
    vec![
        Expr::Meta {
            key: MetaKey::Oifname,
            dreg: REG1,
        },
        Expr::Cmp {
            sreg: REG1,
            op,
            data: data.to_vec(),
        },
    ]
}

/// One message of a batch.
pub(crate) struct Msg {
    kind: u16,
    flags: u16,
    attrs: Attrs,
}

impl Msg {
    pub(crate) fn new_table(table: &str) -> Msg {
        Msg {
            kind: NFT_MSG_NEWTABLE,
            flags: NLM_F_CREATE,
            attrs: Attrs::new().str(NFTA_TABLE_NAME, table),
        }
    }

    pub(crate) fn del_table(table: &str) -> Msg {
        Msg {
            kind: NFT_MSG_DELTABLE,
            flags: 0,
            attrs: Attrs::new().str(NFTA_TABLE_NAME, table),
        }
    }

    /// A base chain of type nat on `hook`, policy accept.
    pub(crate) fn new_nat_chain(table: &str, chain: &str, hook: Hook, priority: i32) -> Msg {
        Msg {
            kind: NFT_MSG_NEWCHAIN,
            flags: NLM_F_CREATE,
            attrs: Attrs::new()
                .str(NFTA_CHAIN_TABLE, table)
                .str(NFTA_CHAIN_NAME, chain)
                .nest(
                    NFTA_CHAIN_HOOK,
                    Attrs::new()
                        .u32(NFTA_HOOK_HOOKNUM, hook as u32)
                        .u32(NFTA_HOOK_PRIORITY, priority as u32),
                )
                .u32(NFTA_CHAIN_POLICY, NF_ACCEPT)
                .str(NFTA_CHAIN_TYPE, "nat"),
        }
    }

    /// A regular chain, a target for jumps.
    pub(crate) fn new_chain(table: &str, chain: &str) -> Msg {
        Msg {
            kind: NFT_MSG_NEWCHAIN,
            flags: NLM_F_CREATE,
            attrs: Attrs::new()
                .str(NFTA_CHAIN_TABLE, table)
                .str(NFTA_CHAIN_NAME, chain),
        }
    }

    /// Append a rule; `comment` shows in `nft list` and tags the rule as ours.
    pub(crate) fn new_rule(table: &str, chain: &str, exprs: &[Expr], comment: &str) -> Msg {
        let mut list = Attrs::new();
        for e in exprs {
            e.encode(&mut list);
        }
        Msg {
            kind: NFT_MSG_NEWRULE,
            flags: NLM_F_CREATE | NLM_F_APPEND,
            attrs: Attrs::new()
                .str(NFTA_RULE_TABLE, table)
                .str(NFTA_RULE_CHAIN, chain)
                .nest(NFTA_RULE_EXPRESSIONS, list)
                .bytes(NFTA_RULE_USERDATA, &comment_udata(comment)),
        }
    }

    /// Delete one rule by handle.
    pub(crate) fn del_rule(table: &str, chain: &str, handle: u64) -> Msg {
        Msg {
            kind: NFT_MSG_DELRULE,
            flags: 0,
            attrs: Attrs::new()
                .str(NFTA_RULE_TABLE, table)
                .str(NFTA_RULE_CHAIN, chain)
                .bytes(NFTA_RULE_HANDLE, &handle.to_be_bytes()),
        }
    }

    /// Delete every rule of a chain.
    pub(crate) fn flush_chain(table: &str, chain: &str) -> Msg {
        Msg {
            kind: NFT_MSG_DELRULE,
            flags: 0,
            attrs: Attrs::new()
                .str(NFTA_RULE_TABLE, table)
                .str(NFTA_RULE_CHAIN, chain),
        }
    }
}

/// A rule as a dump reports it: enough to find ours and delete it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleInfo {
    pub(crate) handle: u64,
    pub(crate) comment: Option<String>,
}

/// A NETLINK_NETFILTER socket.
pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub(crate) fn open() -> io::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        // A safety net: every request is answered at once, so a wait this long means a
        // lost answer, not a slow kernel.
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0))?;
        Ok(Socket { fd, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send `msgs` as one atomic transaction; all apply or none.
    pub(crate) fn batch(&mut self, msgs: Vec<Msg>) -> io::Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(256 * msgs.len());
        let begin = self.next_seq();
        put_msg(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            &Attrs::new(),
        );
        let mut pending = Vec::with_capacity(msgs.len());
        for m in &msgs {
            let seq = self.next_seq();
            pending.push(seq);
            put_msg(
                &mut buf,
                (NFNL_SUBSYS_NFTABLES << 8) | m.kind,
                NLM_F_REQUEST | NLM_F_ACK | m.flags,
                seq,
                NFPROTO_IPV4,
                0,
                &m.attrs,
            );
        }
        let end = self.next_seq();
        put_msg(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            &Attrs::new(),
        );
        send(self.fd.as_raw_fd(), &buf, MsgFlags::empty())?;

        let mut first_error: Option<io::Error> = None;
        let mut rbuf = vec![0u8; 64 * 1024];
        while !pending.is_empty() {
            let n = match recv(self.fd.as_raw_fd(), &mut rbuf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::Error::EAGAIN) if first_error.is_some() => break,
                Err(e) => return Err(e.into()),
            };
            for (kind, seq, payload) in messages(&rbuf[..n]) {
                if kind != NLMSG_ERROR {
                    continue;
                }
                pending.retain(|s| *s != seq);
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if let Some(code) = code.filter(|c| *c != 0) {
                    first_error.get_or_insert_with(|| io::Error::from_raw_os_error(-code));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The rules of `table`/`chain`; empty when the table or chain does not exist.
    pub(crate) fn list_rules(&mut self, table: &str, chain: &str) -> io::Result<Vec<RuleInfo>> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        put_msg(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_IPV4,
            0,
            &Attrs::new()
                .str(NFTA_RULE_TABLE, table)
                .str(NFTA_RULE_CHAIN, chain),
        );
        send(self.fd.as_raw_fd(), &buf, MsgFlags::empty())?;
        let mut rules = Vec::new();
        let mut rbuf = vec![0u8; 64 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut rbuf, MsgFlags::empty())?;
            for (kind, mseq, payload) in messages(&rbuf[..n]) {
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(rules),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EPROTO);
                        return match -code {
                            0 => Ok(rules),
                            libc::ENOENT => Ok(Vec::new()),
                            errno => Err(io::Error::from_raw_os_error(errno)),
                        };
                    }
                    k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                        // nfgenmsg (4 bytes), then the rule's attributes.
                        let mut handle = None;
                        let mut comment = None;
                        for (ty, data) in attrs(payload.get(4..).unwrap_or(&[])) {
                            match ty {
                                NFTA_RULE_HANDLE if data.len() == 8 => {
                                    let mut b = [0u8; 8];
                                    b.copy_from_slice(data);
                                    handle = Some(u64::from_be_bytes(b));
                                }
                                NFTA_RULE_USERDATA => comment = parse_comment(data),
                                _ => {}
                            }
                        }
                        if let Some(handle) = handle {
                            rules.push(RuleInfo { handle, comment });
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Attributes being built, already in wire format.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attrs(Vec<u8>);

impl Attrs {
    fn new() -> Attrs {
        Attrs(Vec::new())
    }

    fn push(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len() + (align4(len) - len), 0);
    }

    fn push_nest(&mut self, ty: u16, inner: Attrs) {
        self.push(ty | NLA_F_NESTED, &inner.0);
    }

    fn bytes(mut self, ty: u16, data: &[u8]) -> Attrs {
        self.push(ty, data);
        self
    }

    fn str(self, ty: u16, s: &str) -> Attrs {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.bytes(ty, &data)
    }

    /// A 32-bit attribute; nf_tables wants them big-endian.
    fn u32(self, ty: u16, v: u32) -> Attrs {
        self.bytes(ty, &v.to_be_bytes())
    }

    fn nest(mut self, ty: u16, inner: Attrs) -> Attrs {
        self.push_nest(ty, inner);
        self
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[allow(clippy::too_many_arguments)]
fn put_msg(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &Attrs,
) {
    let len = NLMSG_HDRLEN + 4 + attrs.0.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version (NFNETLINK_V0), res_id (big-endian)
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(&attrs.0);
    buf.resize(buf.len() + (align4(len) - len), 0);
}

/// Split a receive buffer into (type, seq, payload) per netlink message.
fn messages(mut buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        out.push((kind, seq, &buf[NLMSG_HDRLEN..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

/// Split attributes into (type without flags, payload).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

/// libnftnl's userdata TLV for a rule comment (NFTNL_UDATA_RULE_COMMENT = 0), which is
/// what `nft list` prints as `comment "..."`.
fn comment_udata(comment: &str) -> Vec<u8> {
    let bytes = &comment.as_bytes()[..comment.len().min(127)];
    let mut out = vec![0u8, (bytes.len() + 1) as u8];
    out.extend_from_slice(bytes);
    out.push(0);
    out
}

fn parse_comment(mut data: &[u8]) -> Option<String> {
    while data.len() >= 2 {
        let (ty, len) = (data[0], data[1] as usize);
        let value = data.get(2..2 + len)?;
        if ty == 0 {
            let value = value.strip_suffix(&[0]).unwrap_or(value);
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        data = &data[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_are_aligned_and_round_trip() {
        let a = Attrs::new()
            .str(1, "ab")
            .u32(2, 7)
            .bytes(3, &[1, 2, 3, 4, 5]);
        assert_eq!(a.0.len() % 4, 0);
        let got = attrs(&a.0);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (1, &b"ab\0"[..]));
        assert_eq!(got[1], (2, &7u32.to_be_bytes()[..]));
        assert_eq!(got[2], (3, &[1u8, 2, 3, 4, 5][..]));
    }

    #[test]
    fn comments_round_trip() {
        let udata = comment_udata("corral pod abc");
        assert_eq!(parse_comment(&udata).as_deref(), Some("corral pod abc"));
        assert_eq!(parse_comment(&[]), None);
    }

    #[test]
    fn batch_framing() {
        let mut buf = Vec::new();
        put_msg(
            &mut buf,
            6 | (10 << 8),
            1,
            9,
            2,
            0,
            &Attrs::new().str(1, "t"),
        );
        let msgs = messages(&buf);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0, (10 << 8) | 6);
        assert_eq!(msgs[0].1, 9);
        assert_eq!(msgs[0].2[0], 2);
    }
}

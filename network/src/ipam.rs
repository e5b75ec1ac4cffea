//! IPv4 address management, persisted in the daemon's redb database.
//!
//! Tables (all ours, prefixed `ipam_`):
//! - `ipam_allocations`: pod id → (ip, prefix length, gateway), as u32s;
//! - `ipam_addresses`: ip → pod id, so no address is handed out twice;
//! - `ipam_cursor`: range (CIDR text) → the last address handed out in it, so a freed
//!   address is not reused at once.
//!
//! One write transaction per allocate and per release.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition, TableError};

use crate::error::{Error, Result};

const ALLOCATIONS: TableDefinition<&str, (u32, u8, u32)> = TableDefinition::new("ipam_allocations");
const ADDRESSES: TableDefinition<u32, &str> = TableDefinition::new("ipam_addresses");
const CURSOR: TableDefinition<&str, u32> = TableDefinition::new("ipam_cursor");

/// An IPv4 network: a base address with its host bits cleared and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ipv4Net {
    network: u32,
    prefix: u8,
}

impl Ipv4Net {
    pub(crate) fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self> {
        if prefix > 32 {
            return Err(Error::invalid(
                "subnet",
                format!("prefix length {prefix} > 32"),
            ));
        }
        Ok(Ipv4Net {
            network: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub(crate) fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub(crate) fn prefix(&self) -> u8 {
        self.prefix
    }

    pub(crate) fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    pub(crate) fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask(self.prefix))
    }

    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// The first and last usable host address (network and broadcast excluded), or None
    /// for a /31 or /32.
    pub(crate) fn hosts(&self) -> Option<(u32, u32)> {
        if self.prefix > 30 {
            return None;
        }
        Some((self.network + 1, (self.network | !mask(self.prefix)) - 1))
    }

    /// The conventional gateway: the first host address.
    pub(crate) fn first_host(&self) -> Option<Ipv4Addr> {
        self.hosts().map(|(first, _)| Ipv4Addr::from(first))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "subnet",
                format!("{s:?} is not an IPv4 CIDR like 10.89.0.0/16"),
            )
        };
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Net::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// Where new pods get their addresses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PodRange {
    pub(crate) net: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
}

impl PodRange {
    pub(crate) fn new(net: Ipv4Net, gateway: Option<Ipv4Addr>) -> Result<Self> {
        let Some(first) = net.first_host() else {
            return Err(Error::invalid(
                "subnet",
                format!("{net} has no room for pods"),
            ));
        };
        let gateway = gateway.unwrap_or(first);
        if !net.contains(gateway) || gateway == net.network() || gateway == net.broadcast() {
            return Err(Error::invalid(
                "gateway",
                format!("{gateway} is not a host address of {net}"),
            ));
        }
        Ok(PodRange { net, gateway })
    }
}

/// One pod's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub(crate) ip: Ipv4Addr,
    pub(crate) prefix_len: u8,
    pub(crate) gateway: Ipv4Addr,
}

impl Allocation {
    fn from_row((ip, prefix_len, gateway): (u32, u8, u32)) -> Self {
        Allocation {
            ip: Ipv4Addr::from(ip),
            prefix_len,
            gateway: Ipv4Addr::from(gateway),
        }
    }
}

/// The allocator over the shared database.
#[derive(Clone)]
pub(crate) struct Ipam {
    db: Arc<Database>,
}

impl Ipam {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Ipam { db }
    }

    /// Hand `pod_id` a free address of `range`, persisted before returning.
    pub(crate) fn allocate(&self, pod_id: &str, range: &PodRange) -> Result<Allocation> {
        let Some((first, last)) = range.net.hosts() else {
            return Err(Error::Exhausted {
                range: range.net.to_string(),
            });
        };
        let range_key = range.net.to_string();
        let txn = self.db.begin_write().map_err(Error::store)?;
        let allocation = {
            let mut allocations = txn.open_table(ALLOCATIONS).map_err(Error::store)?;
            if allocations.get(pod_id).map_err(Error::store)?.is_some() {
                return Err(Error::AlreadyExists(format!("address for pod {pod_id}")));
            }
            let mut addresses = txn.open_table(ADDRESSES).map_err(Error::store)?;
            let mut cursor = txn.open_table(CURSOR).map_err(Error::store)?;
            let last_given = cursor
                .get(range_key.as_str())
                .map_err(Error::store)?
                .map(|v| v.value());
            let start = match last_given {
                Some(c) if c >= first && c < last => c + 1,
                _ => first,
            };
            let size = last - first + 1;
            let gateway = u32::from(range.gateway);
            let mut found = None;
            for i in 0..size {
                let candidate = first + (start - first + i) % size;
                if candidate == gateway {
                    continue;
                }
                if addresses.get(candidate).map_err(Error::store)?.is_none() {
                    found = Some(candidate);
                    break;
                }
            }
            let Some(ip) = found else {
                return Err(Error::Exhausted { range: range_key });
            };
            let row = (ip, range.net.prefix(), gateway);
            allocations.insert(pod_id, row).map_err(Error::store)?;
            addresses.insert(ip, pod_id).map_err(Error::store)?;
            cursor
                .insert(range_key.as_str(), ip)
                .map_err(Error::store)?;
            Allocation::from_row(row)
        };
        txn.commit().map_err(Error::store)?;
        Ok(allocation)
    }

    /// Free the pod's address; Ok(None) when it had none.
    pub(crate) fn release(&self, pod_id: &str) -> Result<Option<Allocation>> {
        if self.get(pod_id)?.is_none() {
            // Nothing to do: spare the write transaction (and its fsync).
            return Ok(None);
        }
        let txn = self.db.begin_write().map_err(Error::store)?;
        let released = {
            let mut allocations = txn.open_table(ALLOCATIONS).map_err(Error::store)?;
            let removed = allocations
                .remove(pod_id)
                .map_err(Error::store)?
                .map(|v| Allocation::from_row(v.value()));
            if let Some(allocation) = removed {
                let mut addresses = txn.open_table(ADDRESSES).map_err(Error::store)?;
                let ip = u32::from(allocation.ip);
                let owner = addresses
                    .get(ip)
                    .map_err(Error::store)?
                    .map(|v| v.value() == pod_id);
                if owner == Some(true) {
                    addresses.remove(ip).map_err(Error::store)?;
                }
            }
            removed
        };
        txn.commit().map_err(Error::store)?;
        Ok(released)
    }

    /// The pod's address, if it has one.
    pub(crate) fn get(&self, pod_id: &str) -> Result<Option<Allocation>> {
        let txn = self.db.begin_read().map_err(Error::store)?;
        let table = match txn.open_table(ALLOCATIONS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(Error::store(e)),
        };
        Ok(table
            .get(pod_id)
            .map_err(Error::store)?
            .map(|v| Allocation::from_row(v.value())))
    }

    /// Every allocation, pod id first.
    pub(crate) fn list(&self) -> Result<Vec<(String, Allocation)>> {
        let txn = self.db.begin_read().map_err(Error::store)?;
        let table = match txn.open_table(ALLOCATIONS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(Error::store(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(Error::store)? {
            let (k, v) = row.map_err(Error::store)?;
            out.push((k.value().to_string(), Allocation::from_row(v.value())));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn db(dir: &tempfile::TempDir) -> Arc<Database> {
        Arc::new(Database::create(dir.path().join("meta.redb")).expect("create db"))
    }

    fn range(s: &str) -> PodRange {
        PodRange::new(s.parse().expect("cidr"), None).expect("range")
    }

    #[test]
    fn parse_cidr() {
        let cases = [
            ("10.89.0.0/16", Some(("10.89.0.0", 16, "10.89.255.255"))),
            ("10.89.3.7/24", Some(("10.89.3.0", 24, "10.89.3.255"))),
            ("0.0.0.0/0", Some(("0.0.0.0", 0, "255.255.255.255"))),
            ("10.0.0.0/33", None),
            ("10.0.0.0", None),
            ("fd00::/64", None),
            ("10.0.0/8", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<Ipv4Net>().ok();
            let got = got.map(|n| {
                (
                    n.network().to_string(),
                    n.prefix(),
                    n.broadcast().to_string(),
                )
            });
            let want = want.map(|(a, p, b)| (a.to_string(), p, b.to_string()));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn range_and_gateway() {
        assert_eq!(range("10.1.0.0/24").gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert!(PodRange::new("10.1.0.0/31".parse().expect("cidr"), None).is_err());
        assert!(PodRange::new(
            "10.1.0.0/24".parse().expect("cidr"),
            Some(Ipv4Addr::new(10, 2, 0, 1))
        )
        .is_err());
        assert!(PodRange::new(
            "10.1.0.0/24".parse().expect("cidr"),
            Some(Ipv4Addr::new(10, 1, 0, 255))
        )
        .is_err());
    }

    #[test]
    fn exhaustion_of_a_29_skips_network_gateway_broadcast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(db(&dir));
        let r = range("10.9.0.0/29");
        let mut got = BTreeSet::new();
        for i in 0..5 {
            let a = ipam.allocate(&format!("pod{i}"), &r).expect("allocate");
            assert_eq!(a.prefix_len, 29);
            assert_eq!(a.gateway, Ipv4Addr::new(10, 9, 0, 1));
            assert!(got.insert(a.ip), "{} given twice", a.ip);
        }
        let want: BTreeSet<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 9, 0, h)).collect();
        assert_eq!(got, want);
        let err = ipam.allocate("pod5", &r).expect_err("exhausted");
        assert!(matches!(err, Error::Exhausted { .. }), "{err}");
        // A freed address comes back once the cursor wraps to it.
        let freed = ipam.release("pod2").expect("release").expect("had one");
        let again = ipam.allocate("pod6", &r).expect("allocate after release");
        assert_eq!(again.ip, freed.ip);
    }

    #[test]
    fn freed_address_is_not_reused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(db(&dir));
        let r = range("10.9.1.0/24");
        let a = ipam.allocate("a", &r).expect("allocate");
        ipam.release("a").expect("release");
        let b = ipam.allocate("b", &r).expect("allocate");
        assert_ne!(a.ip, b.ip);
    }

    #[test]
    fn double_allocate_and_release_are_handled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(db(&dir));
        let r = range("10.9.2.0/24");
        ipam.allocate("a", &r).expect("allocate");
        let err = ipam.allocate("a", &r).expect_err("second allocate");
        assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
        assert!(ipam.release("a").expect("release").is_some());
        assert!(ipam.release("a").expect("release twice").is_none());
        assert!(ipam.release("never").expect("release unknown").is_none());
        assert!(ipam.get("a").expect("get").is_none());
    }

    #[test]
    fn allocations_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = range("10.9.3.0/29");
        let first = {
            let ipam = Ipam::new(db(&dir));
            let a = ipam.allocate("a", &r).expect("allocate");
            let b = ipam.allocate("b", &r).expect("allocate");
            ipam.release("a").expect("release");
            (a, b)
        };
        let ipam = Ipam::new(db(&dir));
        assert_eq!(ipam.get("b").expect("get"), Some(first.1));
        assert_eq!(ipam.get("a").expect("get"), None);
        // The cursor survived too: the next address follows b's, and b's is never repeated.
        let c = ipam.allocate("c", &r).expect("allocate");
        assert_ne!(c.ip, first.1.ip);
        assert_ne!(c.ip, first.0.ip);
        let mut seen = BTreeSet::new();
        for (_, a) in ipam.list().expect("list") {
            assert!(seen.insert(a.ip));
        }
    }

    #[test]
    fn ranges_can_change_and_old_allocations_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(db(&dir));
        let a = ipam.allocate("a", &range("10.9.4.0/24")).expect("allocate");
        let b = ipam.allocate("b", &range("10.9.5.0/24")).expect("allocate");
        assert_eq!(ipam.get("a").expect("get"), Some(a));
        assert_eq!(b.ip, Ipv4Addr::new(10, 9, 5, 2));
        assert_eq!(b.gateway, Ipv4Addr::new(10, 9, 5, 1));
    }
}

//! The device cgroup: which device nodes a container may read, write or create, from the
//! OCI spec's `linux.resources.devices` rules, applied in order.
//!
//! - **v1** (a `devices` hierarchy is mounted: Legacy or Hybrid): each rule is written, in
//!   order, to `devices.allow` or `devices.deny` in the kernel's syntax (`c 1:3 rwm`,
//!   `b *:* m`, `a`); the kernel keeps the resulting state, readable in `devices.list`
//!   ([`v1`]).
//! - **v2** (no v1 `devices` hierarchy): a `BPF_PROG_TYPE_CGROUP_DEVICE` program that
//!   decides what v1 would have decided ([`program`]), loaded with `bpf(2)` and attached
//!   to the cgroup's directory, replacing any program attached there before ([`bpf`]).
//!
//! Both start from [`DeviceState::replay`]: the rules replayed as the v1 kernel applies
//! them (as runc's emulator does), which both validates the whole list before the first
//! write and gives the v2 program its exact v1 meaning. A rule of type `a` is a switch of
//! the default (allow or deny everything) that also clears every exception; any other rule
//! adds an exception when its verdict differs from the default, or takes its access away
//! from the exception with the same type, major and minor when it agrees. So after replay
//! every exception has the same verdict, and their order does not matter.

#[allow(unsafe_code)]
pub mod bpf;
pub mod program;
mod v1;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{CgroupError, Result};

/// The request field the rules come from, named in errors.
pub const FIELD: &str = "linux.resources.devices";

/// The kernel's device numbers: 12 bits of major, 20 of minor.
const MAX_MAJOR: i64 = 0xfff;
const MAX_MINOR: i64 = 0xf_ffff;

/// What a rule is about: a character or a block device (`a` rules are [`Rule::All`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DevType {
    Char,
    Block,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::Char => 'c',
            DevType::Block => 'b',
        }
    }
}

/// A set of `r`, `w`, `m`; the bits are the BPF ones (`BPF_DEVCG_ACC_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Access(u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    pub const ALL: Access = Access(7);
    pub const NONE: Access = Access(0);

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> Access {
        Access(bits & 7)
    }

    pub fn union(self, o: Access) -> Access {
        Access(self.0 | o.0)
    }

    pub fn minus(self, o: Access) -> Access {
        Access(self.0 & !o.0)
    }

    pub fn intersects(self, o: Access) -> bool {
        self.0 & o.0 != 0
    }

    pub fn contains(self, o: Access) -> bool {
        self.0 & o.0 == o.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `r`, `w`, `m` each at most once; empty (or absent) means all three, as runc reads
    /// a rule without access.
    fn parse(s: &str) -> Option<Access> {
        if s.is_empty() {
            return Some(Access::ALL);
        }
        let mut a = Access::NONE;
        for c in s.chars() {
            let bit = match c {
                'r' => Access::READ,
                'w' => Access::WRITE,
                'm' => Access::MKNOD,
                _ => return None,
            };
            if a.intersects(bit) {
                return None;
            }
            a = a.union(bit);
        }
        Some(a)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.contains(bit) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Which devices an exception covers; `None` is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevMatch {
    pub typ: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

impl fmt::Display for DevMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{}",
            self.typ.letter(),
            num(self.major),
            num(self.minor)
        )
    }
}

/// One validated rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Type `a`: allow or deny every device, whatever the rule's numbers and access say
    /// (the kernel reads only the `a`).
    All { allow: bool },
    Dev {
        allow: bool,
        dev: DevMatch,
        access: Access,
    },
}

impl Rule {
    /// Validates one OCI rule; `i` is its index, for the error.
    pub fn from_oci(i: usize, r: &LinuxDeviceCgroup) -> Result<Rule> {
        let bad = |reason: String| CgroupError::InvalidResource {
            field: FIELD,
            reason: format!("rule {i}: {reason}"),
        };
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => return Ok(Rule::All { allow: r.allow() }),
            LinuxDeviceType::C => DevType::Char,
            LinuxDeviceType::B => DevType::Block,
            other => {
                return Err(bad(format!(
                    "type {:?} is not one of a, b, c",
                    other.as_str()
                )))
            }
        };
        let num = |n: Option<i64>, max: i64, what: &str| -> Result<Option<u32>> {
            match n {
                // runc writes a missing number as -1: every negative is the wildcard.
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) if n > max => Err(bad(format!(
                    "{what} {n} is beyond the kernel's largest, {max}"
                ))),
                Some(n) => Ok(u32::try_from(n).ok()),
            }
        };
        let access = r.access().as_deref().unwrap_or("");
        let access = Access::parse(access)
            .ok_or_else(|| bad(format!("access {access:?} is not some of \"rwm\"")))?;
        Ok(Rule::Dev {
            allow: r.allow(),
            dev: DevMatch {
                typ,
                major: num(r.major(), MAX_MAJOR, "major")?,
                minor: num(r.minor(), MAX_MINOR, "minor")?,
            },
            access,
        })
    }

    /// The kernel's syntax for `devices.allow` / `devices.deny`.
    pub fn v1_text(&self) -> String {
        match self {
            Rule::All { .. } => "a".to_string(),
            Rule::Dev { dev, access, .. } => format!("{dev} {access}"),
        }
    }

    pub fn allow(&self) -> bool {
        match self {
            Rule::All { allow } | Rule::Dev { allow, .. } => *allow,
        }
    }
}

/// Validates a whole list.
pub fn parse_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| Rule::from_oci(i, r))
        .collect()
}

/// A device cgroup's state as the v1 kernel keeps it: a default verdict and the
/// exceptions to it, in the order they were first added (the order of `devices.list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    pub default_allow: bool,
    pub exceptions: Vec<(DevMatch, Access)>,
}

impl Default for DeviceState {
    /// What a new cgroup under an unrestricted parent has: everything allowed.
    fn default() -> Self {
        DeviceState {
            default_allow: true,
            exceptions: Vec::new(),
        }
    }
}

impl DeviceState {
    /// Replays `rules` from an allow-all cgroup, as the v1 kernel would apply them.
    ///
    /// One divergence, runc's: taking access away from an exact exception while a wider
    /// wildcard exception still grants it (deny `c 1:3 m` after allowing `c *:* m`) is
    /// silently ignored by the kernel, and refused here, so that no rule that looks
    /// effective is not.
    pub fn replay(rules: &[Rule]) -> Result<DeviceState> {
        let mut s = DeviceState::default();
        for (i, rule) in rules.iter().enumerate() {
            match *rule {
                Rule::All { allow } => {
                    s.default_allow = allow;
                    s.exceptions.clear();
                }
                Rule::Dev { allow, dev, access } => {
                    if allow == s.default_allow {
                        s.remove(i, dev, access)?;
                    } else {
                        s.add(dev, access);
                    }
                }
            }
        }
        Ok(s)
    }

    fn add(&mut self, dev: DevMatch, access: Access) {
        match self.exceptions.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, a)) => *a = a.union(access),
            None => self.exceptions.push((dev, access)),
        }
    }

    fn remove(&mut self, i: usize, dev: DevMatch, access: Access) -> Result<()> {
        let wider = self.exceptions.iter().find(|(d, a)| {
            *d != dev
                && d.typ == dev.typ
                && (d.major.is_none() || d.major == dev.major)
                && (d.minor.is_none() || d.minor == dev.minor)
                && a.intersects(access)
        });
        if let Some((d, a)) = wider {
            return Err(CgroupError::InvalidResource {
                field: FIELD,
                reason: format!(
                    "rule {i} ({dev} {access}) would punch a hole in the wider rule \"{d} {a}\", \
                     which the device cgroup cannot do"
                ),
            });
        }
        if let Some(pos) = self.exceptions.iter().position(|(d, _)| *d == dev) {
            let left = self.exceptions[pos].1.minus(access);
            if left.is_empty() {
                self.exceptions.remove(pos);
            } else {
                self.exceptions[pos].1 = left;
            }
        }
        Ok(())
    }

    /// Whether everything is allowed (no filter needed).
    pub fn allows_all(&self) -> bool {
        self.default_allow && self.exceptions.is_empty()
    }

    /// The v1 kernel's verdict on `access` to a device: in deny-by-default mode one
    /// exception must grant all of the access; in allow-by-default mode any exception that
    /// shares a bit of it refuses it. The reference the BPF program is tested against.
    pub fn permits(&self, typ: DevType, major: u32, minor: u32, access: Access) -> bool {
        let matches = |d: &DevMatch| {
            d.typ == typ && d.major.is_none_or(|m| m == major) && d.minor.is_none_or(|m| m == minor)
        };
        if self.default_allow {
            !self
                .exceptions
                .iter()
                .any(|(d, a)| matches(d) && a.intersects(access))
        } else {
            self.exceptions
                .iter()
                .any(|(d, a)| matches(d) && a.contains(access))
        }
    }

    /// `devices.list` as the v1 kernel shows this state.
    pub fn v1_list(&self) -> Vec<String> {
        if self.default_allow {
            // Deny exceptions are not listed at all; an allow-all cgroup lists this.
            return vec!["a *:* rwm".to_string()];
        }
        self.exceptions
            .iter()
            .map(|(d, a)| format!("{d} {a}"))
            .collect()
    }
}

/// Where the rules go for one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// The cgroup's directory in the v1 `devices` hierarchy.
    V1(&'a Path),
    /// The cgroup's cgroup2 directory: a BPF program.
    V2(&'a Path),
}

/// Applies `rules` (in order) to the cgroup at `target`. The whole list is checked first;
/// nothing is written when a rule is invalid.
pub fn apply(target: Target<'_>, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let parsed = parse_rules(rules)?;
    let state = DeviceState::replay(&parsed)?;
    match target {
        Target::V1(dir) => v1::apply(dir, &parsed),
        Target::V2(dir) => bpf::apply(dir, &state),
    }
}

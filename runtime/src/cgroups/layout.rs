//! Where the cgroup hierarchies are mounted, read once from `/proc/self/mountinfo`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::CgroupMode;

/// Where distributions mount cgroups.
pub(crate) const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup v1 controllers we recognise in a mount's options; anything else there
/// (`rw`, `clone_children`, `name=systemd`, ...) is a flag or a named hierarchy.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The mounted hierarchies. Tests build one over a tempdir to drive the real code paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub mode: CgroupMode,
    /// v1 controller → mount point of its hierarchy. Co-mounted controllers
    /// (`cpu,cpuacct`) share one mount point.
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 mount point, if cgroup2 is mounted (the whole tree in Unified mode,
    /// usually `/sys/fs/cgroup/unified` in Hybrid mode).
    pub unified: Option<PathBuf>,
    /// What the cgroup2 root offers (`cgroup.controllers`): all of them in Unified mode,
    /// those not bound to a v1 hierarchy (often none, or just hugetlb) in Hybrid mode.
    pub unified_controllers: BTreeSet<String>,
}

impl Layout {
    /// The host's layout. Falls back to statfs of `/sys/fs/cgroup` when mountinfo can't
    /// be read.
    pub fn detect() -> Layout {
        let mut layout = match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => parse_mountinfo(&text),
            Err(_) => Self::from_statfs(),
        };
        layout.read_unified_controllers();
        layout
    }

    fn from_statfs() -> Layout {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
        match statfs(DEFAULT_ROOT) {
            Ok(s) if s.filesystem_type() == CGROUP2_SUPER_MAGIC => Layout::unified(DEFAULT_ROOT),
            _ => Layout {
                mode: CgroupMode::Legacy,
                v1: BTreeMap::new(),
                unified: None,
                unified_controllers: BTreeSet::new(),
            },
        }
    }

    /// A pure cgroup2 layout rooted at `root` (the controllers are not read yet).
    pub fn unified(root: impl Into<PathBuf>) -> Layout {
        Layout {
            mode: CgroupMode::Unified,
            v1: BTreeMap::new(),
            unified: Some(root.into()),
            unified_controllers: BTreeSet::new(),
        }
    }

    /// Fills `unified_controllers` from the cgroup2 root's `cgroup.controllers`.
    pub fn read_unified_controllers(&mut self) {
        if let Some(root) = &self.unified {
            let text = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            self.unified_controllers = text.split_whitespace().map(str::to_string).collect();
        }
    }

    /// Whether hugetlb limits go to the cgroup2 side of a hybrid host.
    pub fn hugetlb_on_unified(&self) -> bool {
        self.mode == CgroupMode::Hybrid
            && !self.v1.contains_key("hugetlb")
            && self.unified_controllers.contains("hugetlb")
    }

    /// Each distinct v1 hierarchy's mount point, once.
    pub fn v1_mounts(&self) -> BTreeSet<&Path> {
        self.v1.values().map(PathBuf::as_path).collect()
    }
}

/// Parses mountinfo text (proc(5)) into a [`Layout`]; pure, for tests.
///
/// Unified: cgroup2 is mounted and no v1 controller is (or cgroup2 sits at `/sys/fs/cgroup`
/// itself). Hybrid: v1 controllers plus a cgroup2 mount. Legacy: v1 only.
pub(crate) fn parse_mountinfo(text: &str) -> Layout {
    let mut v1: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut unified: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(fstype), Some(super_opts)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape(mount_point));
        match *fstype {
            "cgroup2" => unified.push(mount_point),
            "cgroup" => {
                for opt in super_opts.split(',') {
                    if !V1_CONTROLLERS.contains(&opt) {
                        continue;
                    }
                    // First mount wins, except that one under /sys/fs/cgroup beats one elsewhere.
                    let better = match v1.get(opt) {
                        None => true,
                        Some(old) => {
                            !old.starts_with(DEFAULT_ROOT) && mount_point.starts_with(DEFAULT_ROOT)
                        }
                    };
                    if better {
                        v1.insert(opt.to_string(), mount_point.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let rank = |p: &PathBuf| {
        if p == Path::new(DEFAULT_ROOT) {
            0
        } else if p == &Path::new(DEFAULT_ROOT).join("unified") {
            1
        } else if p.starts_with(DEFAULT_ROOT) {
            2
        } else {
            3
        }
    };
    // min_by_key keeps the first of equals: mount order.
    let unified = unified.into_iter().min_by_key(rank);
    let mode = match &unified {
        Some(u) if v1.is_empty() || u == Path::new(DEFAULT_ROOT) => {
            // v1 mounts beside a cgroup2 root are strays we don't use.
            v1.clear();
            CgroupMode::Unified
        }
        Some(_) => CgroupMode::Hybrid,
        None => CgroupMode::Legacy,
    };
    Layout {
        mode,
        v1,
        unified,
        unified_controllers: BTreeSet::new(),
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            (b'0'..=b'3').contains(&d[0]) && d[1..].iter().all(|c| (b'0'..=b'7').contains(c))
        });
        if let (b'\\', Some(d)) = (b[i], octal) {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
26 21 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const LEGACY_COMOUNTED: &str = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
29 25 0:25 / /sys/fs/cgroup/net_cls,net_prio rw shared:10 - cgroup cgroup rw,net_cls,net_prio
30 25 0:26 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/hugetlb rw shared:12 - cgroup cgroup rw,hugetlb
90 22 0:26 / /mnt/other\\040dir rw - cgroup cgroup rw,memory
";

    #[test]
    fn detects_each_mode() {
        struct Case {
            name: &'static str,
            text: &'static str,
            mode: CgroupMode,
            unified: Option<&'static str>,
            v1: &'static [(&'static str, &'static str)],
        }
        let cases = [
            Case {
                name: "hybrid (this host)",
                text: HYBRID,
                mode: CgroupMode::Hybrid,
                unified: Some("/sys/fs/cgroup/unified"),
                v1: &[
                    ("blkio", "/sys/fs/cgroup/blkio"),
                    ("cpu", "/sys/fs/cgroup/cpu"),
                    ("cpuacct", "/sys/fs/cgroup/cpuacct"),
                    ("cpuset", "/sys/fs/cgroup/cpuset"),
                    ("devices", "/sys/fs/cgroup/devices"),
                    ("freezer", "/sys/fs/cgroup/freezer"),
                    ("memory", "/sys/fs/cgroup/memory"),
                    ("pids", "/sys/fs/cgroup/pids"),
                ],
            },
            Case {
                name: "unified",
                text: UNIFIED,
                mode: CgroupMode::Unified,
                unified: Some("/sys/fs/cgroup"),
                v1: &[],
            },
            Case {
                name: "legacy, co-mounted, a second mount elsewhere",
                text: LEGACY_COMOUNTED,
                mode: CgroupMode::Legacy,
                unified: None,
                v1: &[
                    ("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
                    ("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
                    ("hugetlb", "/sys/fs/cgroup/hugetlb"),
                    ("memory", "/sys/fs/cgroup/memory"),
                    ("net_cls", "/sys/fs/cgroup/net_cls,net_prio"),
                    ("net_prio", "/sys/fs/cgroup/net_cls,net_prio"),
                ],
            },
            Case {
                name: "no cgroups at all",
                text: "22 1 259:1 / / rw - ext4 /dev/root rw\n",
                mode: CgroupMode::Legacy,
                unified: None,
                v1: &[],
            },
            Case {
                name: "cgroup2 root with a stray v1 mount",
                text: "26 21 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                       40 26 0:40 / /run/netcls rw - cgroup cgroup rw,net_cls\n",
                mode: CgroupMode::Unified,
                unified: Some("/sys/fs/cgroup"),
                v1: &[],
            },
        ];
        for c in cases {
            let l = parse_mountinfo(c.text);
            assert_eq!(l.mode, c.mode, "{}", c.name);
            assert_eq!(l.unified.as_deref(), c.unified.map(Path::new), "{}", c.name);
            let want: BTreeMap<String, PathBuf> =
                c.v1.iter()
                    .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
                    .collect();
            assert_eq!(l.v1, want, "{}", c.name);
        }
    }

    #[test]
    fn co_mounted_controllers_share_one_hierarchy() {
        let l = parse_mountinfo(LEGACY_COMOUNTED);
        let mounts: Vec<&Path> = l.v1_mounts().into_iter().collect();
        assert_eq!(mounts.len(), 4, "{mounts:?}");
    }

    #[test]
    fn hugetlb_on_the_unified_side_of_a_hybrid_host() {
        let mut l = parse_mountinfo(HYBRID);
        assert!(
            !l.hugetlb_on_unified(),
            "not until cgroup.controllers lists it"
        );
        l.unified_controllers.insert("hugetlb".into());
        assert!(l.hugetlb_on_unified());
        let mut legacy = parse_mountinfo(LEGACY_COMOUNTED);
        legacy.unified_controllers.insert("hugetlb".into());
        assert!(!legacy.hugetlb_on_unified());
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/mnt/other\\040dir"), "/mnt/other dir");
        assert_eq!(unescape("/a\\\\b"), "/a\\\\b");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
    }
}

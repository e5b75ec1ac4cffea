//! The cgroup manager against the host's real cgroup filesystem, in whatever mode the host
//! has (this project's VM: v1 hybrid, hugetlb on the cgroup2 side). Root only: skipped with
//! a printed reason otherwise. Each test makes its own `/corral-test-<random>` parent and
//! removes it even when it fails.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use runtime::cgroups::{self, Cgroup, CgroupError, CgroupMode, Resources};

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("skipping {test}: needs root to create cgroups");
    true
}

/// A test parent cgroup and a leaf beneath it; on drop, kills and removes both.
struct Fixture {
    parent: Cgroup,
    leaf: Cgroup,
    child: Option<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        let parent = format!("/corral-test-{:016x}", rand::random::<u64>());
        Fixture {
            leaf: Cgroup::new(&format!("{parent}/pod")).unwrap(),
            parent: Cgroup::new(&parent).unwrap(),
            child: None,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for cg in [&self.leaf, &self.parent] {
            if let Err(e) = cg.kill_all().and_then(|()| cg.delete()) {
                eprintln!("cleanup of {} failed: {e}", cg.path());
            }
        }
    }
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The hierarchies of this host that a process joins, as `/proc/<pid>/cgroup` names
/// them: (controller list or "" for cgroup2, the cgroup's directory for it).
fn joined_hierarchies(cg: &Cgroup) -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, controllers) = (it.next()?, it.next()?);
            let key = if controllers.is_empty() {
                "unified"
            } else {
                controllers.split(',').next()?
            };
            cg.fs_path(key).map(|p| (controllers.to_string(), p))
        })
        .collect()
}

#[test]
fn pod_cgroup_lifecycle() {
    if skip_unless_root("pod_cgroup_lifecycle") {
        return;
    }
    let mut fx = Fixture::new();
    let cg = fx.leaf.clone();
    let mode = cgroups::mode();
    eprintln!("cgroup mode: {mode:?}");
    assert_eq!(cg.mode(), mode);

    assert!(!cg.exists());
    cg.create().unwrap();
    cg.create().unwrap();
    assert!(cg.exists());

    cg.apply(&Resources {
        memory_limit: Some(64 << 20),
        pids_limit: Some(50),
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        ..Default::default()
    })
    .unwrap();

    // What a user reading the cgroup files sees.
    match mode {
        CgroupMode::Unified => {
            let dir = cg.fs_path("memory").unwrap();
            assert_eq!(read(dir.join("memory.max")), "67108864");
            assert_eq!(read(dir.join("pids.max")), "50");
            assert_eq!(read(dir.join("cpu.weight")), "20");
            assert_eq!(read(dir.join("cpu.max")), "50000 100000");
        }
        CgroupMode::Legacy | CgroupMode::Hybrid => {
            let mem = cg.fs_path("memory").expect("memory controller mounted");
            assert_eq!(read(mem.join("memory.limit_in_bytes")), "67108864");
            let pids = cg.fs_path("pids").expect("pids controller mounted");
            assert_eq!(read(pids.join("pids.max")), "50");
            let cpu = cg.fs_path("cpu").expect("cpu controller mounted");
            assert_eq!(read(cpu.join("cpu.shares")), "512");
            assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
            if let Some(cpuset) = cg.fs_path("cpuset") {
                assert!(
                    !read(cpuset.join("cpuset.cpus")).is_empty(),
                    "cpuset filled from parent"
                );
                assert!(
                    !read(cpuset.join("cpuset.mems")).is_empty(),
                    "cpuset filled from parent"
                );
            }
        }
    }

    // A child that waits until it is inside, then burns a little CPU and touches fresh
    // memory (exec), then sleeps. Without the wait, on an idle machine the loop could be over
    // before the child joins, and nothing would be charged to the cgroup.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "read go; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 30",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut go = child.stdin.take().unwrap();
    fx.child = Some(child);
    cg.add_process(pid).unwrap();
    assert_eq!(cg.pids().unwrap(), vec![pid]);
    {
        use std::io::Write;
        go.write_all(b"go\n").unwrap();
    }
    drop(go);

    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let joined = joined_hierarchies(&cg);
    assert!(!joined.is_empty());
    for (controllers, _) in &joined {
        let line = proc_cgroup
            .lines()
            .find(|l| l.split(':').nth(1) == Some(controllers.as_str()))
            .unwrap_or_else(|| panic!("no {controllers:?} line in {proc_cgroup}"));
        assert!(
            line.ends_with(&format!(":{}", cg.path())),
            "{line:?} should end in {}",
            cg.path()
        );
    }

    // Wait until the usage shows (the loop above, then exec's fresh pages).
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s = cg.stats().unwrap();
        let cpu = s.cpu.usage_ns.unwrap_or(0);
        let mem = s.memory.usage_bytes.unwrap_or(0);
        if (cpu > 0 && mem > 0) || Instant::now() > deadline {
            break s;
        }
        thread::sleep(Duration::from_millis(50));
    };
    eprintln!("stats: {stats:?}");
    assert!(stats.cpu.usage_ns.unwrap() > 0, "{stats:?}");
    assert!(stats.memory.usage_bytes.unwrap() > 0, "{stats:?}");
    assert!(stats.memory.working_set_bytes.unwrap() <= stats.memory.usage_bytes.unwrap());
    assert_eq!(stats.memory.limit_bytes, Some(64 << 20));
    assert_eq!(stats.memory.oom_kills, Some(0));
    assert_eq!(stats.pids.current, Some(1));
    assert_eq!(stats.pids.limit, Some(50));

    cg.kill_all().unwrap();
    let status = fx.child.take().unwrap().wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(cg.pids().unwrap().is_empty());

    // The parent refuses to go while the leaf is there, and stays whole.
    assert!(matches!(fx.parent.delete(), Err(CgroupError::Busy { .. })));
    assert!(cg.exists());

    let dirs: Vec<PathBuf> = joined.iter().map(|(_, d)| d.clone()).collect();
    cg.delete().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} still there", d.display());
    }
    assert!(!cg.exists());
    cg.delete().unwrap();
    assert!(fx.parent.exists(), "delete removes only the leaf");
}

#[test]
fn kill_all_kills_a_busy_tree() {
    if skip_unless_root("kill_all_kills_a_busy_tree") {
        return;
    }
    let mut fx = Fixture::new();
    let cg = fx.leaf.clone();
    cg.create().unwrap();
    cg.apply(&Resources {
        pids_limit: Some(200),
        ..Default::default()
    })
    .unwrap();
    // A shell that keeps forking: the freeze (v1 freezer / cgroup.kill) must stop it.
    let child = Command::new("sh")
        .args(["-c", "while :; do sleep 30 & done"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    cg.add_process(child.id() as i32).unwrap();
    fx.child = Some(child);
    thread::sleep(Duration::from_millis(100));
    assert!(!cg.pids().unwrap().is_empty());
    cg.kill_all().unwrap();
    assert!(cg.pids().unwrap().is_empty());
    let _ = fx.child.take().unwrap().wait();
    cg.delete().unwrap();
    assert!(!cg.exists());
}

#[test]
fn hugepage_limit_lands_where_hugetlb_is() {
    if skip_unless_root("hugepage_limit_lands_where_hugetlb_is") {
        return;
    }
    if !std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        eprintln!("skipping hugepage_limit_lands_where_hugetlb_is: no 2 MiB huge pages");
        return;
    }
    let fx = Fixture::new();
    let cg = &fx.leaf;
    cg.create().unwrap();
    let res = Resources {
        hugepage_limits: vec![("2MB".into(), 4 << 21)],
        ..Default::default()
    };
    match cg.fs_path("hugetlb") {
        None => {
            eprintln!("no hugetlb controller on this host: the limit is skipped");
            cg.apply(&res).unwrap();
        }
        Some(dir) => {
            cg.apply(&res).unwrap();
            let v2 = dir.join("hugetlb.2MB.max");
            let file = if v2.exists() {
                v2
            } else {
                dir.join("hugetlb.2MB.limit_in_bytes")
            };
            eprintln!("hugetlb limit in {}", file.display());
            assert_eq!(read(file), "8388608");
        }
    }
}

#[test]
fn bad_paths_are_refused_before_any_io() {
    for p in ["", "/", "relative", "/a/../b", "/a//b"] {
        let err = Cgroup::new(p).unwrap_err();
        let err: runtime::Error = err.into();
        assert!(
            matches!(err.kind(), runtime::ErrorKind::InvalidArgument { ref field } if field == "linux.cgroup_parent"),
            "{p:?}: {err}"
        );
    }
}

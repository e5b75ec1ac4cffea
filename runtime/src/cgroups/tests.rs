//! The manager's code paths over tempdir fixtures: a fake cgroup2 tree for Unified hosts
//! and fake v1 hierarchies (plus a cgroup2 side) for Legacy and Hybrid ones. A fixture
//! plays the kernel's part by hand: after `create()` makes a directory, the test writes
//! the interface files the kernel would have put there.

use std::collections::BTreeMap;
use std::fs as stdfs;
use std::path::Path;

use super::*;
use crate::error::ErrorKind;

fn put(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        stdfs::create_dir_all(parent).unwrap();
    }
    stdfs::write(path, text).unwrap();
}

fn get(path: &Path) -> String {
    stdfs::read_to_string(path).unwrap()
}

/// A cgroup2 directory as the kernel would fill it, with `controllers` enabled.
fn v2_dir(dir: &Path, controllers: &str) {
    put(&dir.join("cgroup.controllers"), controllers);
    put(&dir.join("cgroup.subtree_control"), "");
    for f in ["cgroup.procs", "cgroup.kill", "cgroup.freeze"] {
        put(&dir.join(f), "");
    }
    let files: &[(&str, &[&str])] = &[
        ("cpu", &["cpu.weight", "cpu.max"]),
        ("memory", &["memory.max", "memory.swap.max", "memory.high"]),
        ("pids", &["pids.max"]),
        ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
        ("hugetlb", &["hugetlb.2MB.max"]),
    ];
    for (c, fs) in files {
        if controllers.split_whitespace().any(|x| x == *c) {
            for f in *fs {
                put(&dir.join(f), "initial");
            }
        }
    }
}

fn sample() -> Resources {
    Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(64 << 20),
        memory_swap_limit: Some(64 << 20),
        pids_limit: Some(50),
        cpuset_cpus: Some("0".into()),
        cpuset_mems: Some("0".into()),
        hugepage_limits: vec![("2MB".into(), 4 << 21)],
        unified: BTreeMap::new(),
    }
}

#[test]
fn validate_path_table() {
    let ok = [
        "/kubepods",
        "/kubepods/burstable/pod0f2c7b3a-1d2e-4c5b-9a8f-0123456789ab",
        "/kubepods.slice/kubepods-burstable.slice/x_y:z@1",
        "/a/b/c/d/e",
    ];
    for p in ok {
        assert!(validate_path(p).is_ok(), "{p}");
    }
    let long = format!("/{}", "a".repeat(256));
    let bad = [
        "",
        "/",
        "kubepods/pod1",
        "/kubepods/../etc",
        "/kubepods/./pod",
        "/..",
        "/kubepods//pod",
        "/kubepods/",
        "/kube pods",
        "/kubepods/pod\n1",
        "/kubepods/pöd",
        "/kubepods/pod*",
        long.as_str(),
    ];
    for p in bad {
        let err = validate_path(p).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidArgument {
                field: "linux.cgroup_parent".into()
            },
            "{p:?}"
        );
        assert!(err.to_string().contains("linux.cgroup_parent"), "{err}");
        assert!(Cgroup::new(p).is_err(), "{p:?}");
    }
    // Into the crate's error, kind kept.
    let e: crate::Error = validate_path("/..").unwrap_err().into();
    assert!(
        matches!(e.kind(), ErrorKind::InvalidArgument { field } if field == "linux.cgroup_parent")
    );
}

#[test]
fn host_mode_is_detected() {
    // Whatever the host is, detection settles on one mode and the layout agrees with it.
    let l = host_layout();
    match mode() {
        CgroupMode::Unified => assert!(l.unified.is_some() && l.v1.is_empty()),
        CgroupMode::Hybrid => assert!(l.unified.is_some() && !l.v1.is_empty()),
        CgroupMode::Legacy => assert!(l.unified.is_none()),
    }
}

// ---- Unified (pure v2) ----

#[test]
fn v2_create_enables_controllers_in_ancestors_only() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    v2_dir(r, "cpuset cpu io memory hugetlb pids rdma misc");
    // kubelet's parent already exists with some controllers, one enabled below it.
    v2_dir(&r.join("kubepods"), "cpu memory pids");
    put(&r.join("kubepods/cgroup.subtree_control"), "memory");

    let cg = Cgroup::with_root("/kubepods/pod1", r).unwrap();
    assert_eq!(cg.mode(), CgroupMode::Unified);
    assert!(!cg.exists());
    cg.create().unwrap();
    assert!(r.join("kubepods/pod1").is_dir());
    assert!(cg.exists());
    assert_eq!(
        get(&r.join("cgroup.subtree_control")),
        "+cpu +cpuset +hugetlb +io +memory +pids"
    );
    assert_eq!(
        get(&r.join("kubepods/cgroup.subtree_control")),
        "+cpu +pids"
    );
    // The leaf itself never gets subtree_control written (it will hold processes).
    assert!(!r.join("kubepods/pod1/cgroup.subtree_control").exists());
    cg.create().unwrap();
    assert_eq!(cg.fs_path("memory"), Some(r.join("kubepods/pod1")));
}

#[test]
fn v2_apply_writes_translated_values() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    v2_dir(r, "cpuset cpu memory hugetlb pids");
    let cg = Cgroup::with_root("/pod1", r).unwrap();
    cg.create().unwrap();
    let leaf = r.join("pod1");
    v2_dir(&leaf, "cpuset cpu memory hugetlb pids");

    let mut res = sample();
    res.unified.insert("memory.high".into(), "50M".into());
    cg.apply(&res).unwrap();
    for (file, want) in [
        ("cpu.weight", "20"),
        ("cpu.max", "50000 100000"),
        ("memory.max", "67108864"),
        ("memory.swap.max", "0"),
        ("pids.max", "50"),
        ("cpuset.cpus", "0"),
        ("cpuset.mems", "0"),
        ("hugetlb.2MB.max", "8388608"),
        ("memory.high", "50M"),
    ] {
        assert_eq!(get(&leaf.join(file)), want, "{file}");
    }
}

#[test]
fn v2_missing_controller_is_skipped_and_the_rest_written() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    v2_dir(r, "cpu memory pids");
    let cg = Cgroup::with_root("/pod1", r).unwrap();
    cg.create().unwrap();
    let leaf = r.join("pod1");
    v2_dir(&leaf, "cpu memory pids");

    // No cpuset, no hugetlb here: those limits are skipped, the others land.
    cg.apply(&sample()).unwrap();
    assert_eq!(get(&leaf.join("cpu.weight")), "20");
    assert_eq!(get(&leaf.join("pids.max")), "50");
    assert!(!leaf.join("cpuset.cpus").exists());
    assert!(!leaf.join("hugetlb.2MB.max").exists());

    // A unified key is an explicit request for a file: refused, naming the field, before
    // any write.
    put(&leaf.join("pids.max"), "initial");
    let res = Resources {
        unified: BTreeMap::from([("hugetlb.2MB.max".into(), "0".into())]),
        ..sample()
    };
    let err = cg.apply(&res).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidArgument {
            field: "linux.resources.unified".into()
        },
        "{err}"
    );
    assert_eq!(get(&leaf.join("pids.max")), "initial", "nothing written");
    let res = Resources {
        cpuset_cpus: None,
        cpuset_mems: None,
        hugepage_limits: Vec::new(),
        ..sample()
    };

    // A "no swap" setting on a kernel without memory.swap.max is fine; real swap is not.
    stdfs::remove_file(leaf.join("memory.swap.max")).unwrap();
    cg.apply(&res).unwrap();
    let with_swap = Resources {
        memory_swap_limit: Some(128 << 20),
        ..res
    };
    assert!(matches!(
        cg.apply(&with_swap),
        Err(CgroupError::Unsupported {
            field: "linux.resources.memory_swap_limit_in_bytes",
            ..
        })
    ));
}

#[test]
fn v2_apply_on_a_missing_cgroup_is_not_found() {
    let root = tempfile::tempdir().unwrap();
    v2_dir(root.path(), "cpu memory pids");
    let cg = Cgroup::with_root("/nope", root.path()).unwrap();
    let err = cg.apply(&sample()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(cg.stats().unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(cg.pids().unwrap(), Vec::<i32>::new());
    cg.kill_all().unwrap();
    cg.delete().unwrap();
}

#[test]
fn v2_processes_kill_and_delete() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    v2_dir(r, "cpu memory pids");
    let cg = Cgroup::with_root("/kubepods/pod1", r).unwrap();
    cg.create().unwrap();
    let leaf = r.join("kubepods/pod1");
    put(&leaf.join("cgroup.procs"), "");
    cg.add_process(4242).unwrap();
    assert_eq!(get(&leaf.join("cgroup.procs")), "4242");
    assert!(matches!(
        cg.add_process(0),
        Err(CgroupError::InvalidResource { .. })
    ));

    put(&leaf.join("cgroup.procs"), "12\n0\n7\n12\n");
    assert_eq!(cg.pids().unwrap(), vec![7, 12]);
    put(&leaf.join("cgroup.procs"), "12\nabc\n");
    assert!(matches!(cg.pids(), Err(CgroupError::Parse { .. })));

    // An empty cgroup: cgroup.kill is written and there is nothing to wait for.
    put(&leaf.join("cgroup.procs"), "");
    put(&leaf.join("cgroup.kill"), "");
    cg.kill_all().unwrap();
    assert_eq!(get(&leaf.join("cgroup.kill")), "1");
    // Without cgroup.kill, the freezer path: frozen and thawed again.
    stdfs::remove_file(leaf.join("cgroup.kill")).unwrap();
    put(&leaf.join("cgroup.freeze"), "0");
    cg.kill_all().unwrap();
    assert_eq!(get(&leaf.join("cgroup.freeze")), "0");

    // The fake kernel files go, as the real ones do at rmdir.
    for e in stdfs::read_dir(&leaf).unwrap() {
        stdfs::remove_file(e.unwrap().path()).unwrap();
    }
    cg.delete().unwrap();
    assert!(!leaf.exists());
    assert!(r.join("kubepods").is_dir(), "the parent stays");
    cg.delete().unwrap();
    assert!(!cg.exists());
}

#[test]
fn v2_delete_with_a_child_cgroup_fails_and_removes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    v2_dir(r, "");
    let pod = Cgroup::with_root("/pod1", r).unwrap();
    let ctr = Cgroup::with_root("/pod1/ctr", r).unwrap();
    ctr.create().unwrap();
    // A tempdir says ENOTEMPTY where cgroupfs says EBUSY; either way it's an error.
    assert!(pod.delete().is_err());
    assert!(r.join("pod1/ctr").is_dir());
    ctr.delete().unwrap();
    pod.delete().unwrap();
    assert!(!r.join("pod1").exists());
}

#[test]
fn v2_stats_from_files() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    v2_dir(r, "cpu memory pids");
    let cg = Cgroup::with_root("/pod1", r).unwrap();
    cg.create().unwrap();
    let leaf = r.join("pod1");
    put(
        &leaf.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 30\n",
    );
    put(&leaf.join("memory.current"), "1000000\n");
    put(
        &leaf.join("memory.stat"),
        "anon 600000\nfile 300000\ninactive_file 250000\npgfault 77\npgmajfault 3\n",
    );
    put(&leaf.join("memory.max"), "max\n");
    put(
        &leaf.join("memory.events"),
        "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n",
    );
    put(&leaf.join("pids.current"), "3\n");
    put(&leaf.join("pids.max"), "50\n");

    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage_ns, Some(1_500_000));
    assert_eq!(s.cpu.user_ns, Some(1_000_000));
    assert_eq!(s.cpu.system_ns, Some(500_000));
    assert_eq!(s.cpu.nr_throttled, Some(2));
    assert_eq!(s.cpu.throttled_ns, Some(30_000));
    assert_eq!(s.memory.usage_bytes, Some(1_000_000));
    assert_eq!(s.memory.working_set_bytes, Some(750_000));
    assert_eq!(s.memory.rss_bytes, Some(600_000));
    assert_eq!(s.memory.cache_bytes, Some(300_000));
    assert_eq!(s.memory.page_faults, Some(77));
    assert_eq!(s.memory.major_page_faults, Some(3));
    assert_eq!(s.memory.limit_bytes, None);
    assert_eq!(s.memory.oom_kills, Some(1));
    assert_eq!(s.pids.current, Some(3));
    assert_eq!(s.pids.limit, Some(50));

    // No memory controller enabled: those figures are absent, the call still works.
    stdfs::remove_file(leaf.join("memory.current")).unwrap();
    let s = cg.stats().unwrap();
    assert_eq!(s.memory, MemoryStats::default());
    assert_eq!(s.cpu.usage_ns, Some(1_500_000));
}

// ---- Legacy and Hybrid (v1) ----

/// v1 hierarchies under `base`: one per entry (co-mounted names share one), plus, for a
/// hybrid layout, a cgroup2 side offering `unified_controllers`.
fn v1_layout(base: &Path, hierarchies: &[&str], unified_controllers: Option<&str>) -> Arc<Layout> {
    let mut v1 = BTreeMap::new();
    for h in hierarchies {
        let mount = base.join(h);
        stdfs::create_dir_all(&mount).unwrap();
        for c in h.split(',') {
            v1.insert(c.to_string(), mount.clone());
        }
    }
    let unified = unified_controllers.map(|cs| {
        let u = base.join("unified");
        v2_dir(&u, cs);
        u
    });
    let mut layout = Layout {
        mode: if unified.is_some() {
            CgroupMode::Hybrid
        } else {
            CgroupMode::Legacy
        },
        v1,
        unified,
        unified_controllers: Default::default(),
    };
    layout.read_unified_controllers();
    Arc::new(layout)
}

const THIS_HOST: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

#[test]
fn hybrid_create_makes_every_hierarchy_and_fills_cpuset() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let layout = v1_layout(b, THIS_HOST, Some("hugetlb"));
    put(&b.join("cpuset/cpuset.cpus"), "0-3\n");
    put(&b.join("cpuset/cpuset.mems"), "0\n");
    // What the kernel puts in new cpuset cgroups: empty lists.
    for d in ["cpuset/kubepods", "cpuset/kubepods/pod1"] {
        put(&b.join(d).join("cpuset.cpus"), "\n");
        put(&b.join(d).join("cpuset.mems"), "\n");
    }
    let cg = Cgroup::with_layout("/kubepods/pod1", layout).unwrap();
    cg.create().unwrap();
    for h in THIS_HOST.iter().chain(&["unified"]) {
        assert!(b.join(h).join("kubepods/pod1").is_dir(), "{h}");
    }
    assert_eq!(get(&b.join("cpuset/kubepods/cpuset.cpus")), "0-3");
    assert_eq!(get(&b.join("cpuset/kubepods/pod1/cpuset.cpus")), "0-3");
    assert_eq!(get(&b.join("cpuset/kubepods/pod1/cpuset.mems")), "0");
    // Hybrid: nothing enabled on the cgroup2 side until a limit needs it.
    assert_eq!(get(&b.join("unified/cgroup.subtree_control")), "");

    assert_eq!(cg.fs_path("memory"), Some(b.join("memory/kubepods/pod1")));
    assert_eq!(cg.fs_path("hugetlb"), Some(b.join("unified/kubepods/pod1")));
    assert_eq!(cg.fs_path("unified"), Some(b.join("unified/kubepods/pod1")));
    assert_eq!(cg.fs_path("net_cls"), None);
}

#[test]
fn hybrid_apply_puts_hugetlb_on_the_cgroup2_side() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let layout = v1_layout(b, THIS_HOST, Some("hugetlb"));
    let cg = Cgroup::with_layout("/pod1", layout).unwrap();
    cg.create().unwrap();
    let files = [
        "cpu/pod1/cpu.shares",
        "cpu/pod1/cpu.cfs_quota_us",
        "cpu/pod1/cpu.cfs_period_us",
        "memory/pod1/memory.limit_in_bytes",
        "pids/pod1/pids.max",
        "cpuset/pod1/cpuset.cpus",
        "cpuset/pod1/cpuset.mems",
    ];
    for f in files {
        put(&b.join(f), "initial");
    }
    // The fake kernel: hugetlb files appear in the leaf once the root enables it.
    v2_dir(&b.join("unified/pod1"), "hugetlb");
    // No swap accounting here (no memsw file): memsw == memory asks for nothing.
    cg.apply(&sample()).unwrap();
    for (f, want) in files
        .iter()
        .zip(["512", "50000", "100000", "67108864", "50", "0", "0"])
    {
        assert_eq!(get(&b.join(f)), want, "{f}");
    }
    assert_eq!(get(&b.join("unified/cgroup.subtree_control")), "+hugetlb");
    assert_eq!(get(&b.join("unified/pod1/hugetlb.2MB.max")), "8388608");

    // Real swap without swap accounting: an error naming the field.
    let res = Resources {
        memory_swap_limit: Some(128 << 20),
        ..sample()
    };
    let err = cg.apply(&res).unwrap_err();
    assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("memory_swap_limit_in_bytes"),
        "{err}"
    );
    put(
        &b.join("memory/pod1/memory.memsw.limit_in_bytes"),
        "9223372036854771712",
    );
    put(
        &b.join("memory/pod1/memory.limit_in_bytes"),
        "9223372036854771712",
    );
    cg.apply(&res).unwrap();
    assert_eq!(
        get(&b.join("memory/pod1/memory.memsw.limit_in_bytes")),
        "134217728"
    );
}

#[test]
fn legacy_without_hugetlb_skips_hugepages_and_cpuset() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let layout = v1_layout(b, &["cpu,cpuacct", "memory", "pids"], None);
    let cg = Cgroup::with_layout("/pod1", layout).unwrap();
    cg.create().unwrap();
    assert!(b.join("cpu,cpuacct/pod1").is_dir());
    for f in [
        "cpu,cpuacct/pod1/cpu.shares",
        "memory/pod1/memory.limit_in_bytes",
    ] {
        put(&b.join(f), "initial");
    }
    // What kubelet sends on every host: a limit (0) for each page size it knows.
    let huge = Resources {
        cpu_shares: Some(2),
        cpuset_cpus: Some("0".into()),
        hugepage_limits: vec![("2MB".into(), 0), ("1GB".into(), 1 << 30)],
        ..Default::default()
    };
    cg.apply(&huge).unwrap();
    assert_eq!(get(&b.join("cpu,cpuacct/pod1/cpu.shares")), "2");
    assert!(!b.join("hugetlb").exists() && !b.join("cpuset").exists());

    // A unified key has no cgroup2 to go to: refused, naming the field.
    let err = cg
        .apply(&Resources {
            cpu_shares: Some(4),
            unified: BTreeMap::from([("memory.high".into(), "1G".into())]),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidArgument {
            field: "linux.resources.unified".into()
        },
        "{err}"
    );
    assert_eq!(get(&b.join("cpu,cpuacct/pod1/cpu.shares")), "2");
    cg.apply(&Resources {
        cpu_shares: Some(2),
        memory_limit: Some(1 << 20),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(get(&b.join("cpu,cpuacct/pod1/cpu.shares")), "2");
    assert_eq!(get(&b.join("memory/pod1/memory.limit_in_bytes")), "1048576");
    assert_eq!(cg.fs_path("cpuacct"), Some(b.join("cpu,cpuacct/pod1")));
    assert_eq!(cg.fs_path("unified"), None);
}

#[test]
fn hugepage_sizes_the_host_lacks_are_skipped() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let layout = v1_layout(b, &["cpu", "hugetlb"], None);
    let cg = Cgroup::with_layout("/pod1", layout).unwrap();
    cg.create().unwrap();
    put(
        &b.join("hugetlb/pod1/hugetlb.2MB.limit_in_bytes"),
        "initial",
    );
    cg.apply(&Resources {
        hugepage_limits: vec![("2MB".into(), 0), ("64KB".into(), 0)],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(get(&b.join("hugetlb/pod1/hugetlb.2MB.limit_in_bytes")), "0");
    assert!(!b.join("hugetlb/pod1/hugetlb.64KB.limit_in_bytes").exists());
    // A malformed size is still bad input.
    let err = cg
        .apply(&Resources {
            hugepage_limits: vec![("../x".into(), 0)],
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidArgument {
            field: "linux.resources.hugepage_limits".into()
        }
    );
}

#[test]
fn v1_processes_join_every_hierarchy_once() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let layout = v1_layout(b, &["cpu,cpuacct", "memory", "freezer"], Some(""));
    let cg = Cgroup::with_layout("/pod1", layout).unwrap();
    cg.create().unwrap();
    for h in ["cpu,cpuacct", "memory", "freezer", "unified"] {
        put(&b.join(h).join("pod1/cgroup.procs"), "");
    }
    cg.add_process(99).unwrap();
    for h in ["cpu,cpuacct", "memory", "freezer", "unified"] {
        assert_eq!(get(&b.join(h).join("pod1/cgroup.procs")), "99", "{h}");
    }
    assert_eq!(cg.pids().unwrap(), vec![99]);

    for h in ["cpu,cpuacct", "memory", "freezer", "unified"] {
        put(&b.join(h).join("pod1/cgroup.procs"), "");
    }
    put(&b.join("freezer/pod1/freezer.state"), "THAWED");
    cg.kill_all().unwrap();
    assert_eq!(get(&b.join("freezer/pod1/freezer.state")), "THAWED");

    let missing = Cgroup::with_layout("/gone", Arc::clone(&cg.layout)).unwrap();
    assert_eq!(
        missing.add_process(99).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn v1_stats_from_each_hierarchy() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let layout = v1_layout(b, &["cpu", "cpuacct", "memory", "pids"], Some("hugetlb"));
    let cg = Cgroup::with_layout("/pod1", layout).unwrap();
    cg.create().unwrap();
    put(&b.join("cpuacct/pod1/cpuacct.usage"), "123456789\n");
    put(&b.join("cpuacct/pod1/cpuacct.usage_user"), "100000000\n");
    put(&b.join("cpuacct/pod1/cpuacct.usage_sys"), "23456789\n");
    put(
        &b.join("cpu/pod1/cpu.stat"),
        "nr_periods 5\nnr_throttled 1\nthrottled_time 999\n",
    );
    put(&b.join("memory/pod1/memory.usage_in_bytes"), "5000000\n");
    put(
        &b.join("memory/pod1/memory.stat"),
        "cache 1\nrss 2\ninactive_file 3\ntotal_cache 2000000\ntotal_rss 2500000\n\
         total_inactive_file 1500000\ntotal_pgfault 40\ntotal_pgmajfault 4\n",
    );
    put(&b.join("memory/pod1/memory.limit_in_bytes"), "67108864\n");
    put(
        &b.join("memory/pod1/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    put(&b.join("pids/pod1/pids.current"), "1\n");
    put(&b.join("pids/pod1/pids.max"), "max\n");

    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage_ns, Some(123_456_789));
    assert_eq!(s.cpu.user_ns, Some(100_000_000));
    assert_eq!(s.cpu.system_ns, Some(23_456_789));
    assert_eq!(s.cpu.nr_periods, Some(5));
    assert_eq!(s.cpu.throttled_ns, Some(999));
    assert_eq!(s.memory.usage_bytes, Some(5_000_000));
    assert_eq!(s.memory.working_set_bytes, Some(3_500_000));
    assert_eq!(s.memory.rss_bytes, Some(2_500_000));
    assert_eq!(s.memory.cache_bytes, Some(2_000_000));
    assert_eq!(s.memory.page_faults, Some(40));
    assert_eq!(s.memory.major_page_faults, Some(4));
    assert_eq!(s.memory.limit_bytes, Some(67_108_864));
    assert_eq!(s.memory.oom_kills, Some(2));
    assert_eq!(s.pids.current, Some(1));
    assert_eq!(s.pids.limit, None);
}

#[test]
fn no_hierarchy_at_all() {
    let layout = Arc::new(layout::parse_mountinfo(
        "22 1 259:1 / / rw - ext4 /dev/root rw\n",
    ));
    let cg = Cgroup::with_layout("/pod1", layout).unwrap();
    assert!(matches!(cg.create(), Err(CgroupError::NoHierarchy)));
    assert!(matches!(cg.add_process(1), Err(CgroupError::NoHierarchy)));
    assert!(!cg.exists());
}

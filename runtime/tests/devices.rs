//! The device cgroup against the real kernel (root only; each test says why it skips):
//! the v2 BPF filter loaded, attached, replaced and detached on a cgroup2 directory (on
//! this project's hybrid VM, `/sys/fs/cgroup/unified`: cgroup BPF works there even with
//! v1 controllers beside it), and the v1 rules in `devices.list`; both judged by what a
//! process in the cgroup can open.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use runtime::cgroups::devices::{self, bpf, Target};
use runtime::cgroups::{Cgroup, CgroupMode};

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("skipping {test}: needs root to create cgroups and load BPF programs");
    true
}

/// The cgroup2 mount point, if any.
fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f.get(sep + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
    })
}

fn rule(
    allow: bool,
    t: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(Some(t))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.into()));
    r
}

fn deny_all() -> LinuxDeviceCgroup {
    rule(false, LinuxDeviceType::A, None, None, "rwm")
}

fn allow_c(major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
    rule(true, LinuxDeviceType::C, Some(major), Some(minor), access)
}

/// Runs `script` in a shell that first moves itself into `procs` (a `cgroup.procs`
/// file); Ok(()) on exit 0, else its stderr.
fn in_cgroup(procs: Option<&Path>, script: &str) -> Result<(), String> {
    let join = match procs {
        Some(p) => format!("echo $$ > {} && ", p.display()),
        None => String::new(),
    };
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{join}{script}"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn assert_opens(procs: Option<&Path>, script: &str, want: bool, what: &str) {
    let got = in_cgroup(procs, script);
    match (&got, want) {
        (Ok(()), true) => {}
        (Err(e), false) => assert!(
            e.contains("not permitted") || e.contains("EPERM") || e.contains("can't"),
            "{what}: failed, but not for the device cgroup: {e}"
        ),
        _ => panic!(
            "{what}: wanted {}, got {got:?}",
            if want { "success" } else { "refusal" }
        ),
    }
}

/// A directory removed at the end, once its processes have gone.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        for _ in 0..50 {
            match std::fs::remove_dir(&self.0) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

#[test]
fn bpf_filter_is_attached_replaced_and_enforced() {
    if skip_unless_root("bpf_filter_is_attached_replaced_and_enforced") {
        return;
    }
    let Some(root) = cgroup2_root() else {
        eprintln!("skipping bpf_filter_is_attached_replaced_and_enforced: no cgroup2 mount");
        return;
    };
    // The processes that run here are in whatever v1 devices cgroup this test is in;
    // first make sure that one lets them open what the filter will be judged on.
    for (script, what) in [
        ("exec 3</dev/null 3>/dev/null", "/dev/null rw outside"),
        ("exec 3</dev/zero", "/dev/zero outside"),
        ("exec 3</dev/full", "/dev/full outside"),
    ] {
        if let Err(e) = in_cgroup(None, script) {
            eprintln!("skipping bpf_filter_is_attached_replaced_and_enforced: {what} is refused already: {e}");
            return;
        }
    }
    let dir = Dir(root.join(format!("corral-devtest-{:016x}", rand::random::<u64>())));
    std::fs::create_dir(&dir.0).unwrap();
    let procs = dir.0.join("cgroup.procs");
    let procs = Some(procs.as_path());
    assert!(bpf::attached(&dir.0).unwrap().is_empty());

    // Deny all; zero rwm; null read-only.
    devices::apply(
        Target::V2(&dir.0),
        &[deny_all(), allow_c(1, 5, "rwm"), allow_c(1, 3, "r")],
    )
    .unwrap();
    let first = bpf::attached(&dir.0).unwrap();
    assert_eq!(first.len(), 1, "one program attached: {first:?}");
    assert_opens(procs, "exec 3</dev/zero", true, "zero, allowed");
    assert_opens(procs, "exec 3</dev/null", true, "null read, allowed");
    assert_opens(procs, "exec 3>/dev/null", false, "null write, not allowed");
    assert_opens(procs, "exec 3</dev/full", false, "full, not allowed");

    // An update replaces the program: exactly one, a new one, with the new rules.
    devices::apply(Target::V2(&dir.0), &[deny_all(), allow_c(1, 3, "rw")]).unwrap();
    let second = bpf::attached(&dir.0).unwrap();
    assert_eq!(second.len(), 1, "still one program: {second:?}");
    assert_ne!(first, second, "the program was replaced");
    assert_opens(procs, "exec 3>/dev/null", true, "null write, now allowed");
    assert_opens(procs, "exec 3</dev/zero", false, "zero, now refused");

    // Allow-all has no program at all.
    devices::apply(
        Target::V2(&dir.0),
        &[rule(true, LinuxDeviceType::A, None, None, "rwm")],
    )
    .unwrap();
    assert!(bpf::attached(&dir.0).unwrap().is_empty());
    assert_opens(procs, "exec 3</dev/full", true, "full, allow-all");
}

#[test]
fn v1_rules_land_in_devices_list() {
    if skip_unless_root("v1_rules_land_in_devices_list") {
        return;
    }
    if runtime::cgroups::mode() == CgroupMode::Unified {
        eprintln!("skipping v1_rules_land_in_devices_list: this host has no cgroup v1");
        return;
    }
    let cg = Cgroup::new(&format!("/corral-devtest-{:016x}", rand::random::<u64>())).unwrap();
    let Some(dir) = cg.fs_path("devices") else {
        eprintln!("skipping v1_rules_land_in_devices_list: no v1 devices hierarchy");
        return;
    };
    struct Cleanup(Cgroup);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.kill_all();
            let _ = self.0.delete();
        }
    }
    cg.create().unwrap();
    let _cleanup = Cleanup(cg.clone());
    let rules = [
        deny_all(),
        rule(true, LinuxDeviceType::C, None, None, "m"),
        rule(true, LinuxDeviceType::B, None, None, "m"),
        allow_c(1, 3, "rwm"),
        allow_c(1, 5, "r"),
        rule(true, LinuxDeviceType::C, Some(136), None, "rwm"),
        allow_c(1, 5, "w"),
    ];
    cg.apply_devices(&rules).unwrap();
    let list = std::fs::read_to_string(dir.join("devices.list")).unwrap();
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rw", "c 136:* rwm"]
    );
    let procs = dir.join("cgroup.procs");
    assert_opens(Some(&procs), "exec 3<>/dev/null", true, "v1: null");
    assert_opens(Some(&procs), "exec 3</dev/full", false, "v1: full");
    assert_opens(
        Some(&procs),
        "exec 3<>/dev/zero",
        true,
        "v1: zero rw (merged)",
    );

    // A rule the device cgroup cannot express is refused before any write.
    let bad = [
        deny_all(),
        rule(true, LinuxDeviceType::C, None, None, "m"),
        rule(false, LinuxDeviceType::C, Some(1), Some(3), "m"),
    ];
    let err = cg.apply_devices(&bad).unwrap_err();
    assert!(err.to_string().contains("punch a hole"), "{err}");
    let after = std::fs::read_to_string(dir.join("devices.list")).unwrap();
    assert_eq!(after, list, "nothing written");

    // Privileged: allow all.
    cg.apply_devices(&[rule(true, LinuxDeviceType::A, None, None, "rwm")])
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("devices.list"))
            .unwrap()
            .trim(),
        "a *:* rwm"
    );
}

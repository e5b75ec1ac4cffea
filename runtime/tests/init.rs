//! The container executor (`runtime::shim::init`) as root, against a busybox rootfs.
//!
//! `create` and `exec` must run in a single-threaded process (they fork, and join mount
//! namespaces), so this test has no libtest harness: `main` runs each scenario in a forked
//! child that plays the shim (subreaper, SIGCHLD/SIGTERM/SIGINT blocked, SIGPIPE ignored),
//! and reports `test <name> ... ok` or FAILED. An argument selects scenarios by substring.
//! Needs root and Debian's static /bin/busybox; skips with a reason otherwise.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, Process, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};
use runtime::shim::init::{self, CreateOptions, Created, ExecOptions, InitError, Stdio};
use runtime::shim::protocol::RootfsMount;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "id", "ls", "ps", "hostname", "mount", "touch", "env", "pwd",
    "wc", "readlink", "test", "grep", "kill", "true", "false", "tr", "cut", "head", "stat",
];

type Scenario = fn();

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs /bin/busybox (busybox-static)");
        return;
    }
    let scenarios: &[(&str, Scenario)] = &[
        ("create_start_inspect", create_start_inspect),
        ("abort_before_start", abort_before_start),
        ("missing_executable", missing_executable),
        ("bad_mounts", bad_mounts),
        ("exec_into_running", exec_into_running),
        ("join_by_path", join_by_path),
        ("tty", tty),
        ("readonly_root_host_pid", readonly_root_host_pid),
        ("many_layers", many_layers),
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, scenario) in scenarios {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let ok = run_forked(*scenario);
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(1);
    }
}

/// Run `scenario` in a forked child that is set up as the shim is; true if it passed.
fn run_forked(scenario: Scenario) -> bool {
    // SAFETY: the test's main thread is its only thread (no libtest harness).
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
            let mut blocked = SigSet::empty();
            for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
                blocked.add(s);
            }
            blocked.thread_set_mask().expect("sigmask");
            // A hung scenario dies of SIGALRM instead of hanging the suite.
            // SAFETY: alarm takes no pointers.
            unsafe { libc::alarm(120) };
            let ok = std::panic::catch_unwind(scenario).is_ok();
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)))
        }
    }
}

/// A bundle, its layers and host files, and a pids cgroup; Drop cleans up.
struct Fixture {
    tmp: tempfile::TempDir,
    cgroup: Option<PathBuf>,
    rootfs: RootfsMount,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("corral-init-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path();
        let l1 = dir.join("layers/l1");
        let l2 = dir.join("layers/l2");
        for d in ["bin", "etc", "secretdir", "rodir", "home/user"] {
            fs::create_dir_all(l1.join(d)).expect("mkdir");
        }
        fs::copy("/bin/busybox", l1.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            symlink("busybox", l1.join("bin").join(applet)).expect("symlink");
        }
        write(
            &l1.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        );
        write(
            &l1.join("etc/group"),
            "root:x:0:\nwheel:x:10:\nuucp:x:20:\nuser:x:1000:\n",
        );
        write(&l1.join("etc/hostname"), "image\n");
        write(&l1.join("etc/secret"), "secret\n");
        write(&l1.join("secretdir/file"), "hidden\n");
        write(&l1.join("lower1.txt"), "one\n");
        write(&l1.join("shadowed.txt"), "from-l1\n");
        fs::set_permissions(l1.join("rodir"), fs::Permissions::from_mode(0o777)).expect("chmod");
        nix::unistd::chown(
            &l1.join("home/user"),
            Some(nix::unistd::Uid::from_raw(1000)),
            Some(nix::unistd::Gid::from_raw(1000)),
        )
        .expect("chown");
        fs::create_dir_all(&l2).expect("mkdir");
        write(&l2.join("lower2.txt"), "two\n");
        write(&l2.join("shadowed.txt"), "from-l2\n");
        // An absolute symlink in the image: a mount through it must stay in the rootfs.
        symlink("/etc", l2.join("conf")).expect("symlink");
        for d in ["upper", "work", "bundle", "data"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        fs::set_permissions(dir.join("data"), fs::Permissions::from_mode(0o777)).expect("chmod");
        write(&dir.join("hostname"), "from-host\n");
        fs::set_permissions(dir.join("hostname"), fs::Permissions::from_mode(0o666))
            .expect("chmod");
        write(&dir.join("via-link"), "linked\n");
        let cgroup = make_cgroup();
        let rootfs = RootfsMount {
            lower: vec![l2, l1],
            upper: dir.join("upper"),
            work: dir.join("work"),
            readonly: false,
        };
        Fixture {
            tmp,
            cgroup,
            rootfs,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn bundle(&self) -> PathBuf {
        self.dir().join("bundle")
    }

    fn procs(&self) -> Vec<PathBuf> {
        self.cgroup.iter().map(|c| c.join("cgroup.procs")).collect()
    }

    /// The spec corrald would write: new namespaces, the usual mounts, binds of host
    /// files, uid 1000 with two capabilities, no_new_privs, masked and read-only paths.
    fn spec(&self, args: &[&str]) -> Spec {
        let caps: std::collections::HashSet<Capability> = [Capability::Chown, Capability::NetRaw]
            .into_iter()
            .collect();
        let process = ProcessBuilder::default()
            .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            .env(vec![
                "PATH=/bin".to_string(),
                "FOO=bar".to_string(),
                "HOME=/home/user".to_string(),
            ])
            .cwd("/home/user/work")
            .user(
                UserBuilder::default()
                    .uid(1000u32)
                    .gid(1000u32)
                    .additional_gids(vec![10u32, 20])
                    .build()
                    .expect("user"),
            )
            .capabilities(
                LinuxCapabilitiesBuilder::default()
                    .bounding(caps.clone())
                    .effective(caps.clone())
                    .permitted(caps.clone())
                    .inheritable(caps.clone())
                    .ambient(caps)
                    .build()
                    .expect("caps"),
            )
            .no_new_privileges(true)
            .rlimits(vec![PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(1000u64)
                .hard(1000u64)
                .build()
                .expect("rlimit")])
            .oom_score_adj(500)
            .build()
            .expect("process");
        let namespaces = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Mount,
        ]
        .into_iter()
        .map(|typ| {
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .expect("namespace")
        })
        .collect::<Vec<_>>();
        let linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .masked_paths(vec![
                "/etc/secret".to_string(),
                "/secretdir".to_string(),
                "/proc/kcore".to_string(),
                "/does/not/exist".to_string(),
            ])
            .readonly_paths(vec!["/rodir".to_string(), "/proc/sys".to_string()])
            .sysctl(
                [("net.ipv4.ip_forward".to_string(), "1".to_string())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .expect("linux");
        SpecBuilder::default()
            .version("1.0.2")
            .root(
                RootBuilder::default()
                    .path("rootfs")
                    .readonly(false)
                    .build()
                    .expect("root"),
            )
            .hostname("corral-test")
            .process(process)
            .mounts(self.mounts())
            .linux(linux)
            .build()
            .expect("spec")
    }

    fn mounts(&self) -> Vec<Mount> {
        let m = |dest: &str, typ: &str, source: &str, options: &[&str]| {
            MountBuilder::default()
                .destination(dest)
                .typ(typ)
                .source(source)
                .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                .build()
                .expect("mount")
        };
        let host = |name: &str| self.dir().join(name).to_string_lossy().into_owned();
        vec![
            m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            m(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            m(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            m(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            ),
            m(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            ),
            m(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
            m(
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                &["nosuid", "noexec", "nodev", "relatime", "ro"],
            ),
            m(
                "/etc/hostname",
                "bind",
                &host("hostname"),
                &["rbind", "rprivate", "ro"],
            ),
            m("/data", "bind", &host("data"), &["rbind", "rprivate", "rw"]),
            m("/conf/via-link", "bind", &host("via-link"), &["bind", "ro"]),
        ]
    }

    fn write_spec(&self, spec: &Spec) {
        spec.save(self.bundle().join("config.json"))
            .expect("save spec");
    }

    /// Whether anything of this fixture is mounted in the test's (the host's) namespace.
    fn mounted_on_host(&self) -> bool {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        mountinfo.contains(self.dir().to_string_lossy().as_ref())
    }

    fn cgroup_has(&self, pid: Pid) -> bool {
        self.procs().iter().all(|procs| {
            fs::read_to_string(procs)
                .expect("cgroup.procs")
                .lines()
                .any(|l| l.trim() == pid.to_string())
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(cgroup).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A pids cgroup (v1, else the unified hierarchy) for this scenario process.
fn make_cgroup() -> Option<PathBuf> {
    let name = format!("corral-init-test-{}", std::process::id());
    for base in [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ] {
        let base = Path::new(base);
        if !base.join("cgroup.procs").exists() {
            continue;
        }
        let dir = base.join(&name);
        if fs::create_dir(&dir).is_ok() {
            return Some(dir);
        }
    }
    eprintln!("no cgroup to test with: the cgroup join goes untested");
    None
}

fn write(path: &Path, content: &str) {
    fs::write(path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Stdio over pipes: (stdio, stdout reader, stderr reader); stdin is /dev/null.
fn pipes() -> (Stdio, OwnedFd, OwnedFd) {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let stdin = fs::File::open("/dev/null").expect("/dev/null");
    (
        Stdio {
            stdin: stdin.into(),
            stdout: out_w,
            stderr: err_w,
        },
        out_r,
        err_r,
    )
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    let _ = fs::File::from(fd).read_to_string(&mut s);
    s
}

fn wait(pid: Pid) -> WaitStatus {
    loop {
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            other => return other.expect("waitpid"),
        }
    }
}

fn create(fx: &Fixture, stdio: Stdio, tty: bool) -> Result<Created, InitError> {
    let procs = fx.procs();
    init::create(CreateOptions {
        bundle: &fx.bundle(),
        rootfs: &fx.rootfs,
        stdio,
        tty,
        cgroup_procs: &procs,
    })
}

/// No child left behind: everything create or exec made was reaped or is ours to reap.
fn assert_no_children() {
    assert_eq!(
        waitpid(None, Some(WaitPidFlag::WNOHANG)),
        Err(nix::Error::ECHILD),
        "a child was left behind"
    );
}

fn line<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{output}"))
}

const INSPECT: &str = r#"
echo pid=$$
echo uid=$(id -u) gid=$(id -g) groups=$(id -G)
echo cwd=$(pwd)
echo hostfile=$(cat /etc/hostname)
echo uts=$(hostname)
echo foo=$FOO
echo dev=$(ls /dev)
echo null=$(stat -c %a /dev/null)
echo eff=$(grep ^CapEff /proc/self/status | cut -f2)
echo nnp=$(grep ^NoNewPrivs /proc/self/status | cut -f2)
echo cmd=$(head -c 5 /proc/1/cmdline | tr '\0' ' ')
echo layers=$(cat /lower1.txt /lower2.txt /shadowed.txt)
echo made > made.txt && echo upper=ok
(echo x > /etc/hostname) 2>/dev/null && echo hostname=rw || echo hostname=ro
echo link=$(cat /etc/via-link)
echo masked=[$(cat /etc/secret)] maskeddir=[$(ls /secretdir)]
(touch /rodir/x) 2>/dev/null && echo rodir=rw || echo rodir=ro
echo nofile=$(ulimit -n)
echo oom=$(cat /proc/self/oom_score_adj)
echo ipfwd=$(cat /proc/sys/net/ipv4/ip_forward)
echo ran > /data/marker
exit 7
"#;

fn create_start_inspect() {
    let fx = Fixture::new();
    fx.write_spec(&fx.spec(&["sh", "-c", INSPECT]));
    let (stdio, out, err) = pipes();
    let created = create(&fx, stdio, false).expect("create");
    let pid = created.pid;

    // Created, not started: the init waits before execve, in the cgroup, as our child.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!fx.dir().join("data/marker").exists(), "ran before start");
    let own = fs::read(format!("/proc/{}/cmdline", std::process::id())).expect("cmdline");
    let its = fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert_eq!(its, own, "the init exec'd before start");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(
        line(&status, "PPid:").trim(),
        std::process::id().to_string()
    );
    assert!(fx.cgroup_has(pid), "the init is not in the cgroup");
    assert!(!fx.mounted_on_host(), "the rootfs is visible on the host");

    created.start().expect("start");
    let output = read_all(out);
    let errors = read_all(err);
    assert_eq!(wait(pid), WaitStatus::Exited(pid, 7), "stderr: {errors}");
    println!("{output}{errors}");
    assert_eq!(line(&output, "pid="), "1");
    assert_eq!(line(&output, "uid="), "1000 gid=1000 groups=1000 10 20");
    assert_eq!(line(&output, "cwd="), "/home/user/work");
    assert_eq!(line(&output, "hostfile="), "from-host");
    assert_eq!(line(&output, "uts="), "corral-test");
    assert_eq!(line(&output, "foo="), "bar");
    let dev: Vec<&str> = line(&output, "dev=").split(' ').collect();
    for name in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "fd", "stdin",
        "stdout", "stderr", "ptmx",
    ] {
        assert!(dev.contains(&name), "/dev lacks {name}: {dev:?}");
    }
    assert_eq!(line(&output, "null="), "666");
    assert_eq!(line(&output, "eff="), format!("{:016x}", 1u64 | 1 << 13));
    assert_eq!(line(&output, "nnp="), "1");
    assert_eq!(line(&output, "cmd="), "sh -c");
    assert_eq!(line(&output, "layers="), "one two from-l2");
    assert_eq!(line(&output, "upper="), "ok");
    assert_eq!(line(&output, "hostname="), "ro");
    assert_eq!(line(&output, "link="), "linked");
    assert_eq!(line(&output, "masked="), "[] maskeddir=[]");
    assert_eq!(line(&output, "rodir="), "ro");
    assert_eq!(line(&output, "nofile="), "1000");
    assert_eq!(line(&output, "oom="), "500");
    assert_eq!(line(&output, "ipfwd="), "1");

    // The write went to the upper layer; the host file behind the link is untouched.
    let made = fx.dir().join("upper/home/user/work/made.txt");
    assert_eq!(
        fs::read_to_string(made).expect("made.txt in upper"),
        "made\n"
    );
    assert!(!fx.dir().join("layers/l1/home/user/work").exists());
    assert!(
        !Path::new("/etc/via-link").exists(),
        "a mount escaped the rootfs"
    );
    assert_eq!(
        fs::read_to_string(fx.dir().join("data/marker")).expect("marker"),
        "ran\n"
    );
    assert_eq!(
        fs::read_to_string(fx.dir().join("hostname")).expect("hostname"),
        "from-host\n"
    );
    assert!(!fx.mounted_on_host());
    assert_no_children();
}

fn abort_before_start() {
    let fx = Fixture::new();
    fx.write_spec(&fx.spec(&["sh", "-c", "echo ran > /data/marker"]));
    let (stdio, _out, _err) = pipes();
    let created = create(&fx, stdio, false).expect("create");
    let pid = created.pid;
    created.abort();
    assert_eq!(wait(pid), WaitStatus::Signaled(pid, Signal::SIGKILL, false));
    assert!(!fx.dir().join("data/marker").exists());

    // Dropping a Created without start also ends the init, without running anything.
    let (stdio, _out, _err) = pipes();
    let created = create(&fx, stdio, false).expect("create");
    let pid = created.pid;
    drop(created);
    assert_eq!(wait(pid), WaitStatus::Exited(pid, 1));
    assert!(!fx.dir().join("data/marker").exists());
    assert!(!fx.mounted_on_host());
    assert_no_children();
}

fn missing_executable() {
    let fx = Fixture::new();
    for (args, why) in [
        (&["nope"][..], "executable file not found in $PATH"),
        (&["/bin/nope", "x"][..], "no such file or directory"),
        (&["/etc/passwd"][..], "permission denied"),
    ] {
        fx.write_spec(&fx.spec(args));
        let (stdio, _out, _err) = pipes();
        let e = create(&fx, stdio, false).expect_err("a missing executable");
        assert_eq!(e.invalid_argument(), Some("process.args"), "{e}");
        let message = e.to_string();
        assert!(
            message.contains(args[0]) && message.contains(why),
            "{message}"
        );
        assert_no_children();
        assert!(!fx.mounted_on_host());
    }
}

fn bad_mounts() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["true"]);
    let mut mounts = fx.mounts();
    mounts.push(
        MountBuilder::default()
            .destination("/missing")
            .typ("bind")
            .source(fx.dir().join("no-such-dir"))
            .options(vec!["rbind".to_string()])
            .build()
            .expect("mount"),
    );
    let index = mounts.len() - 1;
    spec.set_mounts(Some(mounts.clone()));
    fx.write_spec(&spec);
    let (stdio, _out, _err) = pipes();
    let e = create(&fx, stdio, false).expect_err("a missing bind source");
    let field = format!("mounts[{index}].source");
    assert_eq!(e.invalid_argument(), Some(field.as_str()), "{e}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");

    // One the kernel refuses: the error names the entry, and nothing is left behind.
    mounts[index] = MountBuilder::default()
        .destination("/scratch")
        .typ("tmpfs")
        .source("tmpfs")
        .options(vec!["size=bogus".to_string()])
        .build()
        .expect("mount");
    spec.set_mounts(Some(mounts));
    fx.write_spec(&spec);
    let (stdio, _out, _err) = pipes();
    let e = create(&fx, stdio, false).expect_err("a bad tmpfs option");
    assert_eq!(e.invalid_argument(), None);
    assert!(
        e.to_string()
            .contains(&format!("mounts[{index}] (tmpfs on /scratch)")),
        "{e}"
    );
    assert_no_children();
    assert!(!fx.mounted_on_host());
}

fn exec_into_running() {
    let fx = Fixture::new();
    let spec = fx.spec(&["sleep", "1000"]);
    fx.write_spec(&spec);
    let (stdio, _out, _err) = pipes();
    let created = create(&fx, stdio, false).expect("create");
    let init_pid = created.pid;
    created.start().expect("start");

    let run = |args: &[&str]| {
        let mut process: Process = spec.process().clone().expect("process");
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        let (stdio, out, err) = pipes();
        let procs = fx.procs();
        let spawned = init::exec(ExecOptions {
            container_pid: init_pid,
            spec: &spec,
            process: &process,
            stdio,
            tty: false,
            cgroup_procs: &procs,
        })
        .expect("exec");
        let pid = spawned.pid;
        let output = read_all(out);
        let errors = read_all(err);
        (wait(pid), pid, output, errors, spawned.not_executable)
    };

    let (status, pid, output, errors, not_executable) = run(&[
        "sh",
        "-c",
        "ps; echo pid=$$; echo uid=$(id -u); echo cwd=$(pwd); echo uts=$(hostname); \
         echo eff=$(grep ^CapEff /proc/self/status | cut -f2); grep pids /proc/self/cgroup",
    ]);
    assert_eq!(status, WaitStatus::Exited(pid, 0), "{errors}");
    assert_eq!(not_executable, None);
    println!("{output}");
    let sleeper = output.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.first() == Some(&"1") && l.contains("sleep 1000")
    });
    assert!(sleeper, "ps shows no PID 1 sleep:\n{output}");
    assert_ne!(line(&output, "pid="), "1");
    assert_eq!(line(&output, "uid="), "1000");
    assert_eq!(line(&output, "cwd="), "/home/user/work");
    assert_eq!(line(&output, "uts="), "corral-test");
    assert_eq!(line(&output, "eff="), format!("{:016x}", 1u64 | 1 << 13));
    if let Some(cgroup) = fx
        .cgroup
        .as_ref()
        .filter(|c| c.starts_with("/sys/fs/cgroup/pids"))
    {
        let name = cgroup
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            output.contains(&name),
            "the exec is not in {name}:\n{output}"
        );
    }

    let (status, pid, _, errors, not_executable) = run(&["nope"]);
    assert_eq!(status, WaitStatus::Exited(pid, 127));
    // Said at once to the shim too (a streamed exec answers it), with the same words.
    let (code, message) = not_executable.expect("not executable");
    assert_eq!(code, 127);
    assert_eq!(format!("{message}\n"), errors);
    assert!(
        errors.contains("\"nope\": executable file not found in $PATH"),
        "{errors}"
    );
    let (status, pid, _, errors, not_executable) = run(&["/etc/passwd"]);
    assert_eq!(status, WaitStatus::Exited(pid, 126));
    assert_eq!(not_executable.map(|(code, _)| code), Some(126));
    assert!(errors.contains("permission denied"), "{errors}");

    kill(init_pid, Signal::SIGKILL).expect("kill");
    assert_eq!(
        wait(init_pid),
        WaitStatus::Signaled(init_pid, Signal::SIGKILL, false)
    );
    assert!(!fx.mounted_on_host());
    assert_no_children();
}

/// A second container joins the first one's namespaces by path, as a pod's containers
/// join the pod's: it sees the first one's processes, hostname and network.
fn join_by_path() {
    let fx = Fixture::new();
    let first = fx.spec(&["sleep", "1000"]);
    fx.write_spec(&first);
    let (stdio, _out, _err) = pipes();
    let created = create(&fx, stdio, false).expect("create");
    let init_pid = created.pid;
    created.start().expect("start");

    let mut second = fx.spec(&[
        "sh",
        "-c",
        "ps; echo pid=$$; echo uts=$(hostname); echo net=$(readlink /proc/self/ns/net)",
    ]);
    let mut linux = second.linux().clone().expect("linux");
    let namespaces = linux
        .namespaces()
        .clone()
        .expect("namespaces")
        .into_iter()
        .map(|mut ns| {
            let name = match ns.typ() {
                LinuxNamespaceType::Mount => return ns,
                LinuxNamespaceType::Network => "net".to_string(),
                other => other.to_string(),
            };
            ns.set_path(Some(format!("/proc/{init_pid}/ns/{name}").into()));
            ns
        })
        .collect::<Vec<_>>();
    linux.set_namespaces(Some(namespaces));
    second.set_linux(Some(linux));
    fx.write_spec(&second);
    let (stdio, out, err) = pipes();
    let created = create(&fx, stdio, false).expect("create the second");
    let pid = created.pid;
    created.start().expect("start the second");
    let output = read_all(out);
    let errors = read_all(err);
    assert_eq!(wait(pid), WaitStatus::Exited(pid, 0), "{errors}");
    let sleeper = output
        .lines()
        .any(|l| l.split_whitespace().next() == Some("1") && l.contains("sleep 1000"));
    assert!(sleeper, "ps shows no PID 1 sleep:\n{output}");
    assert_ne!(line(&output, "pid="), "1");
    assert_eq!(line(&output, "uts="), "corral-test");
    let theirs = fs::read_link(format!("/proc/{init_pid}/ns/net")).expect("netns");
    assert_eq!(line(&output, "net="), theirs.to_string_lossy());

    kill(init_pid, Signal::SIGKILL).expect("kill");
    assert_eq!(
        wait(init_pid),
        WaitStatus::Signaled(init_pid, Signal::SIGKILL, false)
    );
    assert!(!fx.mounted_on_host());
    assert_no_children();
}

fn tty() {
    let fx = Fixture::new();
    let script = "test -t 0 && echo tty=yes; echo sid=$(cut -d' ' -f6 /proc/self/stat); \
                  echo console=$(ls /dev/console)";
    fx.write_spec(&fx.spec(&["sh", "-c", script]));
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let stdio = Stdio {
        stdin: pty.slave.try_clone().expect("dup"),
        stdout: pty.slave.try_clone().expect("dup"),
        stderr: pty.slave,
    };
    let created = create(&fx, stdio, true).expect("create");
    let pid = created.pid;
    created.start().expect("start");
    let mut output = Vec::new();
    // EIO once the last slave holder is gone.
    let _ = fs::File::from(pty.master).read_to_end(&mut output);
    let output = String::from_utf8_lossy(&output).replace('\r', "");
    assert_eq!(wait(pid), WaitStatus::Exited(pid, 0), "{output}");
    assert_eq!(line(&output, "tty="), "yes");
    assert_eq!(line(&output, "sid="), "1");
    assert_eq!(line(&output, "console="), "/dev/console");
    assert!(!fx.mounted_on_host());
    assert_no_children();
}

fn readonly_root_host_pid() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "touch /x 2>/dev/null && echo root=rw || echo root=ro; echo pid=$$; echo uid=$(id -u); \
         echo new=$(cat /new/dir/file)",
    ]);
    // Root, no capabilities section (left as they are), the host's PID namespace, a
    // read-only root with a mount point that must be made before it turns read-only.
    let mut process = spec.process().clone().expect("process");
    process.set_user(UserBuilder::default().build().expect("user"));
    process.set_capabilities(None);
    process.set_cwd("/".into());
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(true)
            .build()
            .expect("root"),
    ));
    let mut linux = spec.linux().clone().expect("linux");
    let namespaces = linux
        .namespaces()
        .clone()
        .expect("namespaces")
        .into_iter()
        .filter(|ns| ns.typ() != LinuxNamespaceType::Pid)
        .collect::<Vec<_>>();
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    let mut mounts = fx.mounts();
    mounts.push(
        MountBuilder::default()
            .destination("/new/dir/file")
            .typ("bind")
            .source(fx.dir().join("via-link"))
            .options(vec!["bind".to_string(), "ro".to_string()])
            .build()
            .expect("mount"),
    );
    spec.set_mounts(Some(mounts));
    fx.write_spec(&spec);
    let (stdio, out, err) = pipes();
    let created = init::create(CreateOptions {
        bundle: &fx.bundle(),
        rootfs: &fx.rootfs,
        stdio,
        tty: false,
        cgroup_procs: &[],
    })
    .expect("create");
    let pid = created.pid;
    created.start().expect("start");
    let output = read_all(out);
    let errors = read_all(err);
    assert_eq!(wait(pid), WaitStatus::Exited(pid, 0), "{errors}");
    assert_eq!(line(&output, "root="), "ro");
    assert_eq!(line(&output, "pid="), pid.to_string());
    assert_eq!(line(&output, "uid="), "0");
    assert_eq!(line(&output, "new="), "linked");
    assert!(!fx.mounted_on_host());
    assert_no_children();
}

fn many_layers() {
    let mut fx = Fixture::new();
    // Enough layers with long names that absolute paths overflow a page of options.
    let mut lower = Vec::new();
    for i in 0..60 {
        let layer = fx.dir().join(format!("layers/{i:02}-{}", "x".repeat(40)));
        fs::create_dir_all(&layer).expect("mkdir");
        write(&layer.join(format!("f{i}")), &format!("{i}\n"));
        lower.push(layer);
    }
    lower.append(&mut fx.rootfs.lower);
    fx.rootfs.lower = lower;
    fx.write_spec(&fx.spec(&["sh", "-c", "cat /f0 /f59 /lower1.txt"]));
    let (stdio, out, err) = pipes();
    let created = create(&fx, stdio, false).expect("create");
    let pid = created.pid;
    created.start().expect("start");
    let output = read_all(out);
    let errors = read_all(err);
    assert_eq!(wait(pid), WaitStatus::Exited(pid, 0), "{errors}");
    assert_eq!(output, "0\n59\none\n");
    assert!(!fx.mounted_on_host());
    assert_no_children();
}

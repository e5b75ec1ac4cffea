//! `corral-shim` and its client, against the real binary (target/<profile>/corral-shim).
//! Tests that make namespaces or mounts need root and print why they skip otherwise; every
//! test stops its shims and unmounts what they pinned even when it fails ([`Pod`]'s Drop).

use std::cell::Cell;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getsid, Pid};
use runtime::shim_client::{self, ShimError, ShimHandle, ShimSpec};
use runtime::ErrorKind;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! needs_root {
    () => {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
    };
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A pod state dir and whatever shim runs in it; Drop kills and unmounts what is left.
struct Pod {
    tmp: tempfile::TempDir,
    shim: Cell<Option<i32>>,
    pause: Cell<Option<i32>>,
}

impl Pod {
    fn new() -> Pod {
        // Under /run when we may (tmpfs, like corrald's state dir), else the default.
        let base = Path::new("/run/corral-test");
        let tmp = fs::create_dir_all(base)
            .and_then(|()| tempfile::Builder::new().prefix("shim-").tempdir_in(base))
            .or_else(|_| tempfile::Builder::new().prefix("shim-").tempdir())
            .unwrap();
        Pod {
            tmp,
            shim: Cell::new(None),
            pause: Cell::new(None),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn spec(&self, share_pid: bool) -> ShimSpec {
        ShimSpec {
            pod_id: format!("pod-{}", self.dir().file_name().unwrap().to_string_lossy()),
            dir: self.dir().to_path_buf(),
            share_pid,
            ..ShimSpec::default()
        }
    }

    fn remember(&self, handle: &ShimHandle) {
        self.shim.set(Some(handle.pid()));
        self.pause.set(handle.pause_pid().or(self.pause.get()));
    }

    async fn spawn(&self, spec: &ShimSpec) -> ShimHandle {
        let handle = shim_client::spawn(spec).await.expect("spawn");
        self.remember(&handle);
        handle
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // A shim the test never learnt about (it failed early) still wrote its pid file.
        let from_file = fs::read_to_string(self.dir().join("shim.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        for (pid, comm) in [
            (self.shim.get().or(from_file), "corral-shim"),
            (self.pause.get(), "corral-pause"),
        ] {
            if let Some(pid) = pid.filter(|p| running(*p) && comm_of(*p).as_deref() == Some(comm)) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let pin = self.dir().join("pidns");
        for _ in 0..4 {
            if umount2(&pin, MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

/// Pinned net/ipc/uts namespaces (the network crate's), released on drop.
struct Namespaces(tempfile::TempDir);

impl Namespaces {
    fn pin() -> (Namespaces, network::PinnedNamespaces) {
        let tmp = tempfile::Builder::new()
            .prefix("shim-ns-")
            .tempdir_in("/run/corral-test")
            .unwrap();
        let pinned = network::pin_namespaces(
            tmp.path(),
            &network::NamespaceRequest {
                net: true,
                ipc: true,
                uts: true,
                hostname: Some("shim-test".into()),
                ..Default::default()
            },
        )
        .expect("pin namespaces");
        (Namespaces(tmp), pinned)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = network::release_namespaces(self.0.path());
    }
}

fn stat_field(pid: i32, index: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(index).map(str::to_string)
}

fn running(pid: i32) -> bool {
    stat_field(pid, 0).is_some_and(|s| s != "Z" && s != "X")
}

fn ppid(pid: i32) -> i32 {
    stat_field(pid, 1).unwrap().parse().unwrap()
}

fn comm_of(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Gone or a zombie: its parent (init here, which may not reap) is not ours to wait on.
fn wait_gone(pid: i32) {
    wait_until(
        &format!("pid {pid} is gone"),
        Duration::from_secs(5),
        || !running(pid),
    );
}

fn mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn kib(pid: i32, file: &str, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// (RSS, PSS) in KiB.
fn memory(pid: i32) -> (u64, u64) {
    (
        kib(pid, "status", "VmRSS:"),
        kib(pid, "smaps_rollup", "Pss:"),
    )
}

fn assert_released(pod: &Pod, shim: i32, pause: Option<i32>) {
    wait_gone(shim);
    if let Some(pause) = pause {
        wait_gone(pause);
    }
    for name in ["shim.sock", "shim.pid", "pidns"] {
        assert!(!pod.dir().join(name).exists(), "{name} left behind");
    }
    assert!(!mounted(&pod.dir().join("pidns")), "pidns still mounted");
    assert!(!shim_client::is_alive(pod.dir()));
}

#[test]
fn spawn_ping_and_shutdown_twice() {
    let pod = Pod::new();
    rt().block_on(async {
        let shim = pod.spawn(&pod.spec(false)).await;
        let pid = shim.pid();
        assert_eq!(shim.pause_pid(), None);
        let ping = shim.ping().await.unwrap();
        assert_eq!((ping.pid, ping.pause_pid), (pid, None));

        // Its own session, and not our child: it never dies with its spawner.
        assert_eq!(getsid(Some(Pid::from_raw(pid))).unwrap().as_raw(), pid);
        assert_ne!(ppid(pid), std::process::id() as i32);
        assert_eq!(comm_of(pid).as_deref(), Some("corral-shim"));
        assert!(shim_client::is_alive(pod.dir()));
        let written = fs::read_to_string(pod.dir().join("shim.pid")).unwrap();
        assert_eq!(written.trim(), pid.to_string());
        let mode = fs::metadata(pod.dir().join("shim.sock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::canonicalize(shim_client::shim_binary()).unwrap(),
            fs::canonicalize(env!("CARGO_BIN_EXE_corral-shim")).unwrap()
        );
        // Inherited nothing: stdio on /dev/null, then only its signalfd and sockets (the
        // listener and our handle's connection).
        for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let fd = fd.unwrap();
            let target = fs::read_link(fd.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ok = match fd.file_name().to_str().unwrap().parse::<i32>().unwrap() {
                0..=2 => target == "/dev/null",
                _ => target == "anon_inode:[signalfd]" || target.starts_with("socket:"),
            };
            assert!(ok, "fd {:?} of the shim is {target}", fd.file_name());
        }

        let status = shim.status().await.unwrap();
        assert_eq!(status.pid, pid);
        assert!(status.processes.is_empty() && !status.stopping);

        shim.shutdown(Duration::from_secs(1)).await.unwrap();
        assert_released(&pod, pid, None);
        shim.shutdown(Duration::from_secs(1))
            .await
            .expect("a second shutdown");
        let err = shim_client::connect(pod.dir()).await.unwrap_err();
        assert!(matches!(err, ShimError::NotRunning { .. }), "{err}");
        assert_eq!(runtime::Error::from(err).kind(), ErrorKind::Unavailable);
    });
}

#[test]
fn share_pid_pause_reattach_and_shutdown() {
    needs_root!();
    let pod = Pod::new();
    let (_ns, pinned) = Namespaces::pin();
    rt().block_on(async {
        let spec = ShimSpec {
            netns: pinned.net.clone(),
            ipcns: pinned.ipc.clone(),
            utsns: pinned.uts.clone(),
            ..pod.spec(true)
        };
        let shim = pod.spawn(&spec).await;
        let (pid, pause) = (shim.pid(), shim.pause_pid().expect("a pause"));

        assert!(running(pause));
        assert_eq!(comm_of(pause).as_deref(), Some("corral-pause"));
        assert_eq!(ppid(pause), pid, "the shim is the pause's parent");
        let ns = |pid: &str, kind: &str| fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
        let pause_s = pause.to_string();
        assert_ne!(ns(&pause_s, "pid"), ns("self", "pid"));
        let status = fs::read_to_string(format!("/proc/{pause}/status")).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
        // The pause lives in the pod's pinned namespaces.
        for (kind, pin) in [
            ("net", &pinned.net),
            ("ipc", &pinned.ipc),
            ("uts", &pinned.uts),
        ] {
            let pin_ino = fs::metadata(pin.as_ref().unwrap()).unwrap().ino();
            let pause_ino = fs::metadata(format!("/proc/{pause}/ns/{kind}"))
                .unwrap()
                .ino();
            assert_eq!(pin_ino, pause_ino, "{kind} namespace of the pause");
        }
        let pidns = pod.dir().join("pidns");
        assert!(mounted(&pidns), "pidns pinned");
        assert_eq!(
            fs::metadata(&pidns).unwrap().ino(),
            fs::metadata(format!("/proc/{pause}/ns/pid")).unwrap().ino()
        );
        let status = shim.status().await.unwrap();
        assert_eq!(status.processes.len(), 1);
        assert_eq!(
            (status.processes[0].id.as_str(), status.processes[0].pid),
            ("pause", pause)
        );
        assert!(status.processes[0].exit.is_none());

        // corrald "dies": the handle goes away; a new one attaches to the same shim.
        drop(shim);
        let shim = shim_client::connect(pod.dir()).await.expect("reattach");
        assert_eq!((shim.pid(), shim.pause_pid()), (pid, Some(pause)));
        assert!(running(pid) && running(pause));

        shim.shutdown(Duration::from_secs(2)).await.unwrap();
        assert_released(&pod, pid, Some(pause));
        assert!(
            !Path::new(&format!("/proc/{pause}")).exists(),
            "the shim reaped its pause"
        );
    });
}

/// Run by `shim_survives_its_spawner` in a child process: spawn a shim and exit at once.
#[test]
fn helper_spawn_and_exit() {
    let Some(dir) = std::env::var_os("CORRAL_SHIM_TEST_SPAWN_DIR") else {
        return;
    };
    let spec = ShimSpec {
        pod_id: "orphan".into(),
        dir: dir.into(),
        ..ShimSpec::default()
    };
    let shim = rt().block_on(shim_client::spawn(&spec)).unwrap();
    println!("SHIM_PID={}", shim.pid());
}

#[test]
fn shim_survives_its_spawner() {
    let pod = Pod::new();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_spawn_and_exit",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("CORRAL_SHIM_TEST_SPAWN_DIR", pod.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = stdout
        .lines()
        .find_map(|l| l.split("SHIM_PID=").nth(1))
        .expect("the helper's report")
        .parse()
        .unwrap();
    pod.shim.set(Some(pid));
    std::thread::sleep(Duration::from_millis(50));
    assert!(running(pid), "the shim outlived its spawner");
    assert_ne!(ppid(pid), std::process::id() as i32);
    rt().block_on(async {
        let shim = shim_client::connect(pod.dir()).await.expect("reattach");
        assert_eq!(shim.ping().await.unwrap().pid, pid);
        shim.shutdown(Duration::ZERO).await.unwrap();
    });
    assert_released(&pod, pid, None);
}

/// Send raw lines on one connection and read one answer per non-blank line.
fn exchange(stream: &mut UnixStream, lines: &[&[u8]]) -> Vec<serde_json::Value> {
    for line in lines {
        stream.write_all(line).unwrap();
    }
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let requests = lines
        .iter()
        .flat_map(|l| l.split(|b| *b == b'\n'))
        .filter(|l| !l.trim_ascii().is_empty())
        .count();
    (0..requests)
        .map(|_| {
            let mut answer = String::new();
            reader.read_line(&mut answer).unwrap();
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
        })
        .collect()
}

#[test]
fn malformed_requests_get_errors_and_the_shim_keeps_serving() {
    let pod = Pod::new();
    rt().block_on(async {
        let shim = pod.spawn(&pod.spec(false)).await;
        let sock = pod.dir().join("shim.sock");
        let mut a = UnixStream::connect(&sock).unwrap();
        let mut b = UnixStream::connect(&sock).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let answers = exchange(
            &mut a,
            &[
                b"this is not json\n",
                b"{\"op\":\"frobnicate\"}\n",
                b"\n",
                b"{\"op\":\"shutdown\",\"grace_ms\":\"soon\"}\n",
                b"{\"op\":\"ping\"}\n{\"op\":\"status\"}\n",
            ],
        );
        assert_eq!(answers.len(), 5, "{answers:?}");
        for bad in &answers[..3] {
            assert_eq!(bad["ok"], false, "{bad}");
            assert_eq!(bad["kind"], "invalid_argument", "{bad}");
            assert!(bad["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        assert_eq!(answers[1]["field"], "op");
        assert_eq!(answers[3]["ok"], true);
        assert_eq!(answers[3]["pid"], shim.pid());
        assert_eq!(answers[4]["pod_id"], shim_spec_pod(&pod));

        // A second connection interleaved with the first: half a line waits for the rest.
        b.write_all(b"{\"op\":").unwrap();
        assert_eq!(exchange(&mut a, &[b"{\"op\":\"ping\"}\n"])[0]["ok"], true);
        b.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let early = std::io::Read::read(&mut b, &mut [0u8; 16]);
        assert_eq!(
            early.unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "no answer yet"
        );
        b.set_nonblocking(false).unwrap();
        let pong = exchange(&mut b, &[b"\"ping\"}\n"]);
        assert_eq!(pong[0]["pid"], shim.pid());
        assert_eq!(exchange(&mut a, &[b"{\"op\":\"ping\"}\n"])[0]["ok"], true);

        // An endless line is refused and its connection closed; the others live on.
        let mut c = UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let junk = vec![b'x'; runtime::shim::protocol::MAX_LINE + 4096];
        let _ = c.write_all(&junk);
        let mut answer = String::new();
        BufReader::new(c).read_line(&mut answer).unwrap();
        assert!(answer.contains("\"ok\":false"), "{answer}");

        // A client that vanishes mid-line hurts nobody.
        let mut d = UnixStream::connect(&sock).unwrap();
        d.write_all(b"{\"op\":\"pi").unwrap();
        drop(d);
        drop(a);

        assert_eq!(shim.ping().await.unwrap().pid, shim.pid());
        let pid = shim.pid();
        shim.shutdown(Duration::from_secs(1)).await.unwrap();
        assert_released(&pod, pid, None);
    });
}

fn shim_spec_pod(pod: &Pod) -> String {
    pod.spec(false).pod_id
}

#[test]
fn a_dead_pause_is_recorded() {
    needs_root!();
    let pod = Pod::new();
    rt().block_on(async {
        let shim = pod.spawn(&pod.spec(true)).await;
        let pause = shim.pause_pid().unwrap();
        kill(Pid::from_raw(pause), Signal::SIGKILL).unwrap();
        let mut exit = None;
        let until = Instant::now() + Duration::from_secs(5);
        while exit.is_none() && Instant::now() < until {
            exit = shim.status().await.unwrap().processes[0].exit.clone();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let exit = exit.expect("the pause's exit recorded");
        assert_eq!(
            (exit.pid, exit.exit_code, exit.signal),
            (pause, 137, Some(9))
        );
        assert!(
            exit.finished_at.ends_with('Z') && exit.finished_at.len() == 30,
            "{}",
            exit.finished_at
        );
        assert!(!Path::new(&format!("/proc/{pause}")).exists(), "reaped");
        assert_eq!(shim.ping().await.unwrap().pause_pid, None);
        let pid = shim.pid();
        shim.shutdown(Duration::from_secs(1)).await.unwrap();
        assert_released(&pod, pid, Some(pause));
    });
}

#[test]
fn shutdown_of_a_killed_shim_releases_what_it_left() {
    needs_root!();
    let pod = Pod::new();
    rt().block_on(async {
        let shim = pod.spawn(&pod.spec(true)).await;
        let (pid, pause) = (shim.pid(), shim.pause_pid().unwrap());
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        wait_gone(pid);
        assert!(running(pause), "the pause outlives a killed shim");
        assert!(!shim_client::is_alive(pod.dir()));
        shim.shutdown(Duration::from_secs(1))
            .await
            .expect("idempotent release");
        assert_released(&pod, pid, Some(pause));
        shim_client::release(pod.dir())
            .await
            .expect("release again");
    });
}

#[test]
fn sigterm_stops_the_shim() {
    let pod = Pod::new();
    rt().block_on(async {
        let shim = pod.spawn(&pod.spec(false)).await;
        kill(Pid::from_raw(shim.pid()), Signal::SIGTERM).unwrap();
        assert_released(&pod, shim.pid(), None);
    });
}

#[test]
fn failed_starts_leave_nothing() {
    let pod = Pod::new();
    rt().block_on(async {
        // Two shims for one pod: the second is refused, the first keeps serving.
        let first = pod.spawn(&pod.spec(false)).await;
        let err = shim_client::spawn(&pod.spec(false)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        assert_eq!(first.ping().await.unwrap().pid, first.pid());
        let pid = first.pid();
        first.shutdown(Duration::ZERO).await.unwrap();
        assert_released(&pod, pid, None);

        if is_root() {
            // A namespace path that does not exist: no pause, no pin, no files.
            let spec = ShimSpec {
                netns: Some(pod.dir().join("no-such-netns")),
                ..pod.spec(true)
            };
            let err = shim_client::spawn(&spec).await.unwrap_err();
            assert!(err.to_string().contains("no-such-netns"), "{err}");
            let names: Vec<_> = fs::read_dir(pod.dir())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(names.is_empty(), "left behind: {names:?}");
        }
    });
}

/// Print (and return) RSS and PSS per pod, shim plus pause, in KiB.
fn report(label: &str, pods: &[(i32, Option<i32>)]) -> (u64, u64) {
    let (mut rss, mut pss) = (0, 0);
    for (shim, pause) in pods {
        let (r, p) = memory(*shim);
        let (pr, pp) = pause.map(memory).unwrap_or((0, 0));
        rss += r + pr;
        pss += p + pp;
        if pods.len() == 1 {
            println!("{label}: shim RSS {r} KiB PSS {p} KiB; pause RSS {pr} KiB PSS {pp} KiB");
        }
    }
    let n = pods.len() as u64;
    println!(
        "{label}: per pod (shim + pause) RSS {} KiB, PSS {} KiB",
        rss / n,
        pss / n
    );
    (rss / n, pss / n)
}

/// Start a shim through its command line (not the client), as corrald would.
fn spawn_cli(binary: &Path, pod: &Pod, share_pid: bool) -> (i32, Option<i32>) {
    let mut cmd = Command::new(binary);
    cmd.args(["--pod-id", "mem", "--dir"]).arg(pod.dir());
    if share_pid {
        cmd.arg("--share-pid");
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let ready: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = ready["pid"].as_i64().unwrap() as i32;
    let pause = ready["pause_pid"].as_i64().map(|p| p as i32);
    pod.shim.set(Some(pid));
    pod.pause.set(pause);
    (pid, pause)
}

/// RSS and PSS of what a pod costs (DESIGN.md budget: <= 1 MB RSS, <= 0.3 MB PSS), for
/// one pod alone and averaged over ten (shared pages divide among them), with this test's
/// build of the shim and, when it has been built, the release one
/// (`cargo build --release -p runtime --bin corral-shim`). Other tests' shims running
/// meanwhile share pages too, so the figures are approximate.
#[test]
fn memory_per_pod() {
    let share_pid = is_root();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut binaries = vec![(profile, PathBuf::from(env!("CARGO_BIN_EXE_corral-shim")))];
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/corral-shim");
    match (profile, release.is_file()) {
        ("debug", true) => binaries.push(("release", release)),
        ("debug", false) => println!("release: target/release/corral-shim not built; skipped"),
        _ => {}
    }
    for (label, binary) in binaries {
        let pods: Vec<Pod> = (0..10).map(|_| Pod::new()).collect();
        let mut running = vec![spawn_cli(&binary, &pods[0], share_pid)];
        report(&format!("{label}, 1 pod"), &running);
        for pod in &pods[1..] {
            running.push(spawn_cli(&binary, pod, share_pid));
        }
        report(&format!("{label}, 10 pods"), &running);
        rt().block_on(async {
            for (pod, (pid, pause)) in pods.iter().zip(&running) {
                let shim = shim_client::connect(pod.dir()).await.unwrap();
                assert_eq!(shim.pause_pid(), *pause);
                shim.shutdown(Duration::ZERO).await.unwrap();
                assert_released(pod, *pid, *pause);
            }
        });
    }
}

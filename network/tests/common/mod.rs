//! Shared fixture for the root tests: a bridge, subnet, tempdir and redb of the test's
//! own, removed on drop even when the test fails.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use network::{NamespaceRequest, NetworkConfig, PinnedNamespaces};

/// Return early from a test that needs root, saying why.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            println!("skipping: needs root");
            return;
        }
    };
}

pub struct Fixture {
    pub bridge: String,
    pub subnet: String,
    pub dir: tempfile::TempDir,
    pub db: Arc<redb::Database>,
}

impl Fixture {
    /// Bridge `crtest<n>`, subnet 10.199.<n>.0/24.
    pub fn new(n: u8) -> Fixture {
        let bridge = format!("crtest{n}");
        cleanup_bridge(&bridge);
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(redb::Database::create(dir.path().join("meta.redb")).expect("db"));
        Fixture {
            bridge,
            subnet: format!("10.199.{n}.0/24"),
            dir,
            db,
        }
    }

    pub fn config(&self) -> NetworkConfig {
        NetworkConfig {
            bridge: self.bridge.clone(),
            subnet: self.subnet.clone(),
            ..NetworkConfig::default()
        }
    }

    pub fn pod_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("pods").join(name)
    }

    /// Pin new net+ipc+uts namespaces for pod `name`.
    pub fn pin(&self, name: &str) -> PinnedNamespaces {
        let req = NamespaceRequest {
            net: true,
            ipc: true,
            uts: true,
            hostname: Some(name.to_string()),
            ..Default::default()
        };
        network::pin_namespaces(&self.pod_dir(name), &req).expect("pin namespaces")
    }

    pub fn netns(&self, name: &str) -> PathBuf {
        self.pod_dir(name).join("net")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("pods")) {
            for e in entries.flatten() {
                let _ = network::release_namespaces(&e.path());
            }
        }
        cleanup_bridge(&self.bridge);
    }
}

/// Remove our table and bridge, from a runtime of its own (this may run in a Drop).
pub fn cleanup_bridge(bridge: &str) {
    let bridge = bridge.to_string();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(network::cleanup_all(&bridge))
    })
    .join();
}

/// A TCP server that answers `count` connections with `reply`, then closes (a listener
/// keeps its network namespace alive).
pub fn serve(
    listener: TcpListener,
    reply: &'static str,
    count: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming().take(count) {
            let Ok(mut conn) = conn else { return };
            let _ = conn.write_all(reply.as_bytes());
        }
    })
}

/// Connect to `addr` and read what the server says.
pub fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Whether any mount point lies under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let prefix = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&prefix))
        .map(String::from)
        .collect()
}

/// Wait until the host has no link called `name` (the kernel reaps a veth shortly after
/// its namespace goes).
pub fn wait_link_gone(name: &str) -> bool {
    let path = Path::new("/sys/class/net").join(name);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `nft list table ip corral-<bridge>` (empty when nft is missing or the table is gone).
pub fn nft_table(bridge: &str) -> String {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", &format!("corral-{bridge}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// (IFF_* flags, MTU) of link `name` in the calling thread's network namespace, by ioctl
/// (sysfs would show the namespace that mounted /sys, not ours).
#[allow(unsafe_code)]
pub fn link_flags_mtu(name: &str) -> Option<(i32, i32)> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    // SAFETY: fd is a valid socket and req a properly sized ifreq that outlives the calls.
    unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return None;
        }
        let flags = i32::from(req.ifr_ifru.ifru_flags);
        if libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) < 0 {
            return None;
        }
        Some((flags, req.ifr_ifru.ifru_mtu))
    }
}

//! A real corrald on a temporary socket, root and state dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::client::Cri;

pub struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The pod bridge this daemon made, removed with its NAT table when the daemon goes.
    bridge: Option<String>,
}

/// The corrald binary: `$CORRALD`, or the one cargo built next to this test binary.
pub fn corrald_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CORRALD") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target/<profile>/corrald
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("corrald"))
        .context("locating the target dir")?;
    if !candidate.exists() {
        bail!(
            "{} not found: build it first (cargo build -p cri-server) or set CORRALD",
            candidate.display()
        );
    }
    Ok(candidate)
}

impl Daemon {
    /// Start corrald with `extra` appended to its config file. Without a `[network]` table
    /// of its own, each daemon gets a bridge and /24 derived from its process and a counter,
    /// so daemons of tests running in parallel never share one.
    ///
    /// The network mode is pinned to `native` unless `extra` sets `mode`: the default
    /// (`auto`) would switch to CNI on a machine whose /etc/cni/net.d holds a config.
    pub async fn start(extra: &str) -> anyhow::Result<Daemon> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let (extra, bridge) = if extra.contains("[network]") {
            let bridge = extra
                .lines()
                .find_map(|l| l.trim().strip_prefix("bridge = "))
                .map(|b| b.trim_matches('"').to_string());
            let sets_mode = extra.lines().any(|l| l.trim().starts_with("mode ="));
            let extra = if sets_mode {
                extra.to_string()
            } else {
                extra.replacen("[network]\n", "[network]\nmode = \"native\"\n", 1)
            };
            (extra, bridge)
        } else {
            let n = (std::process::id() + NEXT.fetch_add(1, Ordering::Relaxed)) % 200;
            let bridge = format!("crtd{n}");
            (
                format!(
                    "{extra}\n[network]\nmode = \"native\"\nbridge = \"{bridge}\"\nsubnet = \"10.212.{n}.0/24\"\n"
                ),
                Some(bridge),
            )
        };
        let extra = extra.as_str();
        let dir = tempfile::Builder::new().prefix("corral-e2e-").tempdir()?;
        let socket = dir.path().join("corral.sock");
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let config = dir.path().join("config.toml");
        let log = dir.path().join("corrald.log");
        let text = format!(
            "listen = {:?}\nroot = {:?}\nstate = {:?}\nlog_level = \"info,runtime=debug,corrald=debug,cri_server=debug\"\n{extra}\n",
            socket.display().to_string(),
            root.display().to_string(),
            state.display().to_string(),
        );
        std::fs::write(&config, text)?;
        let mut d = Daemon {
            child: None,
            dir,
            socket,
            root,
            state,
            config,
            log,
            bridge,
        };
        d.spawn().await?;
        Ok(d)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(corrald_binary()?)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting corrald")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("corrald exited with {status}:\n{}", self.log_tail(30));
            }
            if self.socket.exists() {
                if let Ok(mut c) = Cri::connect(&self.socket).await {
                    if c.runtime
                        .version(proto::VersionRequest::default())
                        .await
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("corrald did not come up:\n{}", self.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn client(&self) -> anyhow::Result<Cri> {
        Cri::connect(&self.socket).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("not running");
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = c.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("corrald ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and start a new corrald at once, without waiting for the killed one to be
    /// gone (as a supervisor restarting a crashed daemon would): the new one must wait for
    /// the root lock. The old process is reaped on a thread of its own.
    pub async fn crash_restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            std::thread::spawn(move || c.wait());
        }
        self.spawn().await
    }

    /// Start again on the same root and state, as after a crash or an upgrade.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.kill9();
        }
        self.spawn().await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    /// Pods outlive corrald by design, so a test that failed half-way would leave them: remove
    /// every pod through the CRI first (on a thread of its own, since this may run inside the
    /// test's runtime), then stop the daemon, then drop the pod bridge and its nftables table.
    fn drop(&mut self) {
        if self.child.is_some() {
            let socket = self.socket.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(remove_all_pods(&socket))
            })
            .join();
        }
        if self.child.is_some() && self.stop().is_err() {
            self.kill9();
        }
        if let Some(bridge) = self.bridge.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(network::cleanup_all(&bridge))
                    .map_err(anyhow::Error::from)
            })
            .join();
        }
    }
}

async fn remove_all_pods(socket: &Path) -> anyhow::Result<()> {
    let mut c = Cri::connect(socket).await?;
    let pods = c
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    for p in pods {
        let _ = c
            .runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            })
            .await;
    }
    Ok(())
}

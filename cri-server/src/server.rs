//! Start-up and shutdown: the root lock, the stores, the socket, the gRPC server.

use runtime::container::Containers;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};
use proto::server::{ImageServiceServer, RuntimeServiceServer};
use runtime::image::ImageStore;
use runtime::sandbox::Sandboxes;
use runtime::store::Db;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::metrics::{MetricsServer, NodeState};
use crate::service::CriService;

/// kubelet's own limit for CRI messages; tonic's default of 4 MiB is too small for big lists.
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// How long in-flight calls may run after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Holds `<root>/corrald.lock` for the life of the daemon, so a second corrald on the same
/// root never corrupts the store: it waits for the first to be gone, then gives up with a
/// clear message.
pub struct RootLock {
    _lock: Flock<File>,
}

impl RootLock {
    /// Waits up to `wait` while another process holds the lock: a `kill -9`ed daemon holds
    /// it until its last thread has exited (tens of milliseconds, longer under load); a
    /// second daemon that is really running holds it for good, and this one then gives up.
    pub fn acquire(root: &Path, wait: std::time::Duration) -> anyhow::Result<RootLock> {
        let path = root.join("corrald.lock");
        let deadline = std::time::Instant::now() + wait;
        let mut logged = false;
        let mut lock = loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => break l,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let owner = owner.trim();
                    if std::time::Instant::now() >= deadline {
                        bail!(
                            "another corrald (pid {owner}) is already running with root {} (waited {}s)",
                            root.display(),
                            wait.as_secs()
                        );
                    }
                    if !logged {
                        tracing::warn!(holder = %owner, root = %root.display(), "waiting for the root lock (a previous corrald may still be exiting)");
                        logged = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err((_, e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
        };
        lock.set_len(0).context("truncating lock file")?;
        write!(lock, "{}", std::process::id()).context("writing lock file")?;
        Ok(RootLock { _lock: lock })
    }
}

fn create_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode of {}", path.display()))
}

/// Run until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let socket = config.socket_path()?;
    create_dir(&config.root, 0o711)?;
    create_dir(&config.state, 0o711)?;
    let _lock = RootLock::acquire(
        &config.root,
        std::time::Duration::from_secs(config.root_lock_wait_seconds),
    )?;

    let db = Arc::new(Db::open(&config.root.join("metadata.db"))?);
    let mut images = ImageStore::open(
        &config.root.join("images"),
        db.clone(),
        config.registry.clone(),
        config.image.clone(),
    )
    .context("opening the image store")?;
    images
        .set_pull_progress_timeout(config.pull_progress_timeout()?)
        .context("image_pull_progress_timeout")?;
    let mut sandboxes = Sandboxes::open(
        &config.state,
        &config.root.join("cni").join("results"),
        db.clone(),
        config.network.clone(),
    )
    .await
    .context("opening the sandbox store")?;
    sandboxes.probe_user_namespaces(&config.root).await;
    let containers = Containers::open(&config.root, &config.state, db, Default::default())
        .context("opening the container store")?
        .with_cdi_spec_dirs(config.cdi_spec_dirs.clone());
    let service = CriService::new(config.clone(), images, sandboxes, containers);
    // Before the CRI socket, so a metrics address that can't be bound stops start-up with
    // nothing for kubelet to connect to.
    let metrics = start_metrics(&config, &service).await?;
    let streaming = service
        .start_streaming(&config.streaming)
        .await
        .with_context(|| {
            format!(
                "starting the streaming server on {}:{}",
                config.streaming.address, config.streaming.port
            )
        })?;
    tracing::info!(address = %streaming, "serving exec, attach and port-forward");

    let listener = bind(&socket)?;
    tracing::info!(socket = %socket.display(), root = %config.root.display(), state = %config.state.display(), "corrald serving CRI v1");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(crate::deadline::layer))
        .add_service(
            RuntimeServiceServer::new(service.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ImageServiceServer::new(service.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    // kubelet never closes its connection, so a graceful stop cannot wait for clients to
    // leave: in-flight calls get a grace period, then the process exits.
    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown_signal() => {
            let _ = stop_tx.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::info!("grace period over; closing remaining connections");
                    Ok(())
                }
            }
        }
    };
    let _ = std::fs::remove_file(&socket);
    service.stop_streaming();
    if let Some(m) = metrics {
        m.shutdown().await;
    }
    result.context("gRPC server")?;
    tracing::info!("corrald stopped");
    Ok(())
}

/// The metrics endpoint, when `metrics_address` is set.
async fn start_metrics(
    config: &Config,
    service: &CriService,
) -> anyhow::Result<Option<MetricsServer>> {
    let address = config.metrics_address.trim();
    if address.is_empty() {
        return Ok(None);
    }
    let service = service.clone();
    let source: crate::metrics::StateSource =
        Arc::new(move || NodeState::of(&service).map_err(anyhow::Error::from));
    let server = MetricsServer::start(address, source).await?;
    tracing::info!(address = %server.local_addr(), "serving Prometheus metrics on /metrics");
    Ok(Some(server))
}

/// Bind the CRI socket, mode 0660. We hold the root lock, so a socket file already there is
/// a leftover of a corrald that died, and is replaced.
fn bind(socket: &PathBuf) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => tracing::info!(socket = %socket.display(), "replaced stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", socket.display())),
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", socket.display()))?;
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            return std::future::pending().await;
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGINT");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

//! The common start of a test that runs containers: root checked, a loopback registry with
//! the suite's busybox image, and a corrald on its own bridge with that image pulled.

use anyhow::Result;

use crate::client::Cri;
use crate::daemon::Daemon;
use crate::images::{Image, ImageConfig};
use crate::registry::{skip_reason, Registry, RegistryOptions};
use crate::skip::have_root;

/// A running corrald with `image` (busybox, no entrypoint) pulled from `registry`.
/// Field order is drop order: the daemon (and its pods) goes before the registry.
pub struct BusyboxEnv {
    pub daemon: Daemon,
    pub cri: Cri,
    pub registry: Registry,
    pub image: String,
    /// The image's id, as PullImage answered.
    pub image_id: String,
}

impl BusyboxEnv {
    /// `None` (with the reason printed) when the test can't run here: not root, or no
    /// registry binary. `network` is the daemon's `[network]` table body (its own bridge
    /// and subnet, so tests in parallel never share addresses).
    pub async fn start(test: &str, network: &str) -> Result<Option<BusyboxEnv>> {
        if !have_root(test) {
            return Ok(None);
        }
        if let Some(why) = skip_reason(&RegistryOptions::default()) {
            eprintln!("skipping {test}: {why}");
            return Ok(None);
        }
        let registry = Registry::start(RegistryOptions::default()).await?;
        Image::busybox(ImageConfig::default())?
            .push(&registry, "e2e/busybox", &["latest"])
            .await?;
        let daemon = Daemon::start(&format!("[network]\n{network}\n")).await?;
        let mut cri = daemon.client().await?;
        let image = format!("{}/e2e/busybox:latest", registry.host());
        let image_id = cri.pull(&image, None).await?;
        Ok(Some(BusyboxEnv {
            daemon,
            cri,
            registry,
            image,
            image_id,
        }))
    }
}

//! Images: references, the registry client, the content store, layer unpacking and snapshots,
//! tied together by [`ImageStore`], which is what the CRI ImageService calls.

pub mod content;
pub mod limits;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod snapshot;
mod targuard;
pub mod unpack;

mod pull;
mod usage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use limits::ImageLimits;
pub use registry::{AuthConfig, RegistryConfig};
pub use usage::FsUsage;

use self::content::ContentStore;
use self::reference::{is_hex64, Reference};
use self::registry::Registry;
use self::snapshot::Snapshots;
use crate::error::{Error, Result};
use crate::store::image::ImageRecord;
use crate::store::Db;

/// Everything about images on this node: pulling, naming, listing, removing, collecting.
pub struct ImageStore {
    root: PathBuf,
    db: Arc<Db>,
    content: ContentStore,
    snapshots: Snapshots,
    registry: Registry,
    limits: Arc<ImageLimits>,
    /// One lock per blob being fetched and per layer being unpacked, so concurrent pulls of
    /// the same content wait for one download and one unpack.
    fetches: crate::locks::KeyedLocks,
    /// Pulls hold it shared; garbage collection holds it exclusively, so a layer a pull has
    /// unpacked but not yet recorded is never collected under it.
    gc_lock: tokio::sync::RwLock<()>,
}

impl ImageStore {
    /// Open the stores under `root` (`<root>/content`, `<root>/snapshots`) and collect what a
    /// killed pull or remove left behind. Pulls stay within `limits`.
    /// Abandon a blob that sends no byte for `timeout` (None: never); see
    /// [`registry::DEFAULT_PROGRESS_TIMEOUT`].
    pub fn set_pull_progress_timeout(
        &mut self,
        timeout: Option<std::time::Duration>,
    ) -> Result<()> {
        self.registry = Registry::with_progress_timeout(self.registry.config().clone(), timeout)
            .map_err(|e| Error::invalid("registry", e.to_string()))?;
        Ok(())
    }

    pub fn open(
        root: &Path,
        db: Arc<Db>,
        registry: RegistryConfig,
        limits: ImageLimits,
    ) -> Result<ImageStore> {
        let registry =
            Registry::new(registry).map_err(|e| Error::invalid("registry", e.to_string()))?;
        let store = ImageStore {
            root: root.to_path_buf(),
            db,
            content: ContentStore::open(&root.join("content"))?,
            snapshots: Snapshots::open(&root.join("snapshots"))?,
            registry,
            limits: Arc::new(limits),
            fetches: Default::default(),
            gc_lock: tokio::sync::RwLock::new(()),
        };
        // Best effort: a snapshot that cannot be collected must not keep corrald down.
        if let Err(e) = store.collect_unlocked() {
            tracing::warn!(error = %crate::error::chain(&e), "collecting at start failed; retried at the next collection");
        }
        Ok(store)
    }

    pub fn registry_config(&self) -> &RegistryConfig {
        self.registry.config()
    }

    /// Where an image's layers are unpacked, bottom layer first.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .map(|l| self.snapshots.path(&l.diff_id))
            .collect()
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        self.db.list_images()
    }

    /// Find an image by id (`sha256:<hex>` or `<hex>`), by name (tag or digest, normalised), or
    /// by a unique id prefix, as docker and crictl users type them.
    pub fn resolve(&self, image: &str) -> Result<Option<ImageRecord>> {
        if let Some(hex) = image.strip_prefix("sha256:") {
            if is_hex64(hex) {
                return self.db.get_image(image);
            }
        }
        if is_hex64(image) {
            return self.db.get_image(&format!("sha256:{image}"));
        }
        let parsed = Reference::parse(image);
        if let Ok(r) = &parsed {
            let name = match r.digest() {
                Some(d) => r.digested_name(d),
                None => r.tagged_name().unwrap_or_default(),
            };
            if let Some(id) = self.db.image_id_by_name(&name)? {
                return self.db.get_image(&id);
            }
        }
        let prefix = image.strip_prefix("sha256:").unwrap_or(image);
        let is_hex_prefix = prefix.len() >= 4
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex_prefix {
            let mut matches = self
                .db
                .list_images()?
                .into_iter()
                .filter(|i| i.id.trim_start_matches("sha256:").starts_with(prefix));
            if let (Some(one), None) = (matches.next(), matches.next()) {
                return Ok(Some(one));
            }
            return Ok(None);
        }
        match parsed {
            Ok(_) => Ok(None),
            Err(e) => Err(Error::invalid("image", e.to_string())),
        }
    }

    /// The image config exactly as the registry served it (for verbose status).
    pub fn config_json(&self, image: &ImageRecord) -> Result<Vec<u8>> {
        self.content.read(&image.id)
    }

    /// Remove an image and all its names, then collect what nothing references any more.
    /// Idempotent: an unknown image is not an error. Once the record is gone the image is
    /// removed, whatever its snapshots hold: a collection that fails is logged and retried
    /// at the next one, never reported to the caller (kubelet's image GC would retry forever).
    pub async fn remove(&self, image: &str) -> Result<()> {
        let Some(record) = self.resolve(image)? else {
            return Ok(());
        };
        if self.db.remove_image(&record.id)? {
            tracing::info!(image = %record.id, names = ?record.repo_tags, "image removed");
        }
        if let Err(e) = self.collect().await {
            tracing::warn!(image = %record.id, error = %crate::error::chain(&e), "collecting after a removal failed; retried at the next collection");
        }
        Ok(())
    }

    /// Delete snapshots and blobs that no image references.
    pub async fn collect(&self) -> Result<()> {
        let _exclusive = self.gc_lock.write().await;
        self.collect_unlocked()
    }

    fn collect_unlocked(&self) -> Result<()> {
        let images = self.db.list_images()?;
        let mut layers = HashSet::new();
        let mut blobs = HashSet::new();
        for i in &images {
            blobs.insert(i.id.clone());
            blobs.insert(i.manifest_digest.clone());
            for d in &i.repo_digests {
                if let Some((_, digest)) = d.rsplit_once('@') {
                    blobs.insert(digest.to_string());
                }
            }
            for l in &i.layers {
                layers.insert(l.diff_id.clone());
                blobs.insert(l.digest.clone());
            }
        }
        // Layers under a container's rootfs stay until the container is removed, even when
        // no image names them any more (as containerd keeps a container's snapshot).
        for c in self.db.list_containers()? {
            layers.extend(c.image.layers.iter().cloned());
        }
        // Each item on its own: one that cannot be removed (logged) never keeps the others.
        let mut failed = 0usize;
        for s in self.snapshots.list()? {
            if !layers.contains(&s) {
                tracing::debug!(snapshot = %s, "collecting unreferenced snapshot");
                if let Err(e) = self.snapshots.remove(&s) {
                    failed += 1;
                    tracing::warn!(snapshot = %s, error = %crate::error::chain(&e), "could not collect a snapshot; retried at the next collection");
                }
            }
        }
        // No pull runs now (they hold the lock shared): leftover unpacks and removals go.
        self.snapshots.sweep();
        for b in self.content.list()? {
            if !blobs.contains(&b) {
                tracing::debug!(blob = %b, "collecting unreferenced blob");
                if let Err(e) = self.content.remove(&b) {
                    failed += 1;
                    tracing::warn!(blob = %b, error = %crate::error::chain(&e), "could not collect a blob; retried at the next collection");
                }
            }
        }
        if failed > 0 {
            return Err(Error::Internal(format!(
                "{failed} unreferenced snapshots or blobs could not be collected"
            )));
        }
        Ok(())
    }

    /// Held (shared) by a container create from resolving its image until its record is
    /// written, so that a concurrent RemoveImage cannot collect the layers in between.
    pub async fn use_guard(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc_lock.read().await
    }

    /// Bytes and inodes used by image content and snapshots.
    pub async fn fs_usage(&self) -> Result<FsUsage> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || usage::measure(&root))
            .await
            .map_err(|e| Error::Internal(format!("usage walk: {e}")))?
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

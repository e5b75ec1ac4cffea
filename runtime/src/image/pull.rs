//! PullImage: resolve the reference (mirrors first), pick the platform, fetch the config, then
//! fetch and unpack every missing layer concurrently, and record the image in one transaction.
//! Until that transaction commits nothing of the pull is visible; what a killed pull leaves on
//! disk is collected at the next start.

use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use super::manifest::{self, Descriptor, Manifest, MAX_LAYER_BYTES};
use super::reference::Reference;
use super::registry::{is_index, AuthConfig, RegistryError, Session, MAX_CONFIG_BYTES};
use super::ImageStore;
use crate::error::{Error, Result};
use crate::store::image::{ImageRecord, LayerRecord};

/// Layers fetched and unpacked at the same time. Registries and disks both like a few streams;
/// past this, a 2-core node only thrashes.
const LAYER_CONCURRENCY: usize = 6;

fn invalid_content(what: String) -> Error {
    Error::Registry(RegistryError::Invalid {
        what: "image".into(),
        reason: what,
    })
}

impl ImageStore {
    /// Pull an image and return its record. `image` is a CRI image reference.
    pub async fn pull(&self, image: &str, auth: Option<AuthConfig>) -> Result<ImageRecord> {
        let reference =
            Reference::parse(image).map_err(|e| Error::invalid("image.image", e.to_string()))?;
        let span = tracing::info_span!("pull", image = %reference);
        self.pull_reference(&reference, auth).instrument(span).await
    }

    async fn pull_reference(
        &self,
        reference: &Reference,
        auth: Option<AuthConfig>,
    ) -> Result<ImageRecord> {
        let started = std::time::Instant::now();
        let _shared = self.gc_lock.read().await;
        let session = self.registry.session(reference, auth);

        let top = session.manifest(reference.manifest_reference()).await?;
        let manifest_bytes;
        let manifest_digest;
        if is_index(&top.media_type) {
            let index: manifest::Index = serde_json::from_slice(&top.bytes)
                .map_err(|e| invalid_content(format!("index: {e}")))?;
            let desc = manifest::select_platform(&index, manifest::host_arch())
                .map_err(invalid_content)?;
            let child = session.manifest(&desc.digest).await?;
            if is_index(&child.media_type) {
                return Err(invalid_content("nested index".into()));
            }
            self.content.write(&top.digest, &top.bytes)?;
            manifest_digest = child.digest;
            manifest_bytes = child.bytes;
        } else {
            manifest_digest = top.digest.clone();
            manifest_bytes = top.bytes;
        }
        let m: Manifest = manifest::parse_manifest(&manifest_bytes).map_err(invalid_content)?;

        let config_size =
            manifest::validate_descriptor(&m.config, "config").map_err(invalid_content)?;
        let config_bytes = if self.content.contains(&m.config.digest) {
            self.content.read(&m.config.digest)?
        } else {
            let bytes = session
                .small_blob(&m.config.digest, config_size, MAX_CONFIG_BYTES)
                .await?;
            self.content.write(&m.config.digest, &bytes)?;
            bytes
        };
        let config =
            manifest::parse_config(&config_bytes, m.layers.len()).map_err(invalid_content)?;

        let layers: Vec<LayerRecord> = m
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(d, diff_id)| LayerRecord {
                digest: d.digest.clone(),
                diff_id: diff_id.clone(),
                media_type: d.media_type.clone(),
                size: d.size as u64,
            })
            .collect();

        // Owned items: a stream of futures that borrow from their own item trips the
        // compiler's higher-ranked lifetime check inside tonic's Send bound.
        let jobs: Vec<(Descriptor, String)> = m
            .layers
            .iter()
            .cloned()
            .zip(config.rootfs.diff_ids.iter().cloned())
            .collect();
        let session = &session;
        futures::stream::iter(jobs)
            .map(|(desc, diff_id)| async move { self.ensure_layer(session, &desc, &diff_id).await })
            .buffer_unordered(LAYER_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        self.content.write(&manifest_digest, &manifest_bytes)?;

        let mut names = Vec::new();
        if let Some(t) = reference
            .tagged_name()
            .filter(|_| reference.digest().is_none())
        {
            names.push(t);
        }
        names.push(reference.digested_name(&top.digest));
        let size = config_size + layers.iter().map(|l| l.size).sum::<u64>();
        let record = ImageRecord {
            id: m.config.digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size,
            manifest_digest,
            layers,
            config,
            pinned: false,
            created_at: crate::clock::now_nanos(),
        };
        let db = self.db.clone();
        let id = record.id.clone();
        let dropped = tokio::task::spawn_blocking(move || db.put_image(record, &names))
            .await
            .map_err(|e| Error::Internal(format!("store task: {e}")))??;
        let record = self
            .db
            .get_image(&id)?
            .ok_or_else(|| Error::Internal(format!("image {id} vanished after commit")))?;
        tracing::info!(id = %record.id, elapsed_ms = started.elapsed().as_millis() as u64, "image pulled");
        drop(_shared);
        if !dropped.is_empty() {
            tracing::info!(images = ?dropped, "images left without names removed");
            self.collect().await?;
        }
        Ok(record)
    }

    /// Make sure the snapshot for one layer exists: download the blob (unless stored) and
    /// unpack it (unless unpacked). Concurrent pulls of the same layer wait for one another
    /// instead of fetching twice.
    async fn ensure_layer(
        &self,
        session: &Session<'_>,
        desc: &Descriptor,
        diff_id: &str,
    ) -> Result<()> {
        // Distinct keys: an uncompressed layer's blob digest is its diff id.
        let _layer = self.fetches.lock(&format!("snapshot/{diff_id}")).await;
        if self.snapshots.contains(diff_id) {
            return Ok(());
        }
        let size = desc.size as u64;
        if size > MAX_LAYER_BYTES {
            return Err(invalid_content(format!("layer {} too large", desc.digest)));
        }
        {
            let _blob = self.fetches.lock(&format!("blob/{}", desc.digest)).await;
            if !self.content.contains(&desc.digest) {
                let ingest = self.content.ingest_path(&desc.digest);
                let fetched = session.blob_to_file(&desc.digest, size, &ingest).await;
                if let Err(e) = fetched
                    .map_err(Error::from)
                    .and_then(|()| self.content.commit(&ingest, &desc.digest))
                {
                    let _ = std::fs::remove_file(&ingest);
                    return Err(e);
                }
                tracing::info!(digest = %desc.digest, bytes = size, "layer fetched");
            }
        }
        let blob = self.content.path(&desc.digest);
        let media_type = desc.media_type.clone();
        let diff = diff_id.to_string();
        let snapshots = self.snapshots.clone();
        let result =
            tokio::task::spawn_blocking(move || snapshots.unpack(&blob, &media_type, &diff))
                .await
                .map_err(|e| Error::Internal(format!("unpack task: {e}")))?;
        if result.is_err() {
            // A blob whose layer does not verify or unpack is useless and possibly hostile.
            let _ = self.content.remove(&desc.digest);
        }
        result
    }
}

//! PullImage: resolve the reference (mirrors first), pick the platform, fetch the config, then
//! fetch and unpack every missing layer concurrently, and record the image in one transaction.
//! Until that transaction commits nothing of the pull is visible; what a killed pull leaves on
//! disk is collected at the next start.

use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use std::sync::Arc;

use super::limits::LimitExceeded;
use super::manifest::{self, Descriptor, Manifest, MAX_LAYER_BYTES};
use super::reference::Reference;
use super::registry::{is_index, AuthConfig, RegistryError, Session};
use super::unpack::ImageBudget;
use super::ImageStore;
use crate::error::{Error, Result};
use crate::store::image::{ImageRecord, LayerRecord};

/// Layers fetched and unpacked at the same time. Registries and disks both like a few streams;
/// past this, a 2-core node only thrashes.
const LAYER_CONCURRENCY: usize = 6;

fn limit_error(limit: LimitExceeded) -> Error {
    invalid_content(limit.to_string())
}

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
        tracing::info!("pulling image");
        let _shared = self.gc_lock.read().await;
        let session = self.registry.session(reference, auth);

        let limits = &self.limits;
        let top = session
            .manifest(reference.manifest_reference(), limits.max_manifest_bytes)
            .await?;
        let top_digest = top.digest.clone();
        // Down the indexes to this platform's manifest, each level bounded in size, in
        // entries and in number.
        let mut current = top;
        let mut top_index = None;
        let mut depth = 0u32;
        while is_index(&current.media_type) {
            depth += 1;
            if depth > limits.max_index_depth {
                return Err(limit_error(LimitExceeded::new(
                    "max_index_depth",
                    limits.max_index_depth.into(),
                    format!("indexes nest more than {} deep", limits.max_index_depth),
                )));
            }
            let index: manifest::Index = serde_json::from_slice(&current.bytes)
                .map_err(|e| invalid_content(format!("index: {e}")))?;
            if index.manifests.len() as u64 > u64::from(limits.max_index_entries) {
                return Err(limit_error(LimitExceeded::new(
                    "max_index_entries",
                    limits.max_index_entries.into(),
                    format!(
                        "index {} has {} entries",
                        current.digest,
                        index.manifests.len()
                    ),
                )));
            }
            let desc = manifest::select_platform(&index, manifest::host_arch())
                .map_err(invalid_content)?;
            let child = session
                .manifest(&desc.digest, limits.max_manifest_bytes)
                .await?;
            // Only the top-level index is kept (the image's digest name points at it).
            if top_index.is_none() {
                top_index = Some((current.digest, current.bytes));
            }
            current = child;
        }
        if let Some((digest, bytes)) = &top_index {
            self.content.write(digest, bytes)?;
        }
        let manifest_digest = current.digest;
        let manifest_bytes = current.bytes;
        let m: Manifest = manifest::parse_manifest(&manifest_bytes).map_err(invalid_content)?;
        if m.layers.len() as u64 > u64::from(limits.max_layers) {
            return Err(limit_error(LimitExceeded::new(
                "max_layers",
                limits.max_layers.into(),
                format!("manifest {manifest_digest} has {} layers", m.layers.len()),
            )));
        }

        let config_size =
            manifest::validate_descriptor(&m.config, "config").map_err(invalid_content)?;
        let config_bytes = if self.content.contains(&m.config.digest) {
            self.content.read(&m.config.digest)?
        } else {
            let bytes = session
                .small_blob(
                    &m.config.digest,
                    config_size,
                    limits.max_config_bytes,
                    "max_config_bytes",
                )
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
        let budget = Arc::new(ImageBudget::new(limits.max_image_bytes));
        futures::stream::iter(jobs)
            .map(|(desc, diff_id)| {
                let budget = budget.clone();
                async move { self.ensure_layer(session, &desc, &diff_id, budget).await }
            })
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
        names.push(reference.digested_name(&top_digest));
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
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            id = %record.id,
            bytes = record.size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            mib_per_s = format!("{:.1}", record.size as f64 / (1 << 20) as f64 / secs.max(1e-6)),
            "image pulled"
        );
        drop(_shared);
        if !dropped.is_empty() {
            tracing::info!(images = ?dropped, "images left without names removed");
            // The pull succeeded; what cannot be collected now is collected next time.
            if let Err(e) = self.collect().await {
                tracing::warn!(error = %e, "collecting after a pull failed; retried at the next collection");
            }
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
        budget: Arc<ImageBudget>,
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
            }
        }
        let blob = self.content.path(&desc.digest);
        let media_type = desc.media_type.clone();
        let diff = diff_id.to_string();
        let snapshots = self.snapshots.clone();
        let limits = self.limits.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            snapshots.unpack(&blob, &media_type, &diff, &limits, &budget)
        })
        .await
        .map_err(|e| Error::Internal(format!("unpack task: {e}")))?;
        match &result {
            Ok(()) => {
                tracing::debug!(
                    diff_id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "layer unpacked"
                )
            }
            Err(e) => {
                tracing::warn!(diff_id, error = %crate::error::chain(e), "layer refused; nothing of it kept")
            }
        }
        if result.is_err() {
            // A blob whose layer does not verify or unpack is useless and possibly hostile.
            let _ = self.content.remove(&desc.digest);
        }
        result
    }
}

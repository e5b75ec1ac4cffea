//! The content store: blobs by digest under `<root>/content/blobs/sha256/<hex>`, written to an
//! ingest file first and renamed into place only once verified, so a blob path that exists is
//! always complete and correct.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for d in [&blobs, &ingest] {
            std::fs::create_dir_all(d).map_err(Error::io("creating", d))?;
        }
        // Leftovers of a pull that was killed: never complete, never referenced.
        if let Ok(entries) = std::fs::read_dir(&ingest) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// The digest has been validated by the caller (`sha256:<64 hex>`).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.blobs
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    pub fn root(&self) -> &Path {
        self.blobs
            .parent()
            .and_then(Path::parent)
            .unwrap_or(&self.blobs)
    }

    /// A fresh ingest path for a download.
    pub fn ingest_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.ingest
            .join(format!("{hex}.{:016x}", rand::random::<u64>()))
    }

    /// Move a verified ingest file into place.
    pub fn commit(&self, ingest: &Path, digest: &str) -> Result<()> {
        let dest = self.path(digest);
        std::fs::rename(ingest, &dest).map_err(Error::io("committing blob", &dest))
    }

    /// Write small verified bytes (manifests, configs) straight into the store.
    pub fn write(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        if self.contains(digest) {
            return Ok(());
        }
        let tmp = self.ingest_path(digest);
        std::fs::write(&tmp, bytes).map_err(Error::io("writing", &tmp))?;
        self.commit(&tmp, digest)
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest);
        std::fs::read(&p).map_err(Error::io("reading", &p))
    }

    /// Every stored digest.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.blobs).map_err(Error::io("listing", &self.blobs))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|hex| format!("sha256:{hex}"))
            .collect())
    }

    pub fn remove(&self, digest: &str) -> Result<()> {
        let p = self.path(digest);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", p)(e)),
        }
    }
}

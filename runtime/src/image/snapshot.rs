//! Snapshots: one directory per layer, keyed by the layer's diff id (the digest of its
//! uncompressed tar), holding the layer unpacked with overlayfs whiteouts. Because a layer is
//! unpacked on its own, never on top of its parents, its tree depends only on its diff id, and
//! a layer shared by many images is unpacked once. A container's rootfs is an overlay whose
//! lowerdirs are its image's snapshots.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::unpack;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots> {
        std::fs::create_dir_all(root).map_err(Error::io("creating", root))?;
        // Unpacks interrupted by a kill: remove them, they were never committed.
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = remove_tree(&e.path());
                }
            }
        }
        Ok(Snapshots {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, diff_id: &str) -> PathBuf {
        self.root
            .join(diff_id.strip_prefix("sha256:").unwrap_or(diff_id))
    }

    pub fn contains(&self, diff_id: &str) -> bool {
        self.path(diff_id).is_dir()
    }

    /// Unpack a compressed layer blob into the snapshot for `diff_id`, verifying that the
    /// uncompressed stream hashes to it. Blocking: run it on a blocking thread. Nothing is left
    /// behind on failure.
    pub fn unpack(&self, blob: &Path, media_type: &str, diff_id: &str) -> Result<()> {
        let tmp = self
            .root
            .join(format!(".tmp-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&tmp).map_err(Error::io("creating", &tmp))?;
        let result = self.unpack_into(blob, media_type, diff_id, &tmp);
        if result.is_err() {
            let _ = remove_tree(&tmp);
            return result;
        }
        let dest = self.path(diff_id);
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = remove_tree(&tmp);
            // Someone else committed the same layer first: theirs is as good as ours.
            if dest.is_dir() {
                return Ok(());
            }
            return Err(Error::io("committing snapshot", dest)(e));
        }
        Ok(())
    }

    fn unpack_into(&self, blob: &Path, media_type: &str, diff_id: &str, dir: &Path) -> Result<()> {
        let file = std::fs::File::open(blob).map_err(Error::io("opening", blob))?;
        let unpack_err = |source| Error::Unpack {
            digest: diff_id.to_string(),
            source,
        };
        let decoded = unpack::decompress(media_type, BufReader::with_capacity(256 << 10, file))
            .map_err(unpack_err)?;
        let mut hashing = HashingReader {
            inner: decoded,
            hasher: Sha256::new(),
        };
        unpack::unpack_layer(&mut hashing, dir).map_err(unpack_err)?;
        // The tar reader stops at the end-of-archive marker; the diff id covers the padding too.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| unpack_err(unpack::UnpackError::Tar(e)))?;
        let got = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        if got != diff_id {
            return Err(Error::Verification {
                digest: diff_id.to_string(),
                reason: format!(
                    "diff_id mismatch: the uncompressed layer hashes to {got}, the image config says {diff_id}"
                ),
            });
        }
        Ok(())
    }

    /// Every committed snapshot, as diff ids.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.root).map_err(Error::io("listing", &self.root))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .map(|hex| format!("sha256:{hex}"))
            .collect())
    }

    pub fn remove(&self, diff_id: &str) -> Result<()> {
        let p = self.path(diff_id);
        remove_tree(&p).map_err(Error::io("removing snapshot", p))
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Remove a tree that may hold read-only dirs (layers carry their modes); idempotent.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

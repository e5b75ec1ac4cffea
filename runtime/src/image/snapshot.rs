//! Snapshots: one directory per layer, keyed by the layer's diff id (the digest of its
//! uncompressed tar), holding the layer unpacked with overlayfs whiteouts. Because a layer is
//! unpacked on its own, never on top of its parents, its tree depends only on its diff id, and
//! a layer shared by many images is unpacked once. A container's rootfs is an overlay whose
//! lowerdirs are its image's snapshots.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::limits::ImageLimits;
use super::unpack::{self, ImageBudget, LimitedReader};
use crate::error::{Error, Result};

/// Names of dirs in the snapshot root that are not committed snapshots: unpacks in flight
/// (or killed) and snapshots being removed. Both are garbage whenever no pull is running.
const TMP_PREFIX: &str = ".tmp-";
const TRASH_PREFIX: &str = ".trash-";

#[derive(Clone)]
pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots> {
        std::fs::create_dir_all(root).map_err(Error::io("creating", root))?;
        let snapshots = Snapshots {
            root: root.to_path_buf(),
        };
        // Unpacks interrupted by a kill were never committed; removals cut short go on.
        snapshots.sweep();
        Ok(snapshots)
    }

    /// Removes unpacks that never committed and snapshots whose removal was cut short.
    /// Only while no pull runs (at start, or under the garbage collector's exclusive lock):
    /// an unpack in flight is a `.tmp-` dir too. Errors are logged; the next sweep retries.
    pub fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) || name.starts_with(TRASH_PREFIX) {
                if let Err(err) = remove_tree(&e.path()) {
                    tracing::warn!(dir = %e.path().display(), error = %err, "could not remove a leftover snapshot dir; retried at the next collection");
                }
            }
        }
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

    /// Unpack a compressed layer blob into the snapshot for `diff_id`, within `limits` and
    /// the pull's `budget`, verifying that the uncompressed stream hashes to it. Blocking:
    /// run it on a blocking thread. Nothing is left behind on failure.
    pub fn unpack(
        &self,
        blob: &Path,
        media_type: &str,
        diff_id: &str,
        limits: &ImageLimits,
        budget: &ImageBudget,
    ) -> Result<()> {
        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&tmp).map_err(Error::io("creating", &tmp))?;
        let result = self.unpack_into(blob, media_type, diff_id, &tmp, limits, budget);
        if result.is_err() {
            discard(&tmp);
            return result;
        }
        let dest = self.path(diff_id);
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            discard(&tmp);
            // Someone else committed the same layer first: theirs is as good as ours.
            if dest.is_dir() {
                return Ok(());
            }
            return Err(Error::io("committing snapshot", dest)(e));
        }
        Ok(())
    }

    fn unpack_into(
        &self,
        blob: &Path,
        media_type: &str,
        diff_id: &str,
        dir: &Path,
        limits: &ImageLimits,
        budget: &ImageBudget,
    ) -> Result<()> {
        let file = std::fs::File::open(blob).map_err(Error::io("opening", blob))?;
        let unpack_err = |source| Error::Unpack {
            digest: diff_id.to_string(),
            source,
        };
        let decoded = unpack::decompress(media_type, BufReader::with_capacity(256 << 10, file))
            .map_err(unpack_err)?;
        let mut hashing = HashingReader {
            inner: LimitedReader::new(decoded, limits.max_layer_bytes, Some(budget)),
            hasher: Sha256::new(),
        };
        unpack::unpack_layer_within(&mut hashing, dir, limits).map_err(unpack_err)?;
        // The tar reader stops at the end-of-archive marker; the diff id covers the padding
        // too (and whatever follows it, still within the bound).
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| unpack_err(unpack::tar_err(e)))?;
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

    /// Removes a snapshot. It is first renamed out of the way, atomically, so a removal cut
    /// short (a huge tree, a kill) never leaves a half-emptied dir under the snapshot's name
    /// for a later pull to take as unpacked; the rest goes at the next [`Snapshots::sweep`].
    pub fn remove(&self, diff_id: &str) -> Result<()> {
        let p = self.path(diff_id);
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        let trash = self.root.join(format!(
            "{TRASH_PREFIX}{hex}-{:016x}",
            rand::random::<u64>()
        ));
        match std::fs::rename(&p, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("removing snapshot", p)(e)),
        }
        remove_tree(&trash).map_err(Error::io("removing snapshot", trash))
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

/// Remove a tree a layer made (any depth, read-only dirs included); idempotent.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    crate::fstree::remove_tree(path)
}

/// Drops a failed unpack; what cannot go now goes at the next sweep.
fn discard(tmp: &Path) {
    if let Err(e) = remove_tree(tmp) {
        tracing::warn!(dir = %tmp.display(), error = %e, "could not remove a failed unpack; retried at the next collection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A gzip bomb: one tar file entry declaring `gib` GiB of zeros, the zeros made of
    /// concatenated gzip members (each 1 MiB of zeros), so it costs ~1 KiB per MiB to make.
    fn bomb(gib: u64) -> Vec<u8> {
        let size = gib << 30;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_path("zeros").unwrap();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        let mut blob = gzip(header.as_bytes());
        let mib = gzip(&vec![0u8; 1 << 20]);
        for _ in 0..(size >> 20) {
            blob.extend_from_slice(&mib);
        }
        blob
    }

    fn leftovers(root: &Path) -> Vec<String> {
        std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_bound_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(&tmp.path().join("snapshots")).unwrap();
        let blob = tmp.path().join("blob");
        std::fs::write(&blob, bomb(10)).unwrap();
        assert!(std::fs::metadata(&blob).unwrap().len() < 16 << 20);
        let limits = ImageLimits {
            max_layer_bytes: 64 << 20,
            ..ImageLimits::default()
        };
        let budget = ImageBudget::new(limits.max_image_bytes);
        let diff_id = format!("sha256:{}", "0".repeat(64));
        let started = Instant::now();
        let err = snapshots
            .unpack(
                &blob,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &diff_id,
                &limits,
                &budget,
            )
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(err.kind(), crate::error::ErrorKind::DataLoss);
        assert!(err.to_string().contains("image.max_layer_bytes"), "{err}");
        assert!(
            leftovers(snapshots.root()).is_empty(),
            "{:?}",
            leftovers(snapshots.root())
        );

        // Data after the end-of-archive marker is read for the diff id, and bounded too.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        tar.append_data(&mut h, "small", &b"x"[..]).unwrap();
        let mut stream = tar.into_inner().unwrap();
        stream.extend(std::iter::repeat_n(0u8, 80 << 20));
        std::fs::write(&blob, gzip(&stream)).unwrap();
        let err = snapshots
            .unpack(
                &blob,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &diff_id,
                &limits,
                &budget,
            )
            .unwrap_err();
        assert!(err.to_string().contains("image.max_layer_bytes"), "{err}");
        assert!(leftovers(snapshots.root()).is_empty());
    }

    #[test]
    fn removal_renames_first_and_sweeps_what_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(&tmp.path().join("snapshots")).unwrap();
        let diff_id = format!("sha256:{}", "a".repeat(64));
        let dir = snapshots.path(&diff_id);
        std::fs::create_dir_all(dir.join("x/y")).unwrap();
        std::fs::write(dir.join("x/y/f"), b"f").unwrap();
        // A removal a kill cut short, and an unpack a kill interrupted.
        std::fs::create_dir_all(snapshots.root().join(".trash-bb-1/z")).unwrap();
        std::fs::create_dir_all(snapshots.root().join(".tmp-0123/z")).unwrap();
        assert_eq!(snapshots.list().unwrap(), vec![diff_id.clone()]);

        snapshots.remove(&diff_id).unwrap();
        assert!(!snapshots.contains(&diff_id));
        snapshots.remove(&diff_id).unwrap();
        snapshots.sweep();
        assert!(
            leftovers(snapshots.root()).is_empty(),
            "{:?}",
            leftovers(snapshots.root())
        );
    }
}

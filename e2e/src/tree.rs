//! Compare an unpacked snapshot with the layer tar it came from, entry by entry, the way a
//! user would check it: type, content, mode, owner, mtime, link target, and OCI whiteouts
//! turned into overlayfs ones.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, ensure, Context};

pub fn compare(tar_bytes: &[u8], dir: &Path) -> anyhow::Result<usize> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut checked = 0;
    let mut inodes: HashMap<String, u64> = HashMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if path.is_empty() {
            continue;
        }
        let name = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let parent = path
            .trim_end_matches('/')
            .rsplit_once('/')
            .map_or("", |(p, _)| p);
        if name == ".wh..wh..opq" {
            let v = xattr::get(dir.join(parent), "trusted.overlay.opaque")?;
            ensure!(v.as_deref() == Some(b"y".as_ref()), "{parent}: not opaque");
            checked += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = dir.join(parent).join(hidden);
            let md = std::fs::symlink_metadata(&target)
                .with_context(|| format!("whiteout {}", target.display()))?;
            ensure!(
                md.file_type().is_char_device() && md.rdev() == 0,
                "{path}: not a 0:0 char device"
            );
            ensure!(!dir.join(&path).exists(), "{path}: .wh. file left behind");
            checked += 1;
            continue;
        }
        let on_disk = dir.join(&path);
        let md = std::fs::symlink_metadata(&on_disk)
            .with_context(|| format!("{path} missing from {}", dir.display()))?;
        let h = entry.header().clone();
        let kind = h.entry_type();
        if kind.is_hard_link() {
            let target = entry
                .link_name()?
                .context("hard link without target")?
                .to_string_lossy()
                .to_string();
            let target_ino = inodes.get(target.trim_start_matches("./")).copied();
            ensure!(
                target_ino == Some(md.ino()),
                "{path}: not a hard link to {target}"
            );
            checked += 1;
            continue;
        }
        ensure!(
            md.uid() as u64 == h.uid()?,
            "{path}: uid {} != {}",
            md.uid(),
            h.uid()?
        );
        ensure!(
            md.gid() as u64 == h.gid()?,
            "{path}: gid {} != {}",
            md.gid(),
            h.gid()?
        );
        if !kind.is_symlink() {
            ensure!(
                md.mode() & 0o7777 == h.mode()? & 0o7777,
                "{path}: mode {:o} != {:o}",
                md.mode() & 0o7777,
                h.mode()? & 0o7777
            );
        }
        ensure!(
            md.mtime() as u64 == h.mtime()?,
            "{path}: mtime {} != {}",
            md.mtime(),
            h.mtime()?
        );
        if kind.is_dir() {
            ensure!(md.is_dir(), "{path}: not a directory");
        } else if kind.is_symlink() {
            ensure!(md.file_type().is_symlink(), "{path}: not a symlink");
            let want = entry
                .link_name()?
                .context("symlink without target")?
                .to_path_buf();
            ensure!(
                std::fs::read_link(&on_disk)? == want,
                "{path}: symlink target differs"
            );
        } else if kind.is_file() {
            ensure!(md.is_file(), "{path}: not a file");
            let mut want = Vec::new();
            entry.read_to_end(&mut want)?;
            ensure!(std::fs::read(&on_disk)? == want, "{path}: content differs");
        } else {
            bail!("{path}: unexpected entry type {kind:?} in a test layer");
        }
        inodes.insert(path.trim_end_matches('/').to_string(), md.ino());
        checked += 1;
    }
    Ok(checked)
}

//! The attachment cache, in libcni's layout: one file per attachment,
//! `<dir>/<network>-<container id>-<ifname>`, holding the network config, the runtime's
//! arguments and the ADD result. It is written before ADD (no result yet) and removed after
//! a successful DEL, so a DEL can always be run with what the ADD used: after a restart,
//! after the config was edited or deleted, or after a crash half-way through an ADD.
//!
//! The files are read back as hostile input: size bounded, names checked.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A config (≤ 1 MiB) and a result (≤ 1 MiB) and a little more.
const MAX_ENTRY_BYTES: u64 = 3 << 20;
/// At most this many entries are read from the dir (a node runs a few hundred pods).
const MAX_ENTRIES: usize = 100_000;

/// One attachment of a pod to a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The format of this file.
    pub kind: String,
    pub network: String,
    pub container_id: String,
    pub if_name: String,
    pub netns: Option<PathBuf>,
    /// The network list as a `.conflist` document.
    pub config: Value,
    /// `CNI_ARGS` as the ADD got them.
    pub cni_args: String,
    /// The capability arguments the ADD got (`portMappings`, `bandwidth`, ...).
    pub runtime_config: Map<String, Value>,
    /// The ADD's result; `None` while the ADD runs (or if it never finished).
    pub result: Option<Value>,
}

pub const KIND: &str = "corral-cni-attachment/v1";

/// The cache dir.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(dir: &Path) -> Result<Cache> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, a: &Attachment) -> PathBuf {
        self.dir
            .join(format!("{}-{}-{}", a.network, a.container_id, a.if_name))
    }

    /// Records `a` atomically (write, fsync, rename): after a crash the file is either
    /// the old entry or the new one.
    pub fn write(&self, a: &Attachment) -> Result<()> {
        let path = self.path(a);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(a)
            .map_err(|e| Error::Internal(format!("encoding a CNI cache entry: {e}")))?;
        let ctx = format!("writing {}", tmp.display());
        let mut f = std::fs::File::create(&tmp).map_err(Error::io(ctx.clone()))?;
        f.write_all(&bytes).map_err(Error::io(ctx.clone()))?;
        f.sync_all().map_err(Error::io(ctx))?;
        std::fs::rename(&tmp, &path).map_err(Error::io(format!("renaming {}", tmp.display())))
    }

    /// Forgets an attachment (its DEL succeeded). Gone already is success.
    pub fn remove(&self, a: &Attachment) -> Result<()> {
        let path = self.path(a);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()))(e)),
        }
    }

    /// Every attachment of `container_id` (one per network it was attached to).
    pub fn find(&self, container_id: &str) -> Vec<Attachment> {
        self.list()
            .into_iter()
            .filter(|a| a.container_id == container_id)
            .collect()
    }

    /// Every readable entry; unusable files are logged and skipped (left for an operator:
    /// we cannot know what they would release).
    pub fn list(&self) -> Vec<Attachment> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten().take(MAX_ENTRIES) {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                // A write cut short by a crash: its rename never happened, so the entry
                // it would have replaced (if any) is still there.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match read(&path) {
                Ok(a) => out.push(a),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unusable CNI cache entry")
                }
            }
        }
        out
    }
}

fn read(path: &Path) -> std::result::Result<Attachment, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format!("larger than {MAX_ENTRY_BYTES} bytes"));
    }
    let a: Attachment = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if a.kind != KIND {
        return Err(format!("unknown kind {:?}", a.kind));
    }
    super::conf::validate_name(&a.network)?;
    super::conf::validate_name(&a.container_id)?;
    if a.if_name.is_empty() || a.if_name.len() > 15 || a.if_name.contains('/') {
        return Err(format!("bad interface name {:?}", a.if_name));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name != format!("{}-{}-{}", a.network, a.container_id, a.if_name) {
        return Err("file name does not match its content".into());
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(net: &str, id: &str) -> Attachment {
        Attachment {
            kind: KIND.into(),
            network: net.into(),
            container_id: id.into(),
            if_name: "eth0".into(),
            netns: Some("/run/x/net".into()),
            config: serde_json::json!({"name": net}),
            cni_args: "IgnoreUnknown=1".into(),
            runtime_config: Map::new(),
            result: None,
        }
    }

    #[test]
    fn write_find_remove() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(&dir.path().join("results")).expect("open");
        let mut a = attachment("net-a", "abc123");
        cache.write(&a).expect("write");
        assert!(dir.path().join("results/net-a-abc123-eth0").exists());
        a.result = Some(serde_json::json!({"ips": []}));
        cache.write(&a).expect("rewrite");
        cache.write(&attachment("net-b", "other")).expect("write");
        assert_eq!(cache.find("abc123"), vec![a.clone()]);
        assert_eq!(cache.list().len(), 2);
        cache.remove(&a).expect("remove");
        cache.remove(&a).expect("idempotent");
        assert!(cache.find("abc123").is_empty());
    }

    #[test]
    fn hostile_entries_are_skipped() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("open");
        std::fs::write(dir.path().join("junk"), "{").expect("w");
        let a = attachment("n", "id1");
        // A file whose name doesn't match what it says it releases.
        std::fs::write(
            dir.path().join("n-id2-eth0"),
            serde_json::to_vec(&a).expect("json"),
        )
        .expect("w");
        let mut bad = attachment("../x", "id3");
        bad.network = "../x".into();
        std::fs::write(
            dir.path().join("x-id3-eth0"),
            serde_json::to_vec(&bad).expect("json"),
        )
        .expect("w");
        std::fs::write(dir.path().join("n-id4-eth0.tmp"), "partial").expect("w");
        assert!(cache.list().is_empty());
        assert!(!dir.path().join("n-id4-eth0.tmp").exists());
    }
}

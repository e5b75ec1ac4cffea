//! Intent files: what a create is about to make, written into the object's own directory
//! before its first kernel resource (cgroup, veth, address). The record is stored only
//! once a create has finished, so after a `kill -9` half-way the start-up reconciliation
//! finds a directory without a record and reads here what to release.
//!
//! The file is read back as hostile input (it sits on disk across a crash): its size is
//! bounded and a file that can't be read or parsed releases only what needs no intent.

use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// The file's name inside the pod dir or the container bundle.
pub const FILE: &str = "intent.json";
/// Larger than any intent we write (a few paths).
const MAX_BYTES: u64 = 64 * 1024;

/// Records `intent` in `dir`, atomically (write + rename).
pub fn write<T: Serialize>(dir: &Path, intent: &T) -> Result<()> {
    let path = dir.join(FILE);
    let bytes = serde_json::to_vec(intent)
        .map_err(|e| Error::Internal(format!("encoding {}: {e}", path.display())))?;
    crate::shim::exit_file::write_atomic(&path, &bytes).map_err(Error::io("writing", &path))
}

/// The intent in `dir`; `None` when there is none or it can't be used (logged).
pub fn read<T: DeserializeOwned>(dir: &Path) -> Option<T> {
    let path = dir.join(FILE);
    let mut bytes = Vec::new();
    let read =
        std::fs::File::open(&path).and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes));
    match read {
        Ok(_) if bytes.len() as u64 > MAX_BYTES => {
            tracing::warn!(file = %path.display(), "intent file too large; ignored");
            None
        }
        Ok(_) => serde_json::from_slice(&bytes)
            .map_err(|e| tracing::warn!(file = %path.display(), error = %e, "bad intent file"))
            .ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "unreadable intent file");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Made {
        cgroup: String,
    }

    #[test]
    fn round_trip_and_hostile_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read::<Made>(dir.path()), None);
        let made = Made {
            cgroup: "/kubepods/pod1/abc".into(),
        };
        write(dir.path(), &made).unwrap();
        assert_eq!(read::<Made>(dir.path()), Some(made));
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert_eq!(read::<Made>(dir.path()), None);
        std::fs::write(dir.path().join(FILE), vec![b' '; 70 * 1024]).unwrap();
        assert_eq!(read::<Made>(dir.path()), None);
    }
}

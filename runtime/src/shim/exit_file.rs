//! Exit files: one small JSON document per tracked process, written atomically (a
//! temporary file renamed over the target) so that a reader, corrald after its own
//! restart included, sees either nothing or the whole record. They live under the state
//! dir (tmpfs, gone at reboot), so there is no fsync.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::shim::protocol::ExitStatus;

/// Write `bytes` to `path` atomically: `.<name>.tmp` beside it, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Record `exit` in the exit file at `path`.
pub fn write(path: &Path, exit: &ExitStatus) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(exit).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Read the exit file at `path`: None when the process has not exited (no file).
pub fn read(path: &Path) -> io::Result<Option<ExitStatus>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        assert_eq!(read(&path).unwrap(), None);
        let first = ExitStatus {
            pid: 10,
            exit_code: 137,
            signal: Some(9),
            finished_at: "2024-02-29T12:34:56.500000000Z".into(),
            oom_killed: false,
        };
        write(&path, &first).unwrap();
        assert_eq!(read(&path).unwrap(), Some(first));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"pid\":10,\"exit_code\":137,\"signal\":9,\"finished_at\":\"2024-02-29T12:34:56.500000000Z\",\"oom_killed\":false}\n"
        );
        let second = ExitStatus {
            pid: 11,
            exit_code: 3,
            signal: None,
            finished_at: "2024-03-01T00:00:00.000000000Z".into(),
            oom_killed: true,
        };
        write(&path, &second).unwrap();
        assert_eq!(read(&path).unwrap(), Some(second));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("exit")],
            "no temporary left behind"
        );
        fs::write(&path, b"{\"pid\":").unwrap();
        assert_eq!(read(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("exit");
        assert!(write_atomic(&path, b"x").is_err());
        assert!(!dir.path().join("missing").exists());
    }
}

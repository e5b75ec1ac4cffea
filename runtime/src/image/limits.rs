//! Bounds on what a pull may make us fetch, parse and write: `[image]` in the config file.
//!
//! Every image is hostile input. Without bounds one layer could hold a tree too deep for
//! any path-based tool, a million empty files, or a gzip bomb that fills the disk, and a
//! manifest could chain indexes forever. The defaults are far above what real images use
//! (the deepest paths of common distribution, language-runtime and ML images stay below 40
//! levels; the largest layers hold some 10^5 entries and tens of GiB), so only an operator
//! with unusual images ever changes them. A pull beyond a bound fails with DataLoss naming
//! the bound's key, and keeps nothing.

use serde::{Deserialize, Serialize};

/// `[image]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageLimits {
    /// Directories an entry's path may descend through (`a/b/c` is 3 deep).
    pub max_depth: u32,
    /// Bytes of an entry's path, and of a link's target (Linux's PATH_MAX).
    pub max_path_bytes: u32,
    /// Entries of one layer tar.
    pub max_layer_entries: u64,
    /// Bytes of one layer once decompressed (counted as they are read and written, never
    /// taken from a header, so a gzip bomb stops here).
    pub max_layer_bytes: u64,
    /// Bytes decompressed for all the layers one pull unpacks.
    pub max_image_bytes: u64,
    /// Layers of one image.
    pub max_layers: u32,
    /// Indexes an index may nest (an index of one platform's index is depth 2).
    pub max_index_depth: u32,
    /// Entries of one index.
    pub max_index_entries: u32,
    /// Bytes of a manifest or index.
    pub max_manifest_bytes: u64,
    /// Bytes of an image config.
    pub max_config_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_depth: 256,
            max_path_bytes: 4096,
            max_layer_entries: 1_000_000,
            max_layer_bytes: 64 << 30,
            max_image_bytes: 256 << 30,
            max_layers: 256,
            max_index_depth: 4,
            max_index_entries: 1024,
            max_manifest_bytes: 4 << 20,
            max_config_bytes: 8 << 20,
        }
    }
}

/// A bound that content went past: DataLoss, naming the config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exceeds image.{key} = {limit}: {detail}")]
pub struct LimitExceeded {
    /// The key in `[image]`.
    pub key: &'static str,
    pub limit: u64,
    pub detail: String,
}

impl LimitExceeded {
    pub fn new(key: &'static str, limit: u64, detail: impl Into<String>) -> Self {
        LimitExceeded {
            key,
            limit,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::unpack::{unpack_layer_within, ImageBudget, LimitedReader, UnpackError};
    use std::io::Read;
    use std::time::{Duration, Instant};
    use tar::{Builder, EntryType, Header};

    fn header(kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// A layer of `depth` nested directories `d/d/...`, a file at the bottom.
    fn deep_tar(depth: usize) -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        let mut path = String::new();
        for _ in 0..depth {
            path.push_str("d/");
            b.append_data(&mut header(EntryType::Directory, 0), &path, &[][..])
                .unwrap();
        }
        path.push_str("bottom");
        b.append_data(&mut header(EntryType::Regular, 2), &path, &b"ok"[..])
            .unwrap();
        b.into_inner().unwrap()
    }

    fn refused(result: Result<crate::image::unpack::UnpackStats, UnpackError>, key: &str) {
        match result {
            Err(UnpackError::Limit(l)) => {
                assert_eq!(l.key, key, "{l}");
                assert!(l.to_string().contains(&format!("image.{key}")), "{l}");
            }
            other => panic!("want image.{key} refused, got {other:?}"),
        }
    }

    #[test]
    fn a_5000_deep_layer_is_refused_in_seconds_and_200_deep_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = ImageLimits::default();
        let deep = deep_tar(5000);
        let started = Instant::now();
        let dest = tmp.path().join("deep");
        std::fs::create_dir(&dest).unwrap();
        refused(
            unpack_layer_within(deep.as_slice(), &dest, &limits),
            "max_depth",
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );

        let ok = tmp.path().join("ok");
        std::fs::create_dir(&ok).unwrap();
        let stats = unpack_layer_within(deep_tar(200).as_slice(), &ok, &limits).unwrap();
        assert_eq!(stats.entries, 201);
        let bottom = ok.join("d/".repeat(200)).join("bottom");
        assert_eq!(std::fs::read(bottom).unwrap(), b"ok");

        // Exactly at the bound passes, one more is refused.
        let tight = ImageLimits {
            max_depth: 20,
            ..ImageLimits::default()
        };
        let at = tmp.path().join("at");
        std::fs::create_dir(&at).unwrap();
        // 20 directories, and the file below them is 21 names deep.
        refused(
            unpack_layer_within(deep_tar(20).as_slice(), &at, &tight),
            "max_depth",
        );
        let under = tmp.path().join("under");
        std::fs::create_dir(&under).unwrap();
        unpack_layer_within(deep_tar(19).as_slice(), &under, &tight).unwrap();
    }

    #[test]
    fn long_paths_and_link_targets_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = ImageLimits::default();
        // 20 names of 250 bytes: shallow, but 5,020 bytes long.
        let long = vec!["x".repeat(250); 20].join("/");
        let mut b = Builder::new(Vec::new());
        b.append_data(&mut header(EntryType::Regular, 1), &long, &b"x"[..])
            .unwrap();
        let dest = tmp.path().join("a");
        std::fs::create_dir(&dest).unwrap();
        refused(
            unpack_layer_within(b.into_inner().unwrap().as_slice(), &dest, &limits),
            "max_path_bytes",
        );

        let mut b = Builder::new(Vec::new());
        let mut h = header(EntryType::Symlink, 0);
        b.append_link(&mut h, "link", "t/".repeat(2100)).unwrap();
        let dest = tmp.path().join("b");
        std::fs::create_dir(&dest).unwrap();
        refused(
            unpack_layer_within(b.into_inner().unwrap().as_slice(), &dest, &limits),
            "max_path_bytes",
        );
    }

    #[test]
    fn a_huge_gnu_long_name_is_refused_before_it_is_buffered() {
        let tmp = tempfile::tempdir().unwrap();
        // Claims 1 GiB; the tar crate would read it all into memory.
        let mut h = header(EntryType::GNULongName, 1 << 30);
        h.set_path("././@LongLink").unwrap();
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend(vec![b'a'; 4096]);
        refused(
            unpack_layer_within(tar.as_slice(), tmp.path(), &ImageLimits::default()),
            "max_path_bytes",
        );
    }

    #[test]
    fn entries_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let many = |n: usize| {
            let mut b = Builder::new(Vec::new());
            for i in 0..n {
                b.append_data(&mut header(EntryType::Regular, 0), format!("f{i}"), &[][..])
                    .unwrap();
            }
            b.into_inner().unwrap()
        };
        let limits = ImageLimits {
            max_layer_entries: 100,
            ..ImageLimits::default()
        };
        let dest = tmp.path().join("over");
        std::fs::create_dir(&dest).unwrap();
        refused(
            unpack_layer_within(many(101).as_slice(), &dest, &limits),
            "max_layer_entries",
        );
        let dest = tmp.path().join("at");
        std::fs::create_dir(&dest).unwrap();
        let stats = unpack_layer_within(many(100).as_slice(), &dest, &limits).unwrap();
        assert_eq!(stats.entries, 100);
    }

    #[test]
    fn bytes_written_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = ImageLimits {
            max_layer_bytes: 1 << 20,
            ..ImageLimits::default()
        };
        let mut b = Builder::new(Vec::new());
        let data = vec![0u8; 3 << 19];
        b.append_data(
            &mut header(EntryType::Regular, data.len() as u64),
            "big",
            data.as_slice(),
        )
        .unwrap();
        let dest = tmp.path().join("big");
        std::fs::create_dir(&dest).unwrap();
        refused(
            unpack_layer_within(b.into_inner().unwrap().as_slice(), &dest, &limits),
            "max_layer_bytes",
        );
    }

    #[test]
    fn the_stream_is_bounded_per_layer_and_per_image() {
        let zeros = || std::io::repeat(0).take(10 << 20);
        let mut out = Vec::new();
        let err = LimitedReader::new(zeros(), 1 << 20, None)
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("image.max_layer_bytes"), "{err}");
        assert!(
            out.len() <= (1 << 20) + (64 << 10),
            "read on past the bound"
        );

        // Two layers of 3 MiB under an image budget of 5 MiB: the second runs out.
        let budget = ImageBudget::new(5 << 20);
        let mut sink = Vec::new();
        LimitedReader::new(std::io::repeat(0).take(3 << 20), 4 << 20, Some(&budget))
            .read_to_end(&mut sink)
            .unwrap();
        let err = LimitedReader::new(std::io::repeat(0).take(3 << 20), 4 << 20, Some(&budget))
            .read_to_end(&mut sink)
            .unwrap_err();
        assert!(err.to_string().contains("image.max_image_bytes"), "{err}");
    }

    #[test]
    fn message_names_the_key() {
        let e = LimitExceeded::new("max_depth", 256, "entry is 257 deep");
        assert_eq!(
            e.to_string(),
            "exceeds image.max_depth = 256: entry is 257 deep"
        );
    }

    #[test]
    fn defaults_are_generous() {
        let l = ImageLimits::default();
        assert!(l.max_depth >= 200);
        assert_eq!(l.max_path_bytes, 4096);
        assert!(l.max_layer_entries >= 1_000_000);
        assert!(l.max_layer_bytes >= 32 << 30);
        assert!(l.max_image_bytes >= l.max_layer_bytes);
    }
}

//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets'
//! bodies, so that every input a campaign found interesting stays a regression test on the
//! stable toolchain (the timed campaigns are `hack/fuzz`).

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    files.sort();
    // An empty corpus would make the replay pass without testing anything.
    assert!(files.len() >= 3, "{}: too few seeds", dir.display());
    files
}

fn replay(target: &str, body: impl Fn(&[u8])) {
    for (path, data) in corpus(target) {
        eprintln!("{target}: {}", path.display());
        body(&data);
    }
}

#[test]
fn unpack_layer() {
    let scratch = tempfile::tempdir().unwrap();
    replay("unpack_layer", |d| {
        runtime::fuzzing::unpack_layer(d, scratch.path())
    });
}

#[test]
fn image_reference() {
    replay("image_reference", runtime::fuzzing::image_reference);
}

#[test]
fn image_manifest() {
    replay("image_manifest", runtime::fuzzing::image_manifest);
}

#[test]
fn cri_log() {
    replay("cri_log", runtime::fuzzing::cri_log_lines);
}

#[test]
fn shim_protocol() {
    replay("shim_protocol", runtime::fuzzing::shim_protocol);
}

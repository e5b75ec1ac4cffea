//! Replays the committed `cri_convert` fuzz corpus (`fuzz/corpus/cri_convert/`) through the
//! fuzz target's body, so each seed and each input a campaign kept is a regression test.

use std::path::Path;

#[test]
fn cri_convert() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/cri_convert");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // An empty corpus would make the replay pass without testing anything.
    assert!(files.len() >= 3, "{}: too few seeds", dir.display());
    for path in files {
        eprintln!("cri_convert: {}", path.display());
        cri_server::fuzzing::cri_convert(&std::fs::read(&path).unwrap());
    }
}

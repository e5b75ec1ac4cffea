//! A layer tar (plain, gzip, zstd or sniffed) unpacked into a tempdir: nothing may land outside.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("tempdir: {e}"),
    });
    runtime::fuzzing::unpack_layer(data, scratch.path());
});

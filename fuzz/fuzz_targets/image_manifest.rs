//! See `runtime::fuzzing::image_manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runtime::fuzzing::image_manifest(data));

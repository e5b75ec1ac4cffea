//! See `cri_server::fuzzing::cri_convert`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cri_server::fuzzing::cri_convert(data));

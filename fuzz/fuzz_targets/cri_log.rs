//! See `runtime::fuzzing::cri_log_lines`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runtime::fuzzing::cri_log_lines(data));
